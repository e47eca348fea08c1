package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/meshagent/meshagent/dataplane"
	"github.com/meshagent/meshagent/etcdcompat/apisix"
	"github.com/meshagent/meshagent/etcdcompat/store"
	"github.com/meshagent/meshagent/redirect"
)

// Ids of the store listeners `meshagent run --capture-*` creates under
// apisix.ListenerPrefix.
const (
	captureOutboundID = "capture-outbound"
	captureInboundID  = "capture-inbound"
	// captureRouteTable is the route table of the capture listeners' own
	// filter chain; with use_original_dst a captured connection is handed
	// to the listener of its original destination or passed through, so
	// the chain only serves connections made to the capture port itself.
	captureRouteTable = "capture"
)

// captureConfig is the traffic-capture part of `meshagent run`: the
// capture listeners (--capture-outbound, --capture-inbound), the startup
// gate (--capture-gate) and self-managed rules (--capture-install).
//
// meshagent is meant to run as uid 1337 (redirect.DefaultProxyUID), which
// the capture rules exclude, so the data plane's upstream dials are never
// captured again. --capture-mark is for a proxy that cannot run as that
// uid: see dataplaneOptions.
type captureConfig struct {
	outbound    string
	inbound     string
	tproxy      bool
	passthrough redirect.PassThroughPolicy
	mark        uint32
	install     bool
	// rules holds the redirect.Config flags, registered with the prefix
	// "capture-" (--capture-gate, --capture-gate-queue, --capture-ipv6 ...).
	rules redirect.Config

	mgr  *redirect.Manager
	gate *redirect.Gate
}

// captureForwarded are the redirect.Config flags `meshagent run` takes
// with the "capture-" prefix. The ports, the inbound mode and the shutdown
// mode are not among them: they follow --capture-outbound,
// --capture-inbound, --capture-tproxy and --capture-install.
var captureForwarded = map[string]bool{
	"proxy-uid": true, "proxy-gid": true, "exclude-uids": true, "exclude-gids": true,
	"bypass-mark": true, "include-outbound-cidrs": true, "exclude-outbound-cidrs": true,
	"include-outbound-ports": true, "exclude-outbound-ports": true,
	"include-inbound-ports": true, "exclude-inbound-ports": true,
	"tproxy-mark": true, "tproxy-table": true, "ipv4": true, "ipv6": true,
	"gate": true, "gate-queue": true, "gate-timeout": true,
}

func (c *captureConfig) flags(fs *flag.FlagSet) {
	c.rules = redirect.DefaultConfig()
	fs.StringVar(&c.outbound, "capture-outbound", "", "listen for captured outbound TCP here, e.g. 0.0.0.0:15001 (a use_original_dst listener)")
	fs.StringVar(&c.inbound, "capture-inbound", "", "listen for captured inbound TCP here, e.g. 0.0.0.0:15006 (a use_original_dst listener)")
	fs.BoolVar(&c.tproxy, "capture-tproxy", false, "inbound capture is TPROXY: bind --capture-inbound with IP_TRANSPARENT (needs CAP_NET_ADMIN)")
	fs.Func("capture-passthrough", "captured connections no listener wants: forward (to the original destination) or refuse (reset) (default forward)", func(s string) error {
		switch strings.TrimSpace(s) {
		case "forward":
			c.passthrough = redirect.PassThroughForward
		case "refuse":
			c.passthrough = redirect.PassThroughRefuse
		default:
			return fmt.Errorf("%q: must be forward or refuse", s)
		}
		return nil
	})
	fs.Func("capture-mark", "SO_MARK for pass-through dials so they are not captured again, e.g. 0x539 (needs CAP_NET_ADMIN; default none: run as uid 1337)", func(s string) error {
		n, err := strconv.ParseUint(strings.TrimSpace(s), 0, 32)
		if err != nil || n == 0 {
			return fmt.Errorf("%q: must be a non-zero 32-bit unsigned integer", s)
		}
		c.mark = uint32(n)
		return nil
	})
	fs.BoolVar(&c.install, "capture-install", false, "install the capture rules at start and remove them at exit (self-managed capture)")
	sub := flag.NewFlagSet("capture", flag.ContinueOnError)
	c.rules.RegisterFlags(sub)
	sub.VisitAll(func(f *flag.Flag) {
		if captureForwarded[f.Name] {
			fs.Var(f.Value, "capture-"+f.Name, "capture rules: "+f.Usage)
		}
	})
}

// enabled reports whether any capture flag asks for work at run time.
func (c *captureConfig) enabled() bool {
	return c.outbound != "" || c.inbound != "" || c.rules.Gate || c.install
}

// validate checks the capture flags and completes c.rules from them.
func (c *captureConfig) validate(originalDst bool) error {
	if !c.enabled() {
		return nil
	}
	port := func(flag, addr string) (uint16, error) {
		host, p, err := net.SplitHostPort(addr)
		if err != nil {
			return 0, fmt.Errorf("--%s %q: must be host:port", flag, addr)
		}
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return 0, fmt.Errorf("--%s %q: port must be 1-65535 (the capture rules redirect to it)", flag, addr)
		}
		if host != "" {
			if _, err := netip.ParseAddr(host); err != nil {
				return 0, fmt.Errorf("--%s %q: host must be an IP address or empty", flag, addr)
			}
		}
		return uint16(n), nil
	}
	if (c.outbound != "" || c.inbound != "") && !originalDst {
		return errors.New("--capture-outbound/--capture-inbound need --original-dst=true")
	}
	if c.outbound != "" {
		p, err := port("capture-outbound", c.outbound)
		if err != nil {
			return err
		}
		c.rules.OutboundPort = p
	}
	c.rules.InboundMode = redirect.InboundNone
	if c.inbound != "" {
		p, err := port("capture-inbound", c.inbound)
		if err != nil {
			return err
		}
		c.rules.InboundPort = p
		c.rules.InboundMode = redirect.InboundRedirect
		if c.tproxy {
			c.rules.InboundMode = redirect.InboundTProxy
		}
	} else if c.tproxy {
		return errors.New("--capture-tproxy needs --capture-inbound")
	}
	if c.inbound != "" && c.mark == 0 {
		// The rules send the proxy uid's connections to a local
		// non-loopback address to the inbound port (the app calling
		// itself through the mesh), so an inbound pass-through dial to
		// the app would come straight back: only the bypass mark exempts it.
		return errors.New("--capture-inbound needs --capture-mark (the rules' bypass mark, e.g. 0x539): without it inbound pass-through dials are captured again and loop")
	}
	if c.mark != 0 && c.mark != c.rules.BypassMark {
		return fmt.Errorf("--capture-mark %#x differs from the rules' bypass mark %#x (--capture-bypass-mark): pass-through dials would be captured again", c.mark, c.rules.BypassMark)
	}
	if c.install && c.outbound == "" && c.inbound == "" {
		return errors.New("--capture-install needs --capture-outbound or --capture-inbound (the ports the rules redirect to)")
	}
	c.rules.Shutdown = redirect.ShutdownKeep
	if c.install {
		c.rules.Shutdown = redirect.ShutdownRemove
	}
	if err := c.rules.Validate(); err != nil {
		return fmt.Errorf("--capture-*: %w", err)
	}
	return nil
}

// start runs first in `meshagent run`: it binds the startup gate's queue
// (--capture-gate) and then installs the rules (--capture-install), so a
// gate rule never feeds an unbound queue. The returned stop abandons a
// gate that never became ready (fail open) and removes self-installed
// rules; it is safe to call once.
func (c *captureConfig) start(ctx context.Context, log *slog.Logger) (func(), error) {
	if !c.enabled() {
		return func() {}, nil
	}
	log = log.With("component", "capture")
	m, err := redirect.NewManager(c.rules, nil, log)
	if err != nil {
		return nil, fmt.Errorf("--capture-*: %w", err)
	}
	c.mgr = m
	if c.rules.Gate {
		g, err := m.OpenGate()
		if err != nil {
			return nil, fmt.Errorf("--capture-gate: %w", err)
		}
		c.gate = g
	}
	stop := func() {
		if c.gate != nil {
			if err := c.gate.Close(); err != nil {
				log.Warn("startup gate: close", "err", err)
			}
		}
		if c.install {
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := m.Shutdown(sctx); err != nil {
				log.Error("capture rules: remove at exit", "err", err)
			}
		}
	}
	if c.install {
		if err := m.Install(ctx); err != nil {
			stop()
			return nil, fmt.Errorf("--capture-install: %w", err)
		}
	}
	return stop, nil
}

// captureListener returns the store object of one capture listener.
func captureListener(id, addr, direction string, transparent bool) *apisix.Listener {
	return &apisix.Listener{
		ID:             apisix.ID(id),
		Labels:         apisix.Labels{"meshagent.capture": direction},
		Address:        addr,
		UseOriginalDst: true,
		Transparent:    transparent,
		Direction:      direction,
		FilterChains:   []apisix.FilterChain{{Name: "direct", Kind: "http", RouteConfig: captureRouteTable}},
	}
}

// putListeners writes the capture listeners into st (validated by the
// store's decoder like any other write). Call it before the data plane
// starts, so its first snapshot binds them.
func (c *captureConfig) putListeners(ctx context.Context, st store.Store) error {
	var ls []*apisix.Listener
	if c.outbound != "" {
		ls = append(ls, captureListener(captureOutboundID, c.outbound, "outbound", false))
	}
	if c.inbound != "" {
		ls = append(ls, captureListener(captureInboundID, c.inbound, "inbound", c.tproxy))
	}
	for _, l := range ls {
		v, err := json.Marshal(l)
		if err != nil {
			return fmt.Errorf("capture listener %s: %w", l.ID, err)
		}
		key := apisix.ListenerPrefix + string(l.ID)
		if _, err := st.Put(ctx, &pb.PutRequest{Key: []byte(key), Value: v}); err != nil {
			return fmt.Errorf("capture listener %s: %w", key, err)
		}
	}
	return nil
}

// listenerIDs lists the capture listeners configured.
func (c *captureConfig) listenerIDs() []string {
	var ids []string
	if c.outbound != "" {
		ids = append(ids, captureOutboundID)
	}
	if c.inbound != "" {
		ids = append(ids, captureInboundID)
	}
	return ids
}

// awaitReady releases the startup gate once ready() holds and every
// capture listener is bound, polling every 10ms until ctx ends. Without
// a gate it only checks that the capture listeners were bound.
func (c *captureConfig) awaitReady(ctx context.Context, dp *dataplane.Dataplane, ready func() bool, log *slog.Logger) {
	if !c.enabled() {
		return
	}
	log = log.With("component", "capture")
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	start := time.Now()
	for {
		bound := true
		for _, id := range c.listenerIDs() {
			if _, ok := dp.ListenerAddr(id); !ok {
				bound = false
			}
		}
		if bound && ready() {
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
	log.Info("capture ready", "listeners", c.listenerIDs(), "after", time.Since(start).String())
	if c.gate != nil {
		if err := c.gate.Ready(ctx); err != nil {
			log.Error("startup gate: release", "err", err)
			return
		}
		log.Info("startup gate released", "state", c.gate.State().String())
	}
}

// dataplaneOptions sets the data plane's pass-through behaviour: refuse
// (--capture-passthrough refuse) or forward, dialing with SO_MARK
// --capture-mark when given so the rules (which RETURN on the bypass mark)
// do not capture the dial again. The mark must equal the rules'
// --bypass-mark (--capture-bypass-mark here).
func (c *captureConfig) dataplaneOptions(o *dataplane.Options) {
	o.RefusePassThrough = c.passthrough == redirect.PassThroughRefuse
	if c.mark != 0 {
		o.PassThroughDial = redirect.MarkedDialer(c.mark).DialContext
	}
}
