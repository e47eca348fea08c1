//go:build linux

package dataplane

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"
)

func streamEnv(t *testing.T) *env {
	t.Helper()
	return newEnv(t, func(o *Options) { o.StreamListen = "127.0.0.1:0" })
}

// echoMessages sends n messages of random sizes on c and reads each back.
func echoMessages(c net.Conn, seed uint64, n int) error {
	rng := rand.New(rand.NewPCG(seed, 1))
	msg := make([]byte, 4096)
	got := make([]byte, 4096)
	for i := range n {
		m := msg[:1+rng.IntN(len(msg)-1)]
		for j := range m {
			m[j] = byte(rng.Uint32())
		}
		if _, err := c.Write(m); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, got[:len(m)]); err != nil {
			return fmt.Errorf("message %d: %w", i, err)
		}
		if !bytes.Equal(got[:len(m)], m) {
			return fmt.Errorf("message %d damaged", i)
		}
	}
	return nil
}

// TestTCPLoopEchoManyConns relays small messages over many concurrent
// connections on the event loops, byte-exact, without handing any over.
func TestTCPLoopEchoManyConns(t *testing.T) {
	e := streamEnv(t)
	e.put("/apisix/stream_routes/s", `{"upstream":{"nodes":`+nodesJSON(tcpEcho(t, ""))+`}}`)
	const conns = 32
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", e.stream)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			if err := echoMessages(c, uint64(i), 200); err != nil {
				errs <- err
				return
			}
			c.(*net.TCPConn).CloseWrite()
			if all, err := io.ReadAll(c); err != nil || string(all) != "bye" {
				errs <- fmt.Errorf("after FIN got %q, %v", all, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := &e.dp.stats
	if n := st.TCPLoopConns.Load(); n != conns {
		t.Errorf("%d connections relayed on the loops, want %d", n, conns)
	}
	if n := st.TCPHandOvers.Load(); n != 0 {
		t.Errorf("%d small-message pairs handed over", n)
	}
	waitActive(t, e, 0)
}

func waitActive(t *testing.T, e *env, want int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for e.dp.stats.ActiveConns.Load() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%d active connections, want %d", e.dp.stats.ActiveConns.Load(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// oneShotBackend accepts one connection and runs fn on it.
func oneShotBackend(t *testing.T, fn func(c *net.TCPConn) error) (string, <-chan error) {
	t.Helper()
	l := listen(t)
	t.Cleanup(func() { l.Close() })
	done := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		done <- fn(c.(*net.TCPConn))
	}()
	return l.Addr().String(), done
}

// TestTCPLoopHalfCloseClientFirst: the client's FIN reaches the upstream,
// which keeps sending, then closes.
func TestTCPLoopHalfCloseClientFirst(t *testing.T) {
	e := streamEnv(t)
	addr, backend := oneShotBackend(t, func(c *net.TCPConn) error {
		all, err := io.ReadAll(c)
		if err != nil || string(all) != "ping" {
			return fmt.Errorf("backend got %q, %v", all, err)
		}
		for i := range 5 {
			if _, err := fmt.Fprintf(c, "late %d;", i); err != nil {
				return err
			}
			time.Sleep(10 * time.Millisecond)
		}
		return nil
	})
	e.put("/apisix/stream_routes/s", `{"upstream":{"nodes":`+nodesJSON(addr)+`}}`)
	c := dialStream(t, e, 10*time.Second)
	c.Write([]byte("ping"))
	c.CloseWrite()
	all, err := io.ReadAll(c)
	if want := "late 0;late 1;late 2;late 3;late 4;"; err != nil || string(all) != want {
		t.Fatalf("got %q, %v; want %q", all, err, want)
	}
	backendDone(t, e, backend)
}

// TestTCPLoopHalfCloseUpstreamFirst: the upstream's FIN reaches the
// client, which keeps sending, then closes.
func TestTCPLoopHalfCloseUpstreamFirst(t *testing.T) {
	e := streamEnv(t)
	addr, backend := oneShotBackend(t, func(c *net.TCPConn) error {
		c.Write([]byte("hello"))
		c.CloseWrite()
		all, err := io.ReadAll(c)
		if want := "one;two;three;"; err != nil || string(all) != want {
			return fmt.Errorf("backend got %q, %v; want %q", all, err, want)
		}
		return nil
	})
	e.put("/apisix/stream_routes/s", `{"upstream":{"nodes":`+nodesJSON(addr)+`}}`)
	c := dialStream(t, e, 10*time.Second)
	all, err := io.ReadAll(c)
	if err != nil || string(all) != "hello" {
		t.Fatalf("got %q, %v", all, err)
	}
	for _, m := range []string{"one;", "two;", "three;"} {
		if _, err := c.Write([]byte(m)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.CloseWrite()
	backendDone(t, e, backend)
}

// TestTCPLoopUpstreamReset: an upstream reset ends the client's
// connection at once.
func TestTCPLoopUpstreamReset(t *testing.T) {
	e := streamEnv(t)
	addr, backend := oneShotBackend(t, func(c *net.TCPConn) error {
		b := make([]byte, 1)
		if _, err := io.ReadFull(c, b); err != nil {
			return err
		}
		c.SetLinger(0)
		return c.Close()
	})
	e.put("/apisix/stream_routes/s", `{"upstream":{"nodes":`+nodesJSON(addr)+`}}`)
	c := dialStream(t, e, 2*time.Second)
	c.Write([]byte("x"))
	_, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the client was not told of the reset")
	}
	backendDone(t, e, backend)
}

// TestTCPLoopSlowReader: a client that stops reading stops the upstream's
// reads, so the upstream blocks writing; then everything arrives intact.
func TestTCPLoopSlowReader(t *testing.T) {
	e := streamEnv(t)
	const size = 64 << 20
	want, _ := randStream(io.Discard, 7, size)
	wrote := make(chan int64, 1)
	addr, backend := oneShotBackend(t, func(c *net.TCPConn) error {
		// Small writes: each reaches the proxy as a short read.
		rng := rand.NewChaCha8([32]byte{7})
		buf := make([]byte, 1000)
		var n int64
		blocked := false
		for n < size {
			b := buf[:min(int64(len(buf)), size-n)]
			rng.Read(b)
			if !blocked {
				c.SetWriteDeadline(time.Now().Add(time.Second))
			}
			m, err := c.Write(b)
			if err != nil && !blocked {
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Timeout() {
					return err
				}
				blocked = true
				wrote <- n + int64(m)
				c.SetWriteDeadline(time.Now().Add(30 * time.Second))
				if _, err := c.Write(b[m:]); err != nil {
					return err
				}
			} else if err != nil {
				return err
			}
			n += int64(len(b))
		}
		if !blocked {
			wrote <- n
		}
		return c.CloseWrite()
	})
	e.put("/apisix/stream_routes/s", `{"upstream":{"nodes":`+nodesJSON(addr)+`}}`)
	c := dialStream(t, e, 60*time.Second)
	n := <-wrote // the client has read nothing yet
	if n >= size {
		t.Fatalf("the upstream wrote all %d bytes to a client that reads nothing", n)
	}
	t.Logf("upstream blocked after %d bytes", n)
	got, sum, err := hashAll(c)
	if err != nil || got != size || sum != want {
		t.Fatalf("client got %d bytes (%v), want %d intact", got, err, size)
	}
	if err := <-backend; err != nil {
		t.Fatal(err)
	}
}

// TestTCPLoopSwitchToBulk: small exchanges on the loop, then 8 MiB each
// way at once (handed over to the splicing goroutines with the bytes
// already read), then small exchanges again; all byte-exact.
func TestTCPLoopSwitchToBulk(t *testing.T) {
	e := streamEnv(t)
	e.put("/apisix/stream_routes/s", `{"upstream":{"nodes":`+nodesJSON(tcpEcho(t, ""))+`}}`)
	c := dialStream(t, e, 60*time.Second)
	if err := echoMessages(c, 1, 100); err != nil {
		t.Fatal(err)
	}
	const size = 8 << 20
	sent := make(chan [32]byte, 1)
	go func() {
		sum, _ := randStream(c, 3, size)
		sent <- sum
	}()
	got, sum, err := hashAll(io.LimitReader(c, size))
	if err != nil || got != size || sum != <-sent {
		t.Fatalf("echoed %d bytes (%v), want %d intact", got, err, size)
	}
	if err := echoMessages(c, 2, 100); err != nil {
		t.Fatal(err)
	}
	c.CloseWrite()
	if all, err := io.ReadAll(c); err != nil || string(all) != "bye" {
		t.Fatalf("after FIN got %q, %v", all, err)
	}
	if n := e.dp.stats.TCPHandOvers.Load(); n != 1 {
		t.Fatalf("%d pairs handed over, want 1", n)
	}
	waitActive(t, e, 0)
}

// TestTCPLoopBulkFromUpstream: the upstream greets with 8 MiB after a
// small exchange; the client's pending FIN and the rest arrive in order.
func TestTCPLoopBulkFromUpstream(t *testing.T) {
	e := streamEnv(t)
	const size = 8 << 20
	want, _ := randStream(io.Discard, 9, size)
	addr, backend := oneShotBackend(t, func(c *net.TCPConn) error {
		b := make([]byte, 5)
		if _, err := io.ReadFull(c, b); err != nil || string(b) != "hello" {
			return fmt.Errorf("backend got %q, %v", b, err)
		}
		c.Write([]byte("ok"))
		if _, err := io.ReadFull(c, b[:4]); err != nil || string(b[:4]) != "bulk" {
			return fmt.Errorf("backend got %q, %v", b[:4], err)
		}
		if _, err := randStream(c, 9, size); err != nil {
			return err
		}
		if all, err := io.ReadAll(c); err != nil || string(all) != "thanks" {
			return fmt.Errorf("backend got %q, %v after the bulk", all, err)
		}
		return nil
	})
	e.put("/apisix/stream_routes/s", `{"upstream":{"nodes":`+nodesJSON(addr)+`}}`)
	c := dialStream(t, e, 60*time.Second)
	c.Write([]byte("hello"))
	b := make([]byte, 2)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "ok" {
		t.Fatalf("got %q, %v", b, err)
	}
	c.Write([]byte("bulkthanks"))
	c.CloseWrite()
	got, sum, err := hashAll(c)
	if err != nil || got != size || sum != want {
		t.Fatalf("client got %d bytes (%v), want %d intact", got, err, size)
	}
	backendDone(t, e, backend)
}

// TestTCPLoopConnectRetry: a refused node is retried on the other one.
func TestTCPLoopConnectRetry(t *testing.T) {
	e := streamEnv(t)
	dead := closedPort(t)
	echo := tcpEcho(t, "")
	e.put("/apisix/stream_routes/s", `{"upstream":{"type":"roundrobin","retries":1,"nodes":`+nodesJSON(dead, echo)+`}}`)
	for range 4 { // round robin starts on each node at least once
		c, err := net.Dial("tcp", e.stream)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		err = echoMessages(c, 5, 3)
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := e.dp.stats.UpstreamErrors.Load(); n < 1 {
		t.Fatalf("%d upstream errors, want the refused node counted", n)
	}
	waitActive(t, e, 0)
}

func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestTCPLoopConnectFailure: with every node refusing or not answering
// within the connect timeout, the client's connection is closed.
func TestTCPLoopConnectFailure(t *testing.T) {
	e := streamEnv(t)
	t.Run("refused", func(t *testing.T) {
		before := e.dp.stats.UpstreamErrors.Load()
		e.put("/apisix/stream_routes/s", `{"upstream":{"retries":2,"nodes":`+nodesJSON(closedPort(t), closedPort(t), closedPort(t))+`}}`)
		c, err := net.Dial("tcp", e.stream)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if all, err := io.ReadAll(c); err != nil || len(all) != 0 {
			t.Fatalf("got %q, %v; want EOF", all, err)
		}
		if n := e.dp.stats.UpstreamErrors.Load() - before; n != 3 {
			t.Fatalf("%d upstream errors, want 3 (retries 2)", n)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		before := e.dp.stats.UpstreamErrors.Load()
		e.put("/apisix/stream_routes/s", `{"upstream":{"retries":1,"timeout":{"connect":0.2,"send":1,"read":1},"nodes":`+nodesJSON(hangingAddr(t), hangingAddr(t))+`}}`)
		c, err := net.Dial("tcp", e.stream)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		start := time.Now()
		all, err := io.ReadAll(c)
		took := time.Since(start)
		if err != nil || len(all) != 0 {
			t.Fatalf("got %q, %v; want EOF", all, err)
		}
		if took < 300*time.Millisecond || took > 3*time.Second {
			t.Fatalf("closed after %v, want two 200ms connect timeouts", took)
		}
		if n := e.dp.stats.UpstreamErrors.Load() - before; n != 2 {
			t.Fatalf("%d upstream errors, want 2", n)
		}
	})
	waitActive(t, e, 0)
}

// TestTCPLoopCloseEndsPairs: closing the data plane ends the pairs on the
// loops.
func TestTCPLoopCloseEndsPairs(t *testing.T) {
	e := streamEnv(t)
	e.put("/apisix/stream_routes/s", `{"upstream":{"nodes":`+nodesJSON(tcpEcho(t, ""))+`}}`)
	c := dialStream(t, e, 5*time.Second)
	if err := echoMessages(c, 3, 5); err != nil {
		t.Fatal(err)
	}
	e.dp.Close()
	all, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the connection outlived the data plane (got %q)", all)
	}
}

// hangingAddr is a listener whose full accept queue drops SYNs: connects
// to it hang.
func hangingAddr(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, _ := syscall.Getsockname(fd)
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	for range 3 { // fill the queue
		d := net.Dialer{Timeout: 200 * time.Millisecond}
		if fc, err := d.Dial("tcp", addr); err == nil {
			t.Cleanup(func() { fc.Close() })
		}
	}
	return addr
}

// TestTCPLoopIPv6Node relays to an IPv6 node.
func TestTCPLoopIPv6Node(t *testing.T) {
	l, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skip("no IPv6 loopback:", err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	e := streamEnv(t)
	port := l.Addr().(*net.TCPAddr).Port
	e.put("/apisix/stream_routes/s", fmt.Sprintf(`{"upstream":{"nodes":[{"host":"[::1]","port":%d,"weight":1}]}}`, port))
	c := dialStream(t, e, 5*time.Second)
	if err := echoMessages(c, 4, 20); err != nil {
		t.Fatal(err)
	}
	if n := e.dp.stats.TCPLoopConns.Load(); n != 1 {
		t.Fatalf("%d connections relayed on the loops, want 1", n)
	}
}

// backendDone waits for a oneShotBackend's verdict, then for every
// proxied connection to be gone.
func backendDone(t *testing.T, e *env, backend <-chan error) {
	t.Helper()
	if err := <-backend; err != nil {
		t.Fatal(err)
	}
	waitActive(t, e, 0)
}
