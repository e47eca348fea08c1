// Package dataplane is meshagent's native data plane: it compiles the
// store's APISIX objects into an immutable snapshot (route tables, upstream
// runtimes with connection pools, plugin chains with global rules, service
// and plugin_config merged as APISIX merges them), publishes it with an
// atomic pointer swap, and serves traffic from it: HTTP/1.1 (epoll event
// loops for routes without plugins, h1loop_linux.go; fasthttp for the
// rest), HTTP/2 and gRPC (a frame-level server and upstream client of its
// own over x/net/http2's framer and hpack, h2server.go and h2client.go),
// WebSocket, and TCP (stream routes: spliced, or relayed in the kernel
// with a BPF sockmap, tcp_accel.go), sniffed on one port, on the static
// --http-listen/--stream-listen listeners and on listeners from
// /meshagent/listeners/.
//
// It owns listeners, protocol detection, proxying, retries, timeouts and
// the snapshot lifecycle. It does not own route matching semantics
// (dataplane/router), vars expressions (dataplane/expr), the plugin API
// (package plugins), the admin endpoints (dataplane/admin), nor where
// configuration comes from (package store and its writers).
package dataplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshagent/meshagent/dataplane/balancer"
	"github.com/meshagent/meshagent/dataplane/mtls"
	"github.com/meshagent/meshagent/etcdcompat/apisix"
	"github.com/meshagent/meshagent/etcdcompat/store"
)

// Source is the part of store.Store the data plane reads.
type Source interface {
	Objects(prefix string) ([]store.Object, int64)
	WatchObjects(ctx context.Context, prefix string, rev int64, fn func([]store.ObjectEvent))
}

// Key prefixes the data plane follows.
const (
	APISIXPrefix   = "/apisix/"
	ListenerPrefix = "/meshagent/listeners/"
	// SecretPrefix holds SDS validation contexts (apisix.Secret) for mTLS.
	SecretPrefix = apisix.SecretPrefix
)

// Errors returned by the data plane.
var (
	ErrNoSource = errors.New("dataplane: Options.Source is required")
	ErrClosed   = errors.New("dataplane: closed")
)

// Options configure New.
type Options struct {
	// Source is the store the snapshot is compiled from (required).
	Source Source
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// HTTPListen is the static HTTP listener (host:port; "" for none).
	// It sniffs HTTP/1.1, h2c, TLS (ssl objects by SNI) on one port and
	// serves the default route table.
	HTTPListen string
	// StreamListen is the static TCP listener for stream routes.
	StreamListen string
	// OriginalDst recovers a redirected connection's original destination
	// (SO_ORIGINAL_DST); needed by listeners with use_original_dst.
	OriginalDst func(net.Conn) (netip.AddrPort, error)
	// SniffTimeout bounds the wait for a client's first bytes; after it
	// the connection is treated as a server-first opaque TCP stream.
	// Default 200ms.
	SniffTimeout time.Duration
	// OpaquePorts are destination ports never sniffed (always TCP).
	OpaquePorts []int
	// Coalesce is the minimum interval between two snapshot rebuilds, so
	// bursts of changes compile once. Default 5ms.
	Coalesce time.Duration
	// PassThroughDial dials the original destination of a connection that
	// is passed through (a use_original_dst listener found no listener for
	// it); nil means a plain net.Dialer. `meshagent run --capture-mark`
	// sets redirect.MarkedDialer so such dials are not captured again.
	PassThroughDial func(ctx context.Context, network, addr string) (net.Conn, error)
	// RefusePassThrough resets (RST) connections that would be passed
	// through instead of forwarding them (Istio's REGISTRY_ONLY policy).
	RefusePassThrough bool
	// HTTP1Engine chooses how plaintext HTTP/1.1 is served: "evloop" (the
	// default on Linux) forwards requests of routes without plugins from
	// epoll event loops and hands everything else to fasthttp; "fasthttp"
	// serves all of it with fasthttp.
	HTTP1Engine string
	// TCPAccel hands proxied TCP connections (stream routes, tcp_proxy,
	// passthrough) that turn bulk to the kernel relay where it loads
	// (package sockmap: CAP_BPF/CAP_NET_ADMIN, Linux 6.1+), else they stay
	// spliced in user space. `meshagent run` sets it unless --tcp-accel=off.
	TCPAccel bool
}

// HTTP/1.1 engines (Options.HTTP1Engine).
const (
	EngineEvloop   = "evloop"
	EngineFasthttp = "fasthttp"
)

// Stats are the data plane's counters; all fields are atomics.
type Stats struct {
	// Requests counts HTTP requests (all protocols) received.
	Requests atomic.Int64
	// Rebuilds counts snapshots published.
	Rebuilds atomic.Int64
	// ConfigRejected counts objects (routes, upstreams, listeners, ...)
	// refused at snapshot build; their previous version stayed in force.
	ConfigRejected atomic.Int64
	// PluginPanics counts filter panics (each answered 500).
	PluginPanics atomic.Int64
	// PluginBugs counts Stop without a response (each answered 500).
	PluginBugs atomic.Int64
	// UpstreamErrors counts failed upstream attempts (connect, reset,
	// timeout), retried or not.
	UpstreamErrors atomic.Int64
	// Retries counts attempts after the first one.
	Retries atomic.Int64
	// NoRoute counts requests answered 404 for want of a route.
	NoRoute atomic.Int64
	// ActiveConns is the number of downstream connections open now.
	ActiveConns atomic.Int64
	// TCPConns counts connections proxied as TCP (stream routes).
	TCPConns atomic.Int64
	// ListenersActive is the number of bound listeners.
	ListenersActive atomic.Int64
	// PassThrough counts connections forwarded to their original
	// destination; PassThroughRefused those reset by RefusePassThrough.
	PassThrough        atomic.Int64
	PassThroughRefused atomic.Int64
	// H1Fallbacks counts HTTP/1.1 connections the event loops handed to
	// fasthttp (a route with plugins, an unusual request shape).
	H1Fallbacks atomic.Int64
	// H2Drained counts HTTP/2 connections sent GOAWAY because their
	// filter chain changed or went (h2drain.go).
	H2Drained atomic.Int64
	// TCPLoopConns counts TCP connections the event loops relayed;
	// TCPHandOvers those of them handed to goroutines as bulk transfers.
	TCPLoopConns atomic.Int64
	TCPHandOvers atomic.Int64
}

// Dataplane serves traffic from the latest snapshot of Source.
type Dataplane struct {
	opts  Options
	log   *slog.Logger
	snap  atomic.Pointer[snapshot]
	stats Stats
	ready atomic.Bool

	mu        sync.Mutex
	static    []*listener
	dynamic   map[string]*listener // by listener id
	servers   servers
	closed    bool
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	changed   chan struct{}
	objs      *objects            // guarded by rebuildMu: the builder reads it, no copy
	objsMu    sync.Mutex          // guards pending
	pending   []store.ObjectEvent // changes not yet applied to objs
	rebuildMu sync.Mutex
	states    map[string]*balancer.States // guarded by rebuildMu
	connMu    sync.Mutex
	conns     map[net.Conn]struct{} // accepted connections, closed by Close
	tlsm      *mtls.Manager         // mTLS certificates in force
	h1        *h1loops              // HTTP/1.1 event loops; nil: fasthttp only
	applied   atomic.Int64          // Revision: the snapshot's, after reconcileListeners
	accel     tcpAccel              // kernel TCP relay (tcp_accel.go)
}

// New validates opts and returns a Dataplane; Start begins serving.
func New(opts Options) (*Dataplane, error) {
	if opts.Source == nil {
		return nil, ErrNoSource
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.SniffTimeout <= 0 {
		opts.SniffTimeout = 200 * time.Millisecond
	}
	if opts.Coalesce <= 0 {
		opts.Coalesce = 5 * time.Millisecond
	}
	switch opts.HTTP1Engine {
	case "":
		opts.HTTP1Engine = EngineEvloop
	case EngineEvloop, EngineFasthttp:
	default:
		return nil, fmt.Errorf("dataplane: HTTP/1.1 engine %q: want %s or %s", opts.HTTP1Engine, EngineEvloop, EngineFasthttp)
	}
	d := &Dataplane{opts: opts, log: opts.Logger, dynamic: map[string]*listener{}, changed: make(chan struct{}, 1)}
	d.servers.d = d
	d.tlsm = mtls.NewManager(opts.Logger)
	return d, nil
}

// Start compiles the first snapshot, binds the static listeners and
// follows the store until ctx ends or Close is called. It returns once
// the listeners are bound.
func (d *Dataplane) Start(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	d.cancel = cancel
	d.objs = newObjects()
	rev := int64(0)
	for _, p := range []string{APISIXPrefix, ListenerPrefix, SecretPrefix} {
		objs, r := d.opts.Source.Objects(p)
		for _, o := range objs {
			d.objs.set(o.Key, o, false)
		}
		rev = max(rev, r)
	}
	d.objs.rev = rev
	d.rebuild()
	if d.opts.HTTP1Engine == EngineEvloop {
		h1, err := newH1Loops(d, h1LoopCount())
		if err != nil {
			d.log.Warn("dataplane: HTTP/1.1 event loops unavailable; fasthttp serves all requests", "err", err)
		}
		d.h1 = h1
	}
	if d.opts.HTTPListen != "" {
		l, err := d.listenStatic(d.opts.HTTPListen, kindHTTP)
		if err != nil {
			cancel()
			return err
		}
		d.static = append(d.static, l)
	}
	if d.opts.StreamListen != "" {
		l, err := d.listenStatic(d.opts.StreamListen, kindStream)
		if err != nil {
			cancel()
			d.closeListeners()
			return err
		}
		d.static = append(d.static, l)
	}
	for _, p := range []string{APISIXPrefix, ListenerPrefix, SecretPrefix} {
		d.opts.Source.WatchObjects(ctx, p, rev, d.onEvents)
	}
	d.wg.Add(1)
	go d.loop(ctx)
	d.ready.Store(true)
	return nil
}

// onEvents records changes and wakes the rebuild loop; it never blocks.
func (d *Dataplane) onEvents(evs []store.ObjectEvent) {
	d.objsMu.Lock()
	d.pending = append(d.pending, evs...)
	d.objsMu.Unlock()
	select {
	case d.changed <- struct{}{}:
	default:
	}
}

// loop rebuilds at most once per Coalesce interval while changes arrive.
func (d *Dataplane) loop(ctx context.Context) {
	defer d.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.changed:
		}
		t := time.NewTimer(d.opts.Coalesce)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		d.rebuild()
	}
}

// rebuild compiles and publishes a snapshot, then reconciles listeners.
func (d *Dataplane) rebuild() {
	d.rebuildMu.Lock()
	defer d.rebuildMu.Unlock()
	// Pending changes are applied to the rebuild's own objects: no copy of
	// every object per rebuild (a bulk apply of 10k routes rebuilds many
	// times while it arrives).
	d.objsMu.Lock()
	evs := d.pending
	d.pending = nil
	d.objsMu.Unlock()
	for _, e := range evs {
		d.objs.set(e.Key, store.Object{Key: e.Key, Value: e.Value, ModRevision: e.Revision}, e.Deleted)
		d.objs.rev = max(d.objs.rev, e.Revision)
	}
	objs := d.objs
	prev := d.snap.Load()
	if d.states == nil {
		d.states = map[string]*balancer.States{}
	}
	b := &builder{log: d.log, stats: &d.stats, prev: prev, objs: objs, states: d.states, tlsm: d.tlsm}
	s := b.build()
	d.snap.Store(s)
	for k, up := range s.upstreams {
		if prev == nil || prev.upstreams[k] == nil {
			up.start()
		}
	}
	d.stats.Rebuilds.Add(1)
	d.reconcileListeners(s)
	d.applied.Store(s.rev) // routes and listeners of s are both in force
	if prev != nil {
		var inUse map[any]bool // pools and transports reused by s
		for k, up := range prev.upstreams {
			if _, ok := s.upstreams[k]; ok {
				continue
			}
			if inUse == nil {
				inUse = map[any]bool{}
				for _, cur := range s.upstreams {
					inUse[cur.h2] = true
					for _, n := range cur.nodes {
						inUse[n.hc] = true
					}
				}
			}
			// Requests in flight keep their connections; idle ones of
			// pools no longer used are closed a little later.
			time.AfterFunc(5*time.Second, func() { up.retire(inUse) })
		}
	}
}

// Ready reports whether the first snapshot is compiled and the static
// listeners are bound.
func (d *Dataplane) Ready() bool { return d.ready.Load() }

// Revision is the store revision of the snapshot in force, once its
// listeners are bound and updated too.
func (d *Dataplane) Revision() int64 { return d.applied.Load() }

// Stats returns the live counters (read them with Load).
func (d *Dataplane) Stats() *Stats { return &d.stats }

// Addrs returns the bound addresses of the static listeners, in the order
// HTTP, stream (absent ones are skipped).
func (d *Dataplane) Addrs() []net.Addr {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]net.Addr, 0, len(d.static))
	for _, l := range d.static {
		out = append(out, l.ln.Addr())
	}
	return out
}

// ListenerAddr returns the bound address of the store listener id.
func (d *Dataplane) ListenerAddr(id string) (net.Addr, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	l, ok := d.dynamic[id]
	if !ok || l.ln == nil { // unknown, or virtual (not bound)
		return nil, false
	}
	return l.ln.Addr(), true
}

// HasListener reports whether the store listener id is in force: bound,
// or virtual (meshagent.bind_to_port=false, reached by hand-off).
func (d *Dataplane) HasListener(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.dynamic[id]
	return ok
}

// Close stops the listeners and the watch; established connections are
// closed too.
func (d *Dataplane) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return ErrClosed
	}
	d.closed = true
	d.mu.Unlock()
	d.ready.Store(false)
	if d.cancel != nil {
		d.cancel()
	}
	d.closeListeners()
	d.wg.Wait()
	d.h1.close()
	d.connMu.Lock()
	for c := range d.conns {
		_ = c.Close()
	}
	d.conns = nil
	d.connMu.Unlock()
	d.closeTCPAccel()
	if s := d.snap.Load(); s != nil {
		for _, up := range s.upstreams {
			up.close() // idle pools and health checkers
		}
	}
	return nil
}

// track records an accepted connection so Close can end it; false once
// the data plane is closed.
func (d *Dataplane) track(c net.Conn) bool {
	d.connMu.Lock()
	defer d.connMu.Unlock()
	d.mu.Lock()
	closed := d.closed
	d.mu.Unlock()
	if closed {
		return false
	}
	if d.conns == nil {
		d.conns = map[net.Conn]struct{}{}
	}
	d.conns[c] = struct{}{}
	return true
}

func (d *Dataplane) untrack(c net.Conn) {
	d.connMu.Lock()
	delete(d.conns, c)
	d.connMu.Unlock()
}

func (d *Dataplane) closeListeners() {
	d.mu.Lock()
	ls := append([]*listener(nil), d.static...)
	for _, l := range d.dynamic {
		ls = append(ls, l)
	}
	d.static, d.dynamic = nil, map[string]*listener{}
	d.mu.Unlock()
	for _, l := range ls {
		l.close()
	}
}

// Snapshot returns the counters as a name -> value map (for JSON export).
func (s *Stats) Snapshot() map[string]int64 {
	return map[string]int64{
		"requests": s.Requests.Load(), "rebuilds": s.Rebuilds.Load(), "config_rejected": s.ConfigRejected.Load(),
		"plugin_panics": s.PluginPanics.Load(), "plugin_bugs": s.PluginBugs.Load(),
		"upstream_errors": s.UpstreamErrors.Load(), "retries": s.Retries.Load(), "no_route": s.NoRoute.Load(),
		"active_conns": s.ActiveConns.Load(), "tcp_conns": s.TCPConns.Load(), "listeners_active": s.ListenersActive.Load(),
		"passthrough": s.PassThrough.Load(), "passthrough_refused": s.PassThroughRefused.Load(),
		"http1_fallbacks": s.H1Fallbacks.Load(), "h2_drained": s.H2Drained.Load(),
		"tcp_loop_conns": s.TCPLoopConns.Load(), "tcp_handovers": s.TCPHandOvers.Load(),
	}
}
