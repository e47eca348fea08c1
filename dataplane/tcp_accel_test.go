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
// and off; bulk says whether fn moves bulk data, which hands the pair to
// the kernel relay when it is on.
func tcpModes(t *testing.T, bulk bool, fn func(t *testing.T, e *env)) {
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
			fn(t, e)
			if got := e.dp.accel.pairs.Load(); (kernel && bulk) != (got > 0) {
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
	tcpModes(t, true, func(t *testing.T, e *env) {
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
		c := dialStream(t, e, 60*time.Second)
		go func() {
			randStream(c, 1, size)
			c.CloseWrite()
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
// client's FIN, then closes. (A half-closed pair stays in user space.)
func TestTCPHalfCloseBulkReply(t *testing.T) {
	tcpModes(t, false, func(t *testing.T, e *env) {
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
		c := dialStream(t, e, 30*time.Second)
		c.Write([]byte("send"))
		c.CloseWrite()
		n, sum, err := hashAll(c)
		if err != nil || n != size || sum != want {
			t.Fatalf("client got %d bytes (%v), want %d intact", n, err, size)
		}
	})
}

// TestTCPCloseEndsRelayed: Dataplane.Close ends idle proxied connections.
func TestTCPCloseEndsRelayed(t *testing.T) {
	tcpModes(t, true, func(t *testing.T, e *env) {
		echo := tcpEcho(t, "")
		e.put("/apisix/stream_routes/s", `{"upstream":{"nodes":`+nodesJSON(echo)+`}}`)
		c := dialStream(t, e, 10*time.Second)
		go randStream(c, 3, 1<<20) // bulk: handed to the kernel relay
		want, _ := randStream(io.Discard, 3, 1<<20)
		if _, sum, err := hashAll(io.LimitReader(c, 1<<20)); err != nil || sum != want {
			t.Fatalf("echo: %v", err)
		}
		e.dp.Close()
		if _, err := io.ReadAll(c); errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal("connection still open after Close")
		}
	})
}

// TestTCPUpgradeMidStream: small exchanges, then bulk (which hands the
// pair to the kernel relay when it is on), then small ones again, through
// an echo backend: every byte comes back in order.
func TestTCPUpgradeMidStream(t *testing.T) {
	tcpModes(t, true, func(t *testing.T, e *env) {
		echo := tcpEcho(t, "")
		e.put("/apisix/stream_routes/s", `{"upstream":{"nodes":`+nodesJSON(echo)+`}}`)
		c := dialStream(t, e, 20*time.Second)
		roundTrip := func(msg string) {
			t.Helper()
			c.Write([]byte(msg))
			buf := make([]byte, len(msg))
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
				t.Fatalf("echo %q: %q, %v", msg, buf, err)
			}
		}
		for range 3 {
			roundTrip("hello")
		}
		const size = 8 << 20
		go randStream(c, 4, size)
		want, _ := randStream(io.Discard, 4, size)
		if n, sum, err := hashAll(io.LimitReader(c, size)); err != nil || n != size || sum != want {
			t.Fatalf("bulk echo: %d bytes, %v", n, err)
		}
		for range 3 {
			roundTrip("again")
		}
		c.CloseWrite()
		if rest, err := io.ReadAll(c); err != nil || string(rest) != "bye" {
			t.Fatalf("after half-close: %q, %v", rest, err)
		}
	})
}

// TestTCPSmallExchangesStayInUserSpace: echo traffic is not handed to the
// kernel relay.
func TestTCPSmallExchangesStayInUserSpace(t *testing.T) {
	tcpModes(t, false, func(t *testing.T, e *env) {
		echo := tcpEcho(t, "")
		e.put("/apisix/stream_routes/s", `{"upstream":{"nodes":`+nodesJSON(echo)+`}}`)
		c := dialStream(t, e, 5*time.Second)
		buf := make([]byte, 1000)
		for range 50 {
			c.Write(buf)
			if _, err := io.ReadFull(c, buf); err != nil {
				t.Fatal(err)
			}
		}
		c.CloseWrite()
		if rest, err := io.ReadAll(c); err != nil || string(rest) != "bye" {
			t.Fatalf("after half-close: %q, %v", rest, err)
		}
	})
}
