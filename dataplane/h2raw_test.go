//go:build linux

package dataplane

import (
	"io"
	"net"
	"testing"
	"time"
)

// TestH2RawIO drives the raw reads and writes over a real TCP
// connection: the sniffer's bytes first, a write larger than the socket
// buffers (EAGAIN, then the netpoller), deadlines and EOF.
func TestH2RawIO(t *testing.T) {
	l := listen(t)
	defer l.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(acc)
			return
		}
		acc <- c
	}()
	peer, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	c := <-acc
	if c == nil {
		t.Fatal("no connection")
	}
	defer c.Close()
	rio := newH2RawIO(&peekConn{Conn: c, buf: []byte("sniffed")})
	if rio == nil {
		t.Fatal("no raw I/O for a TCP connection")
	}
	if _, err := peer.Write([]byte("-socket")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 14)
	if _, err := io.ReadFull(rio, got); err != nil || string(got) != "sniffed-socket" {
		t.Fatalf("read %q, %v", got, err)
	}

	big := make([]byte, 8<<20)
	for i := range big {
		big[i] = byte(i)
	}
	done := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(peer, int64(len(big))))
		done <- b
	}()
	if n, err := rio.writer().Write(big); err != nil || n != len(big) {
		t.Fatalf("wrote %d, %v", n, err)
	}
	if b := <-done; string(b) != string(big) {
		t.Fatalf("peer read %d bytes, not what was written", len(b))
	}

	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := rio.Read(got); err == nil || !err.(net.Error).Timeout() {
		t.Fatalf("read past the deadline: %v", err)
	}
	_ = c.SetReadDeadline(time.Time{})
	peer.Close()
	if n, err := rio.Read(got); n != 0 || err != io.EOF {
		t.Fatalf("read after close: %d, %v", n, err)
	}
}
