package dataplane

import (
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"testing"
	"time"
)

// tcpModes runs fn with the kernel relay on (skipped where it cannot load)
// and off.
func tcpModes(t *testing.T, fn func(t *testing.T, e *env, kernel bool)) {
	for _, kernel := range []bool{true, false} {
		name := map[bool]string{true: "kernel", false: "splice"}[kernel]
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, func(o *Options) {
				o.StreamListen = "127.0.0.1:0"
				o.TCPAccel = kernel
			})
			if kernel && e.dp.kernelRelay() == nil {
				t.Skip("kernel TCP relay unavailable (needs root and Linux 6.1+)")
			}
			fn(t, e, kernel)
			if got := e.dp.accel.pairs.Load(); kernel != (got > 0) {
				t.Fatalf("%d pairs relayed in the kernel", got)
			}
		})
	}
}

// randStream writes n seeded pseudo-random bytes to w; it returns their
// hash.
func randStream(w io.Writer, seed byte, n int) ([32]byte, error) {
	rng := rand.NewChaCha8([32]byte{seed})
	h := sha256.New()
	buf := make([]byte, 128<<10)
	for n > 0 {
		b := buf[:min(n, len(buf))]
		rng.Read(b)
		h.Write(b)
		if _, err := w.Write(b); err != nil {
			return [32]byte{}, err
		}
		n -= len(b)
	}
	return [32]byte(h.Sum(nil)), nil
}

func hashAll(r io.Reader) (int64, [32]byte, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	return n, [32]byte(h.Sum(nil)), err
}

// TestTCPBulkBothWays sends 64 MiB each way at once through a stream
// route, each side half-closing when it is done: every byte and both
// FINs must arrive.
func TestTCPBulkBothWays(t *testing.T) {
	tcpModes(t, func(t *testing.T, e *env, _ bool) {
		const size = 64 << 20
		want1, _ := randStream(io.Discard, 1, size)
		want2, _ := randStream(io.Discard, 2, size)
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		backend := make(chan error, 1)
		go func() {
			c, err := l.Accept()
			if err != nil {
				backend <- err
				return
			}
			defer c.Close()
			wrote := make(chan error, 1)
			go func() {
				_, err := randStream(c, 2, size)
				c.(*net.TCPConn).CloseWrite()
				wrote <- err
			}()
			n, sum, err := hashAll(c)
			if werr := <-wrote; err == nil {
				err = werr
			}
			if err == nil && (n != size || sum != want1) {
				err = errors.New("backend: stream damaged")
			}
			backend <- err
		}()
		e.put("/apisix/stream_routes/bulk", `{"upstream":{"nodes":`+nodesJSON(l.Addr().String())+`}}`)
		c, err := net.Dial("tcp", e.stream)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(60 * time.Second))
		go func() {
			randStream(c, 1, size)
			c.(*net.TCPConn).CloseWrite()
		}()
		n, sum, err := hashAll(c)
		if err != nil || n != size || sum != want2 {
			t.Fatalf("client got %d bytes (%v), want %d intact", n, err, size)
		}
		if err := <-backend; err != nil {
			t.Fatal(err)
		}
	})
}

// TestTCPHalfCloseBulkReply: the backend answers 16 MiB only after the
// client's FIN, then closes.
func TestTCPHalfCloseBulkReply(t *testing.T) {
	tcpModes(t, func(t *testing.T, e *env, _ bool) {
		const size = 16 << 20
		want, _ := randStream(io.Discard, 7, size)
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go func() {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			if req, _ := io.ReadAll(c); string(req) == "send" {
				randStream(c, 7, size)
			}
		}()
		e.put("/apisix/stream_routes/hc", `{"upstream":{"nodes":`+nodesJSON(l.Addr().String())+`}}`)
		c, err := net.Dial("tcp", e.stream)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		c.Write([]byte("send"))
		// A FIN before the relay is set up makes it fall back to user
		// space (TestTCPStreamRouteHalfClose); this one comes after.
		time.Sleep(100 * time.Millisecond)
		c.(*net.TCPConn).CloseWrite()
		n, sum, err := hashAll(c)
		if err != nil || n != size || sum != want {
			t.Fatalf("client got %d bytes (%v), want %d intact", n, err, size)
		}
	})
}

// TestTCPCloseEndsRelayed: Dataplane.Close ends idle proxied connections.
func TestTCPCloseEndsRelayed(t *testing.T) {
	tcpModes(t, func(t *testing.T, e *env, _ bool) {
		echo := tcpEcho(t, "")
		e.put("/apisix/stream_routes/s", `{"upstream":{"nodes":`+nodesJSON(echo)+`}}`)
		c, err := net.Dial("tcp", e.stream)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte("ping"))
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("echo: %q, %v", buf, err)
		}
		e.dp.Close()
		if _, err := io.ReadAll(c); errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal("connection still open after Close")
		}
	})
}
