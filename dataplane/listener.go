package dataplane

import (
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshagent/meshagent/dataplane/mtls"
	"github.com/meshagent/meshagent/etcdcompat/apisix"
)

// listenerKind says what a listener serves.
type listenerKind int

const (
	kindHTTP   listenerKind = iota // --http-listen: default route table
	kindStream                     // --stream-listen: stream routes
	kindStore                      // an apisix.Listener from the store
)

// listener is one bound socket and its accept loop.
type listener struct {
	d      *Dataplane
	kind   listenerKind
	id     string
	ln     net.Listener
	chains atomic.Pointer[chainTable]
	closed atomic.Bool
	wg     sync.WaitGroup
}

// chainTable is the immutable filter-chain set of a store listener. An
// update swaps it; connections keep the chain they were given.
type chainTable struct {
	obj    *apisix.Listener
	chains []*filterChain
	def    *filterChain
}

// filterChain is a compiled apisix.FilterChain.
type filterChain struct {
	fc       apisix.FilterChain
	dstIPs   []netip.Prefix
	srcIPs   []netip.Prefix
	tlsConf  *tls.Config
	sniNames []string
	sec      *chainSec   // mTLS/RBAC (tls.go); nil: nothing to enforce
	drain    *chainDrain // drain.go
}

func (d *Dataplane) listenStatic(addr string, kind listenerKind) (*listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	l := &listener{d: d, kind: kind, ln: ln}
	l.start()
	return l, nil
}

func (l *listener) start() {
	l.d.stats.ListenersActive.Add(1)
	l.wg.Add(1)
	go l.serve()
}

func (l *listener) serve() {
	defer l.wg.Done()
	var delay time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if l.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			time.Sleep(delay)
			continue
		}
		delay = 0
		go l.handle(c)
	}
}

func (l *listener) close() {
	if l.closed.Swap(true) || l.ln == nil { // nil: virtual, never started
		return
	}
	l.d.stats.ListenersActive.Add(-1)
	_ = l.ln.Close()
	l.wg.Wait()
}

func localAddrPort(c net.Conn) netip.AddrPort {
	if a, ok := c.LocalAddr().(*net.TCPAddr); ok {
		return a.AddrPort()
	}
	return netip.AddrPort{}
}

func unmapped(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func remoteAddrPort(c net.Conn) netip.AddrPort {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort()
	}
	return netip.AddrPort{}
}

func (l *listener) handle(c net.Conn) {
	d := l.d
	d.stats.ActiveConns.Add(1)
	defer d.stats.ActiveConns.Add(-1)
	if !d.track(c) {
		c.Close()
		return
	}
	defer d.untrack(c)
	switch l.kind {
	case kindHTTP:
		d.serveSniffed(c, "", nil, false)
	case kindStream:
		s := d.snap.Load()
		if s == nil {
			c.Close()
			return
		}
		sc := streamConn{local: localAddrPort(c), remote: remoteAddrPort(c).Addr()}
		var conn net.Conn = c
		if s.needsSNI() {
			pc, res := sniff(c, d.opts.SniffTimeout)
			conn, sc.sni = pc, res.sni
		}
		sr := s.findStream(sc)
		if sr == nil {
			c.Close()
			return
		}
		d.proxyTCP(conn, sr.up)
	case kindStore:
		ct := l.chains.Load()
		dst := localAddrPort(c)
		if ct.obj.UseOriginalDst && d.opts.OriginalDst != nil {
			od, err := d.opts.OriginalDst(c)
			if err != nil {
				d.log.Warn("dataplane: original destination unknown", "listener", l.id, "err", err)
				c.Close()
				return
			}
			if a, ok := l.ln.Addr().(*net.TCPAddr); ok && od.Port() == uint16(a.Port) && od == unmapped(dst) {
				// Not redirected: made to this listener's own port. It is
				// served by this listener's chains (as Envoy does);
				// passing it through would dial this listener forever.
				l.serveChains(c, ct, od)
				return
			}
			if t := d.listenerFor(od, l); t != nil {
				t.serveChains(c, t.chains.Load(), od)
				return
			}
			d.passthrough(c, od)
			return
		}
		if ct.obj.Labels[apisix.LabelOriginalDstFilter] == "true" && d.opts.OriginalDst != nil {
			// Chains match on where the client was going (virtualInbound);
			// TPROXY sockets have no SO_ORIGINAL_DST: their local address is it.
			if od, err := d.opts.OriginalDst(c); err == nil {
				dst = unmapped(od)
			}
		}
		l.serveChains(c, ct, dst)
	}
}

// listenerFor finds the store listener bound to dst's port (exact IP
// first, then a wildcard address), other than self.
func (d *Dataplane) listenerFor(dst netip.AddrPort, self *listener) *listener {
	d.mu.Lock()
	defer d.mu.Unlock()
	var wild *listener
	for _, l := range d.dynamic {
		if l == self {
			continue
		}
		ap := localListenAddr(l)
		if ap.Port() != dst.Port() {
			continue
		}
		if ap.Addr() == dst.Addr() {
			return l
		}
		if ap.Addr().IsUnspecified() {
			wild = l
		}
	}
	return wild
}

func localListenAddr(l *listener) netip.AddrPort {
	if ct := l.chains.Load(); ct != nil {
		if ap, err := netip.ParseAddrPort(ct.obj.Address); err == nil {
			return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		}
	}
	if l.ln == nil {
		return netip.AddrPort{}
	}
	if a, ok := l.ln.Addr().(*net.TCPAddr); ok {
		return a.AddrPort()
	}
	return netip.AddrPort{}
}

// serveChains picks a filter chain for c and serves it.
func (l *listener) serveChains(c net.Conn, ct *chainTable, dst netip.AddrPort) {
	d := l.d
	var pc net.Conn = c
	res := sniffResult{proto: protoOpaque}
	if !slices.Contains(d.opts.OpaquePorts, int(dst.Port())) {
		var p *peekConn
		p, res = sniff(c, d.opts.SniffTimeout)
		pc = p
	}
	fc := ct.choose(dst, remoteAddrPort(c).Addr(), res)
	if fc == nil {
		c.Close()
		return
	}
	// mTLS (tls.go): STRICT refusal of plaintext, TLS termination, peer
	// identity, network RBAC.
	pc, ok := d.secureChain(l.id, pc, fc, res, dst)
	if !ok {
		return
	}
	switch fc.fc.Kind {
	case "tcp":
		s := d.snap.Load()
		var sr *streamRoute
		if s != nil && fc.fc.StreamRouteID != "" {
			sr = s.streamByID(string(fc.fc.StreamRouteID))
		}
		if sr == nil {
			if fc.fc.StreamRouteID == "" {
				d.passthrough(pc, dst)
				return
			}
			c.Close()
			return
		}
		if sr.up != nil && sr.up.od != nil { // original_dst (origdst.go)
			d.proxyTCPOrigDst(pc, sr.up, dst, l.captured(c, dst))
			return
		}
		d.proxyTCP(pc, sr.up)
	default:
		if l.captured(c, dst) { // original_dst upstreams find dst on the conn (origdst.go)
			pc = withOrigDst(pc, dst)
		}
		// Drained when the chain changes (drain.go).
		defer d.servers.drains.track(pc, fc.drain)()
		if fc.sec != nil { // mTLS/RBAC (tls.go)
			d.serveSecured(pc, fc, res)
			return
		}
		d.serveSniffed(pc, fc.fc.RouteConfig, &res, false)
	}
}

// choose selects a filter chain the way Envoy does: destination port,
// destination IP, server name, transport protocol, ALPN, source IP; at
// each step the chains naming a matching value win over those naming none.
func (ct *chainTable) choose(dst netip.AddrPort, src netip.Addr, res sniffResult) *filterChain {
	cands := ct.chains
	transport := "raw_buffer"
	if res.proto == protoTLS {
		transport = "tls"
	}
	steps := []func(*filterChain) (specified, ok bool){
		func(f *filterChain) (bool, bool) {
			return f.fc.Match.DestinationPort != 0, f.fc.Match.DestinationPort == int(dst.Port())
		},
		func(f *filterChain) (bool, bool) { return len(f.dstIPs) > 0, prefixesContain(f.dstIPs, dst.Addr()) },
		func(f *filterChain) (bool, bool) { return len(f.sniNames) > 0, sniMatch(f.sniNames, res.sni) },
		func(f *filterChain) (bool, bool) {
			return f.fc.Match.TransportProtocol != "", f.fc.Match.TransportProtocol == transport
		},
		func(f *filterChain) (bool, bool) {
			return len(f.fc.Match.ALPN) > 0, anyIn(f.fc.Match.ALPN, res.alpn)
		},
		func(f *filterChain) (bool, bool) { return len(f.srcIPs) > 0, prefixesContain(f.srcIPs, src) },
	}
	for _, st := range steps {
		var matched, generic []*filterChain
		for _, f := range cands {
			spec, ok := st(f)
			switch {
			case spec && ok:
				matched = append(matched, f)
			case !spec:
				generic = append(generic, f)
			}
		}
		if len(matched) > 0 {
			cands = matched
		} else {
			cands = generic
		}
		if len(cands) == 0 {
			break
		}
	}
	if len(cands) > 0 {
		return cands[0]
	}
	return ct.def
}

func prefixesContain(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func sniMatch(names []string, sni string) bool {
	sni = strings.ToLower(sni)
	for _, n := range names {
		if n == sni || strings.HasPrefix(n, "*.") && strings.HasSuffix(sni, n[1:]) && len(sni) > len(n)-1 {
			return true
		}
	}
	return false
}

func anyIn(want, have []string) bool {
	for _, w := range want {
		if slices.Contains(have, w) {
			return true
		}
	}
	return false
}

// serveSniffed dispatches an HTTP connection by its first bytes.
func (d *Dataplane) serveSniffed(c net.Conn, table string, res *sniffResult, isTLS bool) {
	if res == nil {
		pc, r := sniff(c, d.opts.SniffTimeout)
		c, res = pc, &r
	}
	switch res.proto {
	case protoHTTP1:
		// ServeConn closes c unless a WebSocket upgrade hijacked it.
		if pc, ok := c.(*peekConn); ok && !isTLS {
			if d.h1.adopt(pc, table) {
				return // the event loops own it now (h1loop_linux.go)
			}
			pc.lazyIdle = d.servers.idleTimeout()
			_ = d.servers.getLazy(table).ServeConn(pc)
			return
		}
		_ = d.servers.get(table, isTLS).ServeConn(c)
	case protoH2:
		d.serveH2Conn(c, table, isTLS)
		_ = c.Close()
	case protoTLS:
		if isTLS {
			c.Close()
			return
		}
		s := d.snap.Load()
		if s == nil || len(s.certs) == 0 {
			c.Close()
			return
		}
		d.serveTLS(c, s.tlsConfig(), table)
	default:
		c.Close()
	}
}

// serveTLS terminates TLS and serves HTTP/1.1 or h2 by ALPN.
func (d *Dataplane) serveTLS(c net.Conn, conf *tls.Config, table string) {
	tc := tls.Server(c, conf)
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		d.log.Debug("dataplane: TLS handshake failed", "err", err)
		tc.Close()
		return
	}
	_ = tc.SetDeadline(time.Time{})
	if mtls.ProtocolOf(tc.ConnectionState().NegotiatedProtocol) == mtls.AppH2 {
		d.serveH2Conn(tc, table, true)
		tc.Close()
		return
	}
	_ = d.servers.get(table, true).ServeConn(tlsPeerConn(tc)) // peer_identity (tls.go)
}

// reconcileListeners binds, updates and closes store listeners to match s.
func (d *Dataplane) reconcileListeners(s *snapshot) {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	var toClose []*listener
	for id, l := range d.dynamic {
		if _, ok := s.listeners[id]; !ok {
			toClose = append(toClose, l)
			delete(d.dynamic, id)
		}
	}
	for id, obj := range s.listeners {
		ct, err := s.compileChains(obj)
		if err != nil {
			d.stats.ConfigRejected.Add(1)
			d.log.Error("dataplane: listener rejected, previous version stays in force", "id", id, "err", err)
			continue
		}
		if l, ok := d.dynamic[id]; ok {
			old := l.chains.Load()
			if old.obj.Address == obj.Address && old.obj.Transparent == obj.Transparent &&
				old.obj.Labels[apisix.LabelBindToPort] == obj.Labels[apisix.LabelBindToPort] {
				if !reflect.DeepEqual(old.obj, obj) {
					d.drainChains(old, ct) // drain.go
					l.chains.Store(ct)
				}
				continue
			}
			toClose = append(toClose, l)
			delete(d.dynamic, id)
		}
		if obj.Labels[apisix.LabelBindToPort] == "false" {
			// Virtual: no socket; reached by use_original_dst hand-off.
			l := &listener{d: d, kind: kindStore, id: id}
			l.chains.Store(ct)
			d.dynamic[id] = l
			continue
		}
		ln, err := listenTCP(obj.Address, obj.Transparent)
		if err != nil {
			d.stats.ConfigRejected.Add(1)
			d.log.Error("dataplane: listener bind failed", "id", id, "address", obj.Address, "err", err)
			continue
		}
		l := &listener{d: d, kind: kindStore, id: id, ln: ln}
		l.chains.Store(ct)
		d.dynamic[id] = l
		l.start()
	}
	d.mu.Unlock()
	for _, l := range toClose {
		d.drainChains(l.chains.Load(), nil)
		l.close()
	}
}

// compileChains builds the chain table of a listener object.
func (s *snapshot) compileChains(obj *apisix.Listener) (*chainTable, error) {
	ct := &chainTable{obj: obj}
	comp := func(f apisix.FilterChain, i int) (*filterChain, error) {
		c := &filterChain{fc: f, drain: new(chainDrain)}
		for _, p := range f.Match.PrefixRanges {
			pp, err := parsePrefix(p)
			if err != nil {
				return nil, fieldErr("filter_chains", i, "match.prefix_ranges", err)
			}
			c.dstIPs = append(c.dstIPs, pp)
		}
		for _, p := range f.Match.SourcePrefixes {
			pp, err := parsePrefix(p)
			if err != nil {
				return nil, fieldErr("filter_chains", i, "match.source_prefix_ranges", err)
			}
			c.srcIPs = append(c.srcIPs, pp)
		}
		for _, n := range f.Match.ServerNames {
			c.sniNames = append(c.sniNames, strings.ToLower(n))
		}
		switch f.Kind {
		case "http", "tcp":
		default:
			return nil, fieldErr("filter_chains", i, "kind", errors.New("one of http, tcp"))
		}
		if f.TLS != nil {
			conf, err := s.chainTLS(f.TLS)
			if err != nil {
				return nil, fieldErr("filter_chains", i, "tls", err)
			}
			c.tlsConf = conf
		}
		sec, err := s.chainSecurity(f, i, obj.Direction == "inbound") // mTLS/RBAC (tls.go)
		if err != nil {
			return nil, err
		}
		c.sec = sec
		return c, nil
	}
	for i, f := range obj.FilterChains {
		c, err := comp(f, i)
		if err != nil {
			return nil, err
		}
		ct.chains = append(ct.chains, c)
	}
	if obj.DefaultChain != nil {
		c, err := comp(*obj.DefaultChain, -1)
		if err != nil {
			return nil, err
		}
		ct.def = c
	}
	return ct, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}
