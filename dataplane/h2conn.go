package dataplane

import (
	"bufio"
	"crypto/tls"
	"net"
	"runtime"
	"sync"
	"time"
)

// h2FrontConn is the connection http2.Server serves. It buffers reads:
// the server reads each frame header and payload with its own read
// call, which costs a syscall each on a plain TCP connection. And it
// coalesces writes: the server flushes after every frame it has no
// other to write with (a gRPC answer is three: HEADERS, DATA, trailers),
// so writes are queued and a flusher goroutine writes them out together
// once the goroutines producing them yielded.
type h2FrontConn struct {
	net.Conn
	br *bufio.Reader

	mu      sync.Mutex
	cond    sync.Cond
	out     []byte // queued, not yet written
	spare   []byte
	kicked  bool // the flusher was signalled
	closing bool
	err     error // sticky write error
	kick    chan struct{}
	exited  chan struct{} // the flusher is gone and Conn closed
}

// h2FrontTLSConn is an h2FrontConn over TLS: http2.Server reads the TLS
// state through ConnectionState.
type h2FrontTLSConn struct {
	*h2FrontConn
	cs interface{ ConnectionState() tls.ConnectionState }
}

// ConnectionState returns the state of the TLS connection.
func (c h2FrontTLSConn) ConnectionState() tls.ConnectionState { return c.cs.ConnectionState() }

const (
	h2FrontMaxQueued  = 256 << 10       // writers wait beyond this
	h2FrontKeepBuf    = 32 << 10        // larger write buffers are freed when drained
	h2FrontCloseFlush = 2 * time.Second // bound of the last flush at close
)

// newH2FrontConn wraps c; the returned net.Conn is the one to serve, and
// fc must be closed with closeWait once serving ended.
func newH2FrontConn(c net.Conn) (net.Conn, *h2FrontConn) {
	fc := &h2FrontConn{
		Conn:   c,
		br:     bufio.NewReaderSize(c, 16<<10),
		kick:   make(chan struct{}, 1),
		exited: make(chan struct{}),
	}
	fc.cond.L = &fc.mu
	go fc.flushLoop()
	if cs, ok := c.(interface{ ConnectionState() tls.ConnectionState }); ok {
		return h2FrontTLSConn{fc, cs}, fc
	}
	return fc, fc
}

// Read implements net.Conn.
func (c *h2FrontConn) Read(p []byte) (int, error) { return c.br.Read(p) }

// Write implements net.Conn: p is queued for the flusher.
func (c *h2FrontConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	for c.err == nil && !c.closing && len(c.out) >= h2FrontMaxQueued {
		c.cond.Wait()
	}
	if c.err != nil || c.closing {
		err := c.err
		c.mu.Unlock()
		if err == nil {
			err = net.ErrClosed
		}
		return 0, err
	}
	c.out = append(c.out, p...)
	kick := !c.kicked
	c.kicked = true
	c.mu.Unlock()
	if kick {
		c.kick <- struct{}{}
	}
	return len(p), nil
}

// Close implements net.Conn: what is queued is still written (within
// h2FrontCloseFlush), then the connection is closed.
func (c *h2FrontConn) Close() error {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return nil
	}
	c.closing = true
	kick := !c.kicked
	c.kicked = true
	c.cond.Broadcast()
	c.mu.Unlock()
	_ = c.Conn.SetWriteDeadline(time.Now().Add(h2FrontCloseFlush))
	if kick {
		c.kick <- struct{}{}
	}
	return nil
}

// closeWait closes c and waits until the connection is closed.
func (c *h2FrontConn) closeWait() {
	_ = c.Close()
	<-c.exited
}

func (c *h2FrontConn) flushLoop() {
	defer close(c.exited)
	defer c.Conn.Close()
	for range c.kick {
		// Let the goroutines that are about to queue more run first: a
		// signalled goroutine would otherwise run as soon as the writer
		// blocks, before the next frame of the same answer is queued.
		runtime.Gosched()
		c.mu.Lock()
		c.kicked = false
		buf := c.out
		c.out = c.spare[:0]
		c.mu.Unlock()
		var err error
		if len(buf) > 0 {
			_, err = c.Conn.Write(buf)
		}
		c.mu.Lock()
		if cap(buf) <= h2FrontKeepBuf {
			c.spare = buf[:0]
		} else {
			c.spare = nil
		}
		if err != nil && c.err == nil {
			c.err = err
		}
		c.cond.Broadcast()
		done := c.err != nil || c.closing && len(c.out) == 0
		c.mu.Unlock()
		if done {
			return
		}
	}
}
