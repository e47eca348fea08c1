package dataplane

import (
	"io"
	"net"
	"sync"
)

// pipe copies both ways and closes both ends when done, propagating
// half-closes where the connections support them.
func pipe(a, b net.Conn) {
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		relay(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else {
			_ = dst.Close()
		}
		done <- struct{}{}
	}
	go cp(a, b)
	go cp(b, a)
	<-done
	<-done
	a.Close()
	b.Close()
}

// relayBufSize is the copy buffer of relay; a read filling it marks a
// bulk transfer.
const relayBufSize = 16 << 10

var relayBufPool = sync.Pool{New: func() any { b := make([]byte, relayBufSize); return &b }}

// relay copies src to dst until EOF or an error. Small exchanges (request
// and response messages, echo) are copied through a pooled buffer with one
// read and one write each; once a read fills the buffer the transfer is
// bulk and the rest goes through io.CopyBuffer, which splices between two
// *net.TCPConn (no copy through user space). Splicing costs two syscalls
// and a pipe per chunk, more than read+write for small chunks.
func relay(dst, src net.Conn) {
	bp := relayBufPool.Get().(*[]byte)
	defer relayBufPool.Put(bp)
	buf := *bp
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
		if n == len(buf) {
			_, _ = io.CopyBuffer(dst, src, buf)
			return
		}
	}
}
