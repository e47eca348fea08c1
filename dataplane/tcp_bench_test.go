package dataplane

import (
	"io"
	"net"
	"sync"
	"testing"
)

// BenchmarkTCPEcho: 16 connections exchange 64-byte messages with an echo
// backend through a stream route (as `perf compare --protocol tcp`).
func BenchmarkTCPEcho(b *testing.B) {
	e := newEnv(b, func(o *Options) { o.StreamListen = "127.0.0.1:0" })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { // read and write, as perf's echo backend (io.Copy would splice)
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					if _, err := c.Write(buf[:n]); err != nil {
						return
					}
				}
			}()
		}
	}()
	e.put("/apisix/stream_routes/s", `{"upstream":{"nodes":`+nodesJSON(l.Addr().String())+`}}`)
	const conns = 16
	cs := make([]net.Conn, conns)
	for i := range cs {
		if cs[i], err = net.Dial("tcp", e.stream); err != nil {
			b.Fatal(err)
		}
		defer cs[i].Close()
	}
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	per := b.N/conns + 1
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := make([]byte, 64)
			got := make([]byte, 64)
			for range per {
				if _, err := c.Write(msg); err != nil {
					b.Error(err)
					return
				}
				if _, err := io.ReadFull(c, got); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
