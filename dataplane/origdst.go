package dataplane

// Original-destination upstreams: an upstream with discovery_type
// "original_dst" (Envoy's ORIGINAL_DST cluster; Istio's PassthroughCluster
// and InboundPassthroughCluster) has no nodes. Each request goes to the
// original destination of its downstream connection, the address the
// client dialed before iptables captured it, or, when the upstream allows
// it (discovery_args.use_http_header, Envoy's use_http_header), to the
// address in the request's x-envoy-original-dst-host header.
//
// Connections are pooled per destination: each destination gets a small
// one-node runtime upstream (its own fasthttp pool and HTTP/2 transport,
// dialing through Options.PassThroughDial), kept in a bounded LRU per
// upstream, so an application calling many hosts cannot grow memory
// without limit. Balancers and health checks are not used.

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/meshagent/meshagent/dataplane/balancer"
	"github.com/meshagent/meshagent/etcdcompat/apisix"
)

const (
	// discoveryOriginalDst is the discovery_type of original-destination
	// upstreams (written by xds/translate for ORIGINAL_DST clusters).
	discoveryOriginalDst = "original_dst"
	// origDstHeader is Envoy's default header naming the destination.
	origDstHeader = "X-Envoy-Original-Dst-Host"
	// defaultMaxDestinations bounds the per-destination pools of one
	// original_dst upstream (discovery_args.max_destinations).
	defaultMaxDestinations = 256
)

// errBadOrigDstHost rejects an x-envoy-original-dst-host value.
var errBadOrigDstHost = errors.New("dataplane: original destination header: want an IP:port literal")

// odSettings are the original_dst settings of one upstream runtime.
type odSettings struct {
	useHeader bool
	header    string // canonical header name
	max       int
	pools     *odPools // per-destination pools; carried over with the HTTP/2 transport
}

// checkOrigDst validates an original_dst upstream: no nodes, a scheme the
// data plane can originate, no health checks.
func checkOrigDst(u *apisix.Upstream) error {
	if len(u.Nodes) > 0 {
		return fmt.Errorf("field \"nodes\": must be empty with discovery_type %s", discoveryOriginalDst)
	}
	switch u.Scheme {
	case "", "http", "https", "grpc", "grpcs", "tcp":
	default:
		return fmt.Errorf("field \"scheme\": %q is not supported with discovery_type %s (http, https, grpc, grpcs, tcp)", u.Scheme, discoveryOriginalDst)
	}
	if u.Checks != nil {
		return fmt.Errorf("field \"checks\": health checks are not supported with discovery_type %s", discoveryOriginalDst)
	}
	_, err := parseODArgs(u.DiscoveryArgs)
	return err
}

// parseODArgs reads discovery_args: use_http_header (bool),
// http_header_name (string), max_destinations (integer >= 1).
func parseODArgs(args map[string]any) (odSettings, error) {
	s := odSettings{header: origDstHeader, max: defaultMaxDestinations}
	for k, v := range args {
		switch k {
		case "use_http_header":
			b, ok := v.(bool)
			if !ok {
				return s, fmt.Errorf("field \"discovery_args.use_http_header\": must be a boolean")
			}
			s.useHeader = b
		case "http_header_name":
			h, ok := v.(string)
			if !ok || h == "" {
				return s, fmt.Errorf("field \"discovery_args.http_header_name\": must be a non-empty string")
			}
			s.header = http.CanonicalHeaderKey(h)
		case "max_destinations":
			f, ok := v.(float64)
			if !ok || f < 1 || f > 1<<20 || f != float64(int(f)) {
				return s, fmt.Errorf("field \"discovery_args.max_destinations\": must be an integer in 1..1048576")
			}
			s.max = int(f)
		}
	}
	return s, nil
}

// initOrigDst finishes newUpstream for an original_dst upstream (checked
// by checkOrigDst): no nodes nor picker; the destination pools of the
// previous runtime are kept when its HTTP/2 transport was (same pool
// settings), so a config push does not drop warm connections.
func (up *upstream) initOrigDst(u *apisix.Upstream, env upstreamEnv, size int, idle time.Duration) (*upstream, error) {
	s, err := parseODArgs(u.DiscoveryArgs)
	if err != nil {
		return nil, fmt.Errorf("dataplane: upstream %s: %w", up.id, err)
	}
	if p := env.prevUp; p != nil && p.od != nil && p.h2 == up.h2 {
		s.pools = p.od.pools
	} else {
		s.pools = &odPools{size: size, idle: idle, m: map[netip.AddrPort]*list.Element{}}
	}
	up.od = &s
	up.retries = 0
	return up, nil
}

// odPools is the bounded LRU of per-destination runtimes of one
// original_dst upstream.
type odPools struct {
	size int
	idle time.Duration

	mu  sync.Mutex
	m   map[netip.AddrPort]*list.Element // of *odEntry
	lru list.List                        // front: most recently used
}

type odEntry struct {
	dst    netip.AddrPort
	parent *upstream // the runtime up was derived from
	up     *upstream
	last   time.Time
}

// len returns the number of destinations with a pool.
func (p *odPools) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lru.Len()
}

// get returns the one-node runtime for dst, creating it (and evicting
// the least recently used and idle ones beyond the bound) as needed.
func (p *odPools) get(parent *upstream, dst netip.AddrPort, limit int, dial dialFunc) *upstream {
	now := time.Now()
	p.mu.Lock()
	if el, ok := p.m[dst]; ok {
		e := el.Value.(*odEntry)
		p.lru.MoveToFront(el)
		e.last = now
		if e.parent != parent {
			// Same pool settings, other route-level settings (pass_host):
			// a new runtime over the same pools.
			e.up = derivedUpstream(parent, e.up.nodes[0], e.up.h2, e.up.picker, dial)
			e.parent = parent
		}
		up := e.up
		p.mu.Unlock()
		return up
	}
	var evicted []*upstream
	for back := p.lru.Back(); back != nil; back = p.lru.Back() {
		e := back.Value.(*odEntry)
		if p.lru.Len() < limit && now.Sub(e.last) < p.idle {
			break
		}
		p.lru.Remove(back)
		delete(p.m, e.dst)
		evicted = append(evicted, e.up)
	}
	up := newDestUpstream(parent, dst, p.size, p.idle, dial)
	p.m[dst] = p.lru.PushFront(&odEntry{dst: dst, parent: parent, up: up, last: now})
	p.mu.Unlock()
	for _, e := range evicted {
		e.closeDest()
	}
	return up
}

// close releases the idle connections of every destination.
func (p *odPools) close() {
	p.mu.Lock()
	var ups []*upstream
	for el := p.lru.Front(); el != nil; el = el.Next() {
		ups = append(ups, el.Value.(*odEntry).up)
	}
	p.mu.Unlock()
	for _, u := range ups {
		u.closeDest()
	}
}

// closeOrigDst closes the destination pools of an original_dst runtime;
// a no-op for other upstreams.
func (u *upstream) closeOrigDst() {
	if u.od != nil {
		u.od.pools.close()
	}
}

func (u *upstream) closeDest() {
	u.nodes[0].hc.CloseIdleConnections()
	u.h2.close()
}

// dialFunc is the signature of Options.PassThroughDial.
type dialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

// newDestUpstream builds the one-node runtime of destination dst.
func newDestUpstream(parent *upstream, dst netip.AddrPort, size int, idle time.Duration, dial dialFunc) *upstream {
	addr := dst.String()
	n := &node{addr: addr, hostHdr: []byte(addr), weight: 1}
	n.hc = newHostPool(addr, parent, size, idle)
	hc := n.hc.newHostClient()
	if dial != nil {
		to := parent.to.connect
		hc.Dial = func(a string) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(context.Background(), to)
			defer cancel()
			c, err := dial(ctx, "tcp", a)
			if err != nil {
				return nil, &connectError{err}
			}
			return n.hc.wrap(c), nil
		}
	}
	n.hc.hc.Store(hc)
	// One node: New cannot fail (distinct address, weight 1, known kind).
	pk, _ := balancer.New(balancer.RoundRobin, []balancer.Node{{Addr: addr, Weight: 1}}, nil)
	return derivedUpstream(parent, n, &h2Upstream{}, pk, dial)
}

func derivedUpstream(parent *upstream, n *node, h2 *h2Upstream, pk balancer.Picker, dial dialFunc) *upstream {
	return &upstream{
		id: parent.id, key: parent.key, scheme: parent.scheme, tls: parent.tls, grpc: parent.grpc,
		passHost: parent.passHost, host: parent.host, retries: 0, retryTO: parent.retryTO, to: parent.to,
		nodes: []*node{n}, picker: pk, h2: h2, poolSig: parent.poolSig, tlsConf: parent.tlsConf, dial: dial,
	}
}

// parseOrigDstHost parses an x-envoy-original-dst-host value: an IP
// literal and port ("10.0.0.1:80", "[::1]:8080"); host names are refused
// as Envoy refuses them.
func parseOrigDstHost(v []byte) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(string(v))
	if err != nil || ap.Port() == 0 || ap.Addr().Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("%w: %q", errBadOrigDstHost, v)
	}
	return unmapped(ap), nil
}

// odConn marks a connection the listener recovered an original
// destination for; LocalAddr reports it (as Envoy restores the local
// address of such connections), so server_addr, server_port and
// X-Forwarded-Port name where the client was going.
type odConn struct {
	net.Conn
	od    netip.AddrPort
	local *net.TCPAddr
}

func newODConn(c net.Conn, od netip.AddrPort) *odConn {
	return &odConn{Conn: c, od: od, local: net.TCPAddrFromAddrPort(od)}
}

// LocalAddr returns the original destination.
func (c *odConn) LocalAddr() net.Addr { return c.local }

// captured reports whether dst, the destination serveChains was given for
// c, is an original destination recovered from capture rather than the
// listener's own address: a virtual listener is only reached by
// hand-off; REDIRECT shows as a destination other than the socket's
// local address; TPROXY as a local port other than the listener's.
func (l *listener) captured(c net.Conn, dst netip.AddrPort) bool {
	if !dst.IsValid() {
		return false
	}
	if l.ln == nil {
		return true
	}
	if unmapped(dst) != unmapped(localAddrPort(c)) {
		return true
	}
	a, ok := l.ln.Addr().(*net.TCPAddr)
	return ok && int(dst.Port()) != a.Port
}

// connOrigDst finds the original destination recorded on c by unwrapping
// the data plane's own connection wrappers.
func connOrigDst(c net.Conn) (netip.AddrPort, bool) {
	for range 8 {
		switch v := c.(type) {
		case *odConn:
			return v.od, true
		case *peekConn:
			c = v.Conn
		case *secConn:
			c = v.Conn
		case interface{ NetConn() net.Conn }: // *tls.Conn
			c = v.NetConn()
		default:
			return netip.AddrPort{}, false
		}
	}
	return netip.AddrPort{}, false
}

// odCtxKey carries a connection's original destination in the base
// context of its HTTP/2 requests.
type odCtxKey struct{}

// h2ConnContext is the base context of an HTTP/2 connection: it carries
// the original destination of c, if any (nil: context.Background).
func h2ConnContext(c net.Conn) context.Context {
	if od, ok := connOrigDst(c); ok {
		return context.WithValue(context.Background(), odCtxKey{}, od)
	}
	return nil
}

// origDstFor returns the one-node runtime serving a request of the
// original_dst upstream up whose connection went to connDst (valid when
// known) and whose header value is hdr; nil when no destination is known
// or the header is malformed (answered 503, as Envoy does).
func (d *Dataplane) origDstFor(up *upstream, connDst netip.AddrPort, hdr []byte) *upstream {
	dst := connDst
	if up.od.useHeader && len(hdr) > 0 {
		hd, err := parseOrigDstHost(hdr)
		if err != nil {
			d.log.Debug("dataplane: original_dst header refused", "upstream", up.id, "err", err)
			return nil
		}
		dst = hd
	}
	if !dst.IsValid() {
		d.log.Debug("dataplane: original_dst upstream: connection was not redirected", "upstream", up.id)
		return nil
	}
	return up.od.pools.get(up, dst, up.od.max, d.opts.PassThroughDial)
}

// origDstH1 resolves an original_dst upstream for an HTTP/1.1 request.
func (d *Dataplane) origDstH1(c *h1Ctx, up *upstream) *upstream {
	dst, _ := connOrigDst(c.fc.Conn())
	var hdr []byte
	if up.od.useHeader {
		hdr = c.fc.Request.Header.Peek(up.od.header)
	}
	return d.origDstFor(up, dst, hdr)
}

// origDstHTTP resolves an original_dst upstream for a net/http request
// (HTTP/2, gRPC).
func (d *Dataplane) origDstHTTP(r *http.Request, up *upstream) *upstream {
	dst, _ := r.Context().Value(odCtxKey{}).(netip.AddrPort)
	var hdr []byte
	if up.od.useHeader {
		if v := r.Header.Get(up.od.header); v != "" {
			hdr = []byte(v)
		}
	}
	return d.origDstFor(up, dst, hdr)
}

// proxyTCPOrigDst connects a TCP chain's connection to its original
// destination dst (captured: it is one) through PassThroughDial and
// splices; a connection that was not redirected is closed.
func (d *Dataplane) proxyTCPOrigDst(c net.Conn, up *upstream, dst netip.AddrPort, captured bool) {
	d.stats.TCPConns.Add(1)
	if !captured {
		d.log.Warn("dataplane: original_dst upstream: connection was not redirected", "upstream", up.id)
		c.Close()
		return
	}
	uc, err := up.dialAddr(dst.String(), d.opts.PassThroughDial)
	if err != nil {
		d.stats.UpstreamErrors.Add(1)
		d.log.Warn("dataplane: original destination unreachable", "upstream", up.id, "dst", dst.String(), "err", err)
		c.Close()
		return
	}
	if up.tls { // TLS origination (mTLS, tls.go)
		if uc, err = d.dialUpstreamTLS(uc, up); err != nil {
			c.Close()
			return
		}
	}
	d.splice(c, uc)
}

// dialAddr dials addr within the connect timeout, through dial when set
// (up.dial for destination runtimes).
func (u *upstream) dialAddr(addr string, dial dialFunc) (net.Conn, error) {
	if dial == nil {
		return net.DialTimeout("tcp", addr, u.to.connect)
	}
	ctx, cancel := context.WithTimeout(context.Background(), u.to.connect)
	defer cancel()
	return dial(ctx, "tcp", addr)
}

// withOrigDst records od on c for connOrigDst. The mark goes beneath the
// sniffing *peekConn, in place, so the wrappers above it (TLS and the
// secured chain's *secConn, which serveSecured type-checks; serveSniffed's
// *peekConn) keep their types. Without a *peekConn, a bare connection is
// wrapped and a secured one is returned unmarked.
func withOrigDst(c net.Conn, od netip.AddrPort) net.Conn {
	for cur := c; ; {
		switch v := cur.(type) {
		case *peekConn:
			v.Conn = newODConn(v.Conn, od)
			return c
		case *secConn:
			cur = v.Conn
		case interface{ NetConn() net.Conn }: // *tls.Conn
			cur = v.NetConn()
		default:
			if _, sec := c.(*secConn); sec {
				return c
			}
			return newODConn(c, od)
		}
	}
}
