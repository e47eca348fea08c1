package dataplane

import (
	"crypto/tls"
	"errors"
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
}

// poolConfig is the connection settings of a node pool.
type poolConfig struct {
	tls     bool
	tlsConf *tls.Config // client TLS (cloned on creation); nil: unverified, as APISIX
	to      timeouts
	size    int
	idle    time.Duration
}

// newHostPool records the pool settings of node addr of up; nothing is
// allocated for connections until Do is first called.
func newHostPool(addr string, up *upstream, size int, idle time.Duration) *hostPool {
	return &hostPool{addr: addr, cfg: unique.Make(poolConfig{tls: up.tls, tlsConf: up.tlsConf, to: up.to, size: size, idle: idle})}
}

// Do sends req on a pooled connection (fasthttp.HostClient.Do). It is
// safe for concurrent use.
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
			return c, nil
		},
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
