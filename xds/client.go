package xds

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc"

	"github.com/meshagent/meshagent/xds/translate"
)

// Handler applies pushes; the client calls it from one goroutine.
type Handler interface {
	// Apply applies a push of kind: upserted resources and removed names.
	// An error rejects the whole push (the client NACKs with the error's
	// text) and must leave the previously applied config in force.
	Apply(ctx context.Context, kind translate.Kind, upserts []translate.Resource, removals []string) error
	// Wanted lists the names of kind (endpoints, route configurations,
	// secrets) the applied config refers to.
	Wanted(kind translate.Kind) []string
}

// Options configure a Client.
type Options struct {
	// Addr is the control plane's host:port.
	Addr string
	// TLS enables TLS with the system roots (implied by TLSCAFile).
	TLS bool
	// TLSCAFile is a PEM file of CAs trusted for the control plane.
	TLSCAFile string
	// TLSServerName overrides the name verified in the server certificate.
	TLSServerName string
	// TokenFile holds a bearer token sent with every RPC; it is re-read
	// when the file changes.
	TokenFile string
	// Delta selects incremental xDS instead of state of the world.
	Delta bool
	// Node is the node identity (see BuildNode). Required.
	Node *corev3.Node
	// Handler applies pushes. Required.
	Handler Handler
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// BackoffMin and BackoffMax bound the reconnection delay (defaults
	// 250ms and 30s); each failed attempt doubles it, with jitter.
	BackoffMin, BackoffMax time.Duration
	// DialOptions are appended to the gRPC dial options (tests).
	DialOptions []grpc.DialOption
	// InitialFetchTimeout bounds how long readiness waits, once CDS and
	// LDS are applied, for the endpoints, route tables and secrets they
	// name (Envoy's initial_fetch_timeout): after it the client is ready
	// with what it has, and the missing names are logged. Zero: 15 s;
	// negative: wait forever.
	InitialFetchTimeout time.Duration
}

// ErrConfig is wrapped by option errors.
var ErrConfig = errors.New("xds: invalid client options")

// typeState is the protocol state of one resource type.
type typeState struct {
	kind      translate.Kind
	wildcard  bool
	state     State
	version   string
	nonce     string
	subs      []string          // names subscribed (named types)
	sent      bool              // a request was sent on this stream
	known     map[string]string // resource name -> version
	lastACK   time.Time
	lastNACK  time.Time
	nackMsg   string
	acks      int64
	nacks     int64
	firstDone bool // a response was applied since start
}

// Client is an ADS client. Run drives it; Status, Ready and ReadyCh may
// be called from any goroutine.
type Client struct {
	o   Options
	log *slog.Logger

	mu         sync.Mutex
	types      [len(translate.Kinds)]*typeState
	connected  bool
	reconnects int64
	lastErr    string
	ready      bool
	readyCh    chan struct{}
	readyOnce  sync.Once
	armed      bool // the initial fetch timer is running
}

// New validates opts and returns a Client; it does not connect yet.
func New(opts Options) (*Client, error) {
	if opts.Addr == "" {
		return nil, fmt.Errorf("%w: Addr: required", ErrConfig)
	}
	if opts.Node == nil || opts.Node.GetId() == "" {
		return nil, fmt.Errorf("%w: Node.Id: required", ErrConfig)
	}
	if opts.Handler == nil {
		return nil, fmt.Errorf("%w: Handler: required", ErrConfig)
	}
	if opts.BackoffMin <= 0 {
		opts.BackoffMin = 250 * time.Millisecond
	}
	if opts.InitialFetchTimeout == 0 {
		opts.InitialFetchTimeout = 15 * time.Second
	}
	if opts.BackoffMax < opts.BackoffMin {
		opts.BackoffMax = max(30*time.Second, opts.BackoffMin)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Client{o: opts, log: log.With("xds_server", opts.Addr), readyCh: make(chan struct{})}
	for i, k := range translate.Kinds {
		c.types[i] = &typeState{kind: k, known: map[string]string{},
			wildcard: k == translate.KindCluster || k == translate.KindListener}
	}
	return c, nil
}

// Ready reports whether the first complete config (CDS and LDS ACKed, and
// every endpoint set, route table and secret they name received) has been
// applied. It never goes back to false: a later disconnect keeps serving
// the last config.
func (c *Client) Ready() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ready
}

// ReadyCh is closed when Ready becomes true.
func (c *Client) ReadyCh() <-chan struct{} { return c.readyCh }

// Status returns a snapshot of the sync status.
func (c *Client) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := Status{
		Server: c.o.Addr, Mode: "sotw", NodeID: c.o.Node.GetId(), Connected: c.connected,
		Ready: c.ready, Reconnect: c.reconnects, LastError: c.lastErr,
	}
	if c.o.Delta {
		st.Mode = "delta"
	}
	for _, ts := range c.types {
		st.Types = append(st.Types, TypeStatus{
			TypeURL: ts.kind.TypeURL(), State: ts.state, Version: ts.version, Nonce: ts.nonce,
			LastACK: ts.lastACK, LastNACK: ts.lastNACK, NACKMessage: ts.nackMsg,
			ACKs: ts.acks, NACKs: ts.nacks, Resources: len(ts.known),
			Subscribed: append([]string(nil), ts.subs...), WildcardSubs: ts.wildcard,
		})
	}
	return st
}

// Run connects and keeps the ADS stream up until ctx ends, reconnecting
// with exponential backoff and jitter. The last applied config stays in
// the store while disconnected. It returns ctx's error.
func (c *Client) Run(ctx context.Context) error {
	opts, err := dialOptions(&c.o)
	if err != nil {
		return err
	}
	opts = append(opts, c.o.DialOptions...)
	conn, err := grpc.NewClient(c.o.Addr, opts...)
	if err != nil {
		return fmt.Errorf("xds: dial %s: %w", c.o.Addr, err)
	}
	defer conn.Close()
	backoff := c.o.BackoffMin
	for {
		var got bool
		var err error
		if c.o.Delta {
			got, err = c.deltaSession(ctx, conn)
		} else {
			got, err = c.sotwSession(ctx, conn)
		}
		c.mu.Lock()
		c.connected = false
		if err != nil && ctx.Err() == nil {
			c.lastErr = err.Error()
			c.reconnects++
		}
		for _, ts := range c.types {
			ts.sent = false
			ts.nonce = ""
		}
		c.mu.Unlock()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if got {
			backoff = c.o.BackoffMin
		}
		// Full jitter over [backoff/2, backoff).
		d := backoff/2 + time.Duration(rand.Int64N(int64(backoff/2)+1))
		c.log.Warn("xds stream ended; reconnecting", "err", err, "in", d)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
		}
		backoff = min(backoff*2, c.o.BackoffMax)
	}
}

// state returns the protocol state of kind k.
func (c *Client) state(k translate.Kind) *typeState { return c.types[k] }

// decided records the outcome of one response under the lock.
func (c *Client) decided(ts *typeState, version string, applyErr error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if applyErr != nil {
		ts.state = StateNACKed
		ts.lastNACK = now
		ts.nackMsg = applyErr.Error()
		ts.nacks++
		return
	}
	ts.state = StateACKed
	ts.version = version
	ts.lastACK = now
	ts.acks++
	ts.firstDone = true
}

// Syncer is an optional Handler capability: Synced is called once, when
// the first complete config has been applied and before readiness is
// reported (the Applier removes objects left in the store by an earlier
// run that this config no longer produces).
type Syncer interface {
	Synced(ctx context.Context) error
}

// checkReady sets readiness once CDS and LDS are applied and nothing they
// name is missing; once CDS and LDS are applied it also arms the initial
// fetch timeout.
func (c *Client) checkReady(ctx context.Context) {
	if c.complete() {
		c.becomeReady(ctx, nil)
		return
	}
	c.mu.Lock()
	arm := !c.armed && !c.ready && c.o.InitialFetchTimeout > 0 &&
		c.types[translate.KindCluster].firstDone && c.types[translate.KindListener].firstDone
	if arm {
		c.armed = true
	}
	c.mu.Unlock()
	if arm {
		time.AfterFunc(c.o.InitialFetchTimeout, func() {
			if ctx.Err() != nil {
				return
			}
			if missing := c.missing(); len(missing) > 0 {
				c.becomeReady(ctx, missing)
			}
		})
	}
}

// becomeReady runs the Syncer and reports readiness, once.
func (c *Client) becomeReady(ctx context.Context, missing []string) {
	c.readyOnce.Do(func() {
		if s, ok := c.o.Handler.(Syncer); ok {
			if err := s.Synced(ctx); err != nil {
				c.log.Error("xds: cleanup after the first complete config failed", "err", err)
			}
		}
		c.mu.Lock()
		c.ready = true
		c.mu.Unlock()
		close(c.readyCh)
		if len(missing) > 0 {
			c.log.Warn("xds: initial fetch timeout; ready without some named resources", "missing", missing, "timeout", c.o.InitialFetchTimeout)
			return
		}
		c.log.Info("xds: first complete config applied; ready")
	})
}

// missing lists the named resources CDS and LDS refer to that have not
// arrived, as "kind/name".
func (c *Client) missing() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for k, n := range c.missingLocked() {
		out = append(out, k.String()+"/"+n)
	}
	return out
}

// complete reports whether the client is not yet ready but has the first
// complete config: CDS and LDS applied and every name they refer to known.
func (c *Client) complete() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ready {
		return false
	}
	if !c.types[translate.KindCluster].firstDone || !c.types[translate.KindListener].firstDone {
		return false
	}
	for range c.missingLocked() {
		return false
	}
	return true
}

// missingLocked yields the kind and name of every resource the handler
// wants that has not arrived. c.mu must be held.
func (c *Client) missingLocked() iter.Seq2[translate.Kind, string] {
	return func(yield func(translate.Kind, string) bool) {
		for _, k := range namedKinds {
			known := c.types[k].known
			for _, n := range c.o.Handler.Wanted(k) {
				if _, ok := known[n]; !ok && !yield(k, n) {
					return
				}
			}
		}
	}
}

// wantedChange returns the new subscription of a named type when it
// differs from the current one. An empty set is never sent (it would read
// as a wildcard): names no longer wanted are dropped locally instead.
func (c *Client) wantedChange(ts *typeState) ([]string, bool) {
	want := c.o.Handler.Wanted(ts.kind)
	sort.Strings(want)
	if len(want) == 0 {
		return nil, false
	}
	if ts.sent && slices.Equal(want, ts.subs) {
		return nil, false
	}
	return want, true
}

// diff returns the names in a that are not in b, in a's order.
func diff(a, b []string) []string {
	var out []string
	set := make(map[string]struct{}, len(b))
	for _, s := range b {
		set[s] = struct{}{}
	}
	for _, s := range a {
		if _, ok := set[s]; !ok {
			out = append(out, s)
		}
	}
	return out
}
