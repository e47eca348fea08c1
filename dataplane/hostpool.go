package dataplane

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
	"unique"

	"github.com/valyala/fasthttp"
)

// hostPool is the HTTP/1.1 connection pool of one upstream node. The
// fasthttp.HostClient behind it (about 1 KB with its dialer and closures)
// is created on the first request, so the thousands of upstreams a mesh
// pushes cost only their address and interned settings (48 bytes) until
// traffic reaches them. A hostPool
// is shared by every runtime of an upstream whose pool settings are
// unchanged (upstream.poolSig), so its warm connections carry over.
type hostPool struct {
	hc   atomic.Pointer[fasthttp.HostClient]
	mu   sync.Mutex // serializes the creation of hc
	addr string
	// cfg is interned: the thousands of nodes with the same settings
	// (usually APISIX's defaults) share one copy.
	cfg unique.Handle[poolConfig]
	// idle counts the pool's idle connections (poolConn.idle), capped at
	// keepalive_pool.size.
	idle atomic.Int32
}

// poolConfig is the connection settings of a node pool.
type poolConfig struct {
	tls     bool
	tlsConf *tls.Config // client TLS (cloned on creation); nil: unverified, as APISIX
	to      timeouts
	size    int           // keepalive_pool.size: idle connections kept
	idle    time.Duration // keepalive_pool.idle_timeout
	reqs    int           // keepalive_pool.requests: requests per connection
}

// newHostPool records the pool settings of node addr of up; nothing is
// allocated for connections until Do is first called.
func newHostPool(addr string, up *upstream, size int, idle time.Duration) *hostPool {
	return &hostPool{addr: addr, cfg: unique.Make(poolConfig{tls: up.tls, tlsConf: up.tlsConf, to: up.to, size: size, idle: idle, reqs: up.poolReqs})}
}

// Do sends req on a pooled connection (fasthttp.HostClient.Do). It is
// safe for concurrent use. With resp.StreamBody set, a response body
// larger than streamMax or of unknown length is left on the connection
// as resp's body stream (see upstreamBody), which the caller must close
// (fasthttp closes it after writing the response); others are read.
func (p *hostPool) Do(req *fasthttp.Request, resp *fasthttp.Response) error {
	return p.client().Do(req, resp)
}

// client returns the HostClient, creating it on first use.
func (p *hostPool) client() *fasthttp.HostClient {
	if hc := p.hc.Load(); hc != nil {
		return hc
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if hc := p.hc.Load(); hc != nil {
		return hc
	}
	hc := p.newHostClient()
	p.hc.Store(hc)
	return hc
}

// CloseIdleConnections closes the pool's idle connections, if it ever
// had any.
func (p *hostPool) CloseIdleConnections() {
	if hc := p.hc.Load(); hc != nil {
		hc.CloseIdleConnections()
	}
}

func (p *hostPool) newHostClient() *fasthttp.HostClient {
	c := p.cfg.Value()
	d := &net.Dialer{Timeout: c.to.connect, KeepAlive: 30 * time.Second}
	hc := &fasthttp.HostClient{
		Addr:                          p.addr,
		IsTLS:                         c.tls,
		MaxConns:                      c.size * 16,
		MaxIdleConnDuration:           c.idle,
		MaxConnDuration:               0,
		ReadTimeout:                   c.to.read,
		WriteTimeout:                  c.to.send,
		MaxConnWaitTimeout:            c.to.connect,
		NoDefaultUserAgentHeader:      true,
		DisableHeaderNamesNormalizing: true,
		DisablePathNormalizing:        true,
		MaxIdemponentCallAttempts:     2,
		// A stale keep-alive connection reset before any response byte is
		// retried once on a fresh connection for idempotent requests
		// (pain point #9); timeouts are never retried here.
		RetryIfErr: func(req *fasthttp.Request, _ int, err error) (bool, bool) {
			if errors.Is(err, fasthttp.ErrTimeout) {
				return false, false
			}
			return false, idempotent(req)
		},
		Dial: func(a string) (net.Conn, error) {
			c, err := d.Dial("tcp", a)
			if err != nil {
				return nil, &connectError{err}
			}
			return p.wrap(c), nil
		},
		Transport: (*poolTransport)(p),
	}
	if c.tls {
		if c.tlsConf == nil {
			hc.TLSConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // APISIX does not verify upstream certs by default.
		} else {
			hc.TLSConfig = c.tlsConf.Clone()
		}
	}
	return hc
}

// putConn gives connection cc of hc back to its pool (reuse) or closes
// it. The connection's type is fasthttp's unexported *clientConn, which
// travels as an interface value (upstreamBody.cc) and is asserted back
// to C, inferred from hc's methods.
func putConn[C any](release, closeConn func(C), cc any, reuse bool) {
	if reuse {
		release(cc.(C))
	} else {
		closeConn(cc.(C))
	}
}

// poolConn is a connection of a node pool. Its fields are used by the
// request holding the connection, or under the HostClient's lock while
// the connection is idle.
type poolConn struct {
	net.Conn
	p *hostPool
	// reqs is the number of requests sent on the connection.
	reqs int
	// idle: the connection is in the pool's idle list (counted in p.idle).
	idle bool
}

// Close implements net.Conn.
func (c *poolConn) Close() error {
	if c.idle { // closed by the idle cleaner
		c.idle = false
		c.p.idle.Add(-1)
	}
	return c.Conn.Close()
}

// wrap returns c as a connection of p, so the keepalive_pool limits
// apply to it; a HostClient.Dial of p must return its connections so.
func (p *hostPool) wrap(c net.Conn) net.Conn { return &poolConn{Conn: c, p: p} }

// poolConnOf returns the poolConn under c (which may be a *tls.Conn).
func poolConnOf(c net.Conn) *poolConn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	pc, _ := c.(*poolConn)
	return pc
}

// streamMax is the largest response body read whole when the caller
// allows streaming (Response.StreamBody): larger ones and those of
// unknown length (chunked, until close) are streamed.
const streamMax = 64 << 10

// poolTransport is the fasthttp.RoundTripper of a node pool: fasthttp's
// default transport plus response body streaming (Do) and the
// keepalive_pool limits fasthttp lacks: requests per connection and idle
// connections kept (size).
type poolTransport hostPool

// RoundTrip implements fasthttp.RoundTripper.
func (t *poolTransport) RoundTrip(hc *fasthttp.HostClient, req *fasthttp.Request, resp *fasthttp.Response) (retry bool, err error) {
	p := (*hostPool)(t)
	cfg := p.cfg.Value()
	stream := resp.StreamBody
	resp.StreamBody = false
	cc, err := hc.AcquireConn(0, req.ConnectionClose())
	if err != nil {
		return false, err
	}
	conn := cc.Conn()
	pc := poolConnOf(conn)
	last := false // the last request of the connection
	if pc != nil {
		if pc.idle {
			pc.idle = false
			p.idle.Add(-1)
		}
		pc.reqs++
		if cfg.reqs > 0 && pc.reqs >= cfg.reqs && !req.ConnectionClose() {
			req.SetConnectionClose()
			last = true
		}
	}
	resp.ParseNetConn(conn)

	var deadline time.Time
	if hc.WriteTimeout > 0 {
		deadline = time.Now().Add(hc.WriteTimeout)
	}
	if err = conn.SetWriteDeadline(deadline); err != nil {
		putConn(hc.ReleaseConn, hc.CloseConn, cc, false)
		return true, err
	}
	bw := hc.AcquireWriter(conn)
	err = req.Write(bw)
	if last {
		req.Header.ResetConnectionClose()
	}
	if err == nil {
		err = bw.Flush()
	}
	hc.ReleaseWriter(bw)
	if x, ok := err.(interface{ Timeout() bool }); ok && x.Timeout() {
		err = fasthttp.ErrTimeout
	}
	if err != nil {
		putConn(hc.ReleaseConn, hc.CloseConn, cc, false)
		return true, err
	}

	deadline = time.Time{}
	if hc.ReadTimeout > 0 {
		deadline = time.Now().Add(hc.ReadTimeout)
	}
	if err = conn.SetReadDeadline(deadline); err != nil {
		putConn(hc.ReleaseConn, hc.CloseConn, cc, false)
		return true, err
	}
	if req.Header.IsHead() {
		resp.SkipBody = true
	}
	if hc.DisableHeaderNamesNormalizing {
		resp.Header.DisableNormalizing()
	}
	br := hc.AcquireReader(conn)
	body, untilClose, err := readResponse(resp, br, stream)
	if err != nil {
		hc.ReleaseReader(br)
		putConn(hc.ReleaseConn, hc.CloseConn, cc, false)
		return true, err
	}
	reuse := !last && !untilClose && !req.ConnectionClose() && !resp.ConnectionClose()
	if body != nil {
		body.start(p, hc, cc, conn, br, reuse)
		resp.SetBodyStream(body, resp.Header.ContentLength())
		return false, nil
	}
	hc.ReleaseReader(br)
	p.release(hc, cc, pc, reuse)
	return false, nil
}

// release gives connection cc of hc back to the pool (reuse) unless the
// pool already keeps keepalive_pool.size idle ones; otherwise closes it.
func (p *hostPool) release(hc *fasthttp.HostClient, cc any, pc *poolConn, reuse bool) {
	if reuse && pc != nil {
		if int(p.idle.Load()) >= p.cfg.Value().size {
			reuse = false
		} else {
			pc.idle = true
			p.idle.Add(1)
		}
	}
	putConn(hc.ReleaseConn, hc.CloseConn, cc, reuse)
}

// readResponse reads the header of resp from br and, unless it is to be
// streamed, its body. It returns the body stream to start when stream is
// set and the body is larger than streamMax or of unknown length, and
// whether the body ends when the upstream closes the connection.
func readResponse(resp *fasthttp.Response, br *bufio.Reader, stream bool) (body *upstreamBody, untilClose bool, err error) {
	h := &resp.Header
	if err := h.Read(br); err != nil {
		return nil, false, err
	}
	if h.StatusCode() == fasthttp.StatusContinue {
		if err := h.Read(br); err != nil {
			return nil, false, err
		}
	}
	if st := h.StatusCode(); resp.SkipBody || st < 200 || st == fasthttp.StatusNoContent || st == fasthttp.StatusNotModified {
		return nil, false, nil
	}
	cl := h.ContentLength()
	untilClose = cl == -2
	if !stream || cl >= 0 && cl <= streamMax {
		if err := resp.ReadBody(br, 0); err != nil {
			return nil, false, err
		}
		if cl == -1 { // chunked
			if err := h.ReadTrailer(br); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return nil, false, err
			}
		}
		return nil, untilClose, nil
	}
	return acquireUpstreamBody(cl), untilClose, nil
}
