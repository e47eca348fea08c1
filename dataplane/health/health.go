// Package health keeps the health of an upstream's nodes the way APISIX
// does with lua-resty-healthcheck: active probes (http, https, tcp) on
// intervals, passive judgement of real traffic reported by the proxy, and
// thresholds of consecutive events that flip a node between healthy and
// unhealthy.
//
// It owns one Checker per upstream (shared by all routes using it), its
// probe goroutines, and the carry-over of node state to the Checker of the
// next snapshot when the checks are unchanged. It does not own node
// selection: the balancer consults Checker.Healthy, and when every node is
// unhealthy the balancer still tries them (APISIX semantics).
//
// Counting follows lua-resty-healthcheck: an event that agrees with a
// settled state (a success on a healthy node, a failure on an unhealthy
// one) is ignored; otherwise its counter (successes, http failures, tcp
// failures, timeouts) is incremented and the node enters a "mostly" state
// that keeps its public status. Reaching a threshold settles the node in
// the reported state and clears all counters, so a healthy node that
// fails once and then succeeds `successes` times starts counting failures
// from zero again. A threshold of 0 never counts. An HTTP status in
// neither list is ignored.
package health

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshagent/meshagent/etcdcompat/apisix"
)

// ErrInvalid is wrapped by New's errors, which name the field and rule.
var ErrInvalid = errors.New("health: invalid checks")

// Status is a node's health.
type Status int

// Node health states.
const (
	Healthy Status = iota
	Unhealthy
)

// String returns "healthy" or "unhealthy".
func (s Status) String() string {
	switch s {
	case Healthy:
		return "healthy"
	case Unhealthy:
		return "unhealthy"
	}
	return "Status(" + strconv.Itoa(int(s)) + ")"
}

// Outcome is how a request to a node ended, as the proxy reports it.
type Outcome int

// Outcomes of a request or probe.
const (
	// OutcomeResponse: a response arrived; its status decides.
	OutcomeResponse Outcome = iota
	// OutcomeTCPError: connecting, writing or reading failed.
	OutcomeTCPError
	// OutcomeTimeout: connecting or reading timed out.
	OutcomeTimeout
	// OutcomeSuccess: the connection succeeded (tcp checks and stream
	// traffic); counts as a success whatever the status.
	OutcomeSuccess
)

// String names the outcome.
func (o Outcome) String() string {
	switch o {
	case OutcomeResponse:
		return "response"
	case OutcomeTCPError:
		return "tcp_error"
	case OutcomeTimeout:
		return "timeout"
	case OutcomeSuccess:
		return "success"
	}
	return "Outcome(" + strconv.Itoa(int(o)) + ")"
}

// Target is one node to check.
type Target struct {
	// Addr is "host:port" to connect to (the balancer node address).
	Addr string
	// Host is the node's host name, sent as Host when checks.active.host
	// is empty; when both are empty the host part of Addr is sent.
	Host string
}

// Config configures a Checker.
type Config struct {
	// Targets are the upstream's nodes, in the balancer's node order:
	// Healthy(i) answers for Targets[i].
	Targets []Target
	// Checks is the upstream's checks; nil means every node is healthy
	// and Report is a no-op.
	Checks *apisix.Checks
	// Logger receives state changes; nil discards.
	Logger *slog.Logger
	// Prev is the previous snapshot's Checker for the same upstream. When
	// its Checks are equal, node states and counters are carried over for
	// targets with the same address. The caller still Stops Prev.
	Prev *Checker
	// TimeUnit scales the intervals and timeout of the checks (seconds in
	// APISIX); zero means time.Second. Tests use milliseconds.
	TimeUnit time.Duration
	// OnChange, if set, is called (from a checker or reporting goroutine)
	// when a node changes state.
	OnChange func(idx int, addr string, s Status)
}

type thresholds struct {
	successes, httpFailures, tcpFailures, timeouts int
	okStatuses, badStatuses                        []int
}

// Internal states of lua-resty-healthcheck: "mostly" states keep the
// public status while counting towards the opposite one.
const (
	stateHealthy = iota
	stateMostlyHealthy
	stateMostlyUnhealthy
	stateUnhealthy
)

type nodeState struct {
	unhealthy atomic.Bool
	mu        sync.Mutex
	state     int
	// counters: successes, http failures, tcp failures, timeouts
	ctr     [4]int
	probing atomic.Bool
	next    time.Time
}

// Checker tracks the health of one upstream's nodes. Healthy is lock-free;
// all methods are safe for concurrent use.
type Checker struct {
	targets []Target
	nodes   []*nodeState
	byAddr  map[string]int
	checks  *apisix.Checks
	log     *slog.Logger
	unit    time.Duration
	change  func(int, string, Status)

	active  *activeConf
	passive *thresholds

	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
	started  atomic.Bool
}

// New builds a Checker; Start begins active probing. Checks are validated
// against APISIX's schema and defaults are applied.
func New(cfg Config) (*Checker, error) {
	c := &Checker{
		targets: append([]Target(nil), cfg.Targets...),
		byAddr:  make(map[string]int, len(cfg.Targets)),
		checks:  cfg.Checks,
		log:     cfg.Logger,
		unit:    cfg.TimeUnit,
		change:  cfg.OnChange,
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.unit <= 0 {
		c.unit = time.Second
	}
	c.nodes = make([]*nodeState, len(c.targets))
	for i, t := range c.targets {
		if _, _, err := net.SplitHostPort(t.Addr); err != nil {
			return nil, fmt.Errorf("%w: targets[%d]: addr %q is not host:port: %w", ErrInvalid, i, t.Addr, err)
		}
		c.byAddr[t.Addr] = i
		c.nodes[i] = &nodeState{}
	}
	if cfg.Checks != nil {
		if cfg.Checks.Active == nil {
			return nil, fmt.Errorf("%w: checks.active: required when checks is present", ErrInvalid)
		}
		a, err := newActiveConf(cfg.Checks.Active, c.unit)
		if err != nil {
			return nil, err
		}
		c.active = a
		if cfg.Checks.Passive != nil {
			p, err := passiveThresholds(cfg.Checks.Passive)
			if err != nil {
				return nil, err
			}
			c.passive = p
		}
	}
	if p := cfg.Prev; p != nil && reflect.DeepEqual(p.checks, cfg.Checks) {
		for i, t := range c.targets {
			j, ok := p.byAddr[t.Addr]
			if !ok {
				continue
			}
			src, dst := p.nodes[j], c.nodes[i]
			src.mu.Lock()
			dst.ctr, dst.state = src.ctr, src.state
			dst.unhealthy.Store(src.unhealthy.Load())
			src.mu.Unlock()
		}
	}
	return c, nil
}

func passiveThresholds(p *apisix.PassiveCheck) (*thresholds, error) {
	if p.Type != "" && p.Type != "http" && p.Type != "https" && p.Type != "tcp" {
		return nil, fmt.Errorf("%w: checks.passive.type: must be http, https or tcp, got %q", ErrInvalid, p.Type)
	}
	t := &thresholds{
		successes: 5, httpFailures: 5, tcpFailures: 2, timeouts: 7,
		okStatuses:  []int{200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 306, 307, 308},
		badStatuses: []int{429, 500, 503},
	}
	if h := p.Healthy; h != nil {
		if len(h.HTTPStatuses) > 0 {
			t.okStatuses = h.HTTPStatuses
		}
		if h.Successes != 0 {
			t.successes = h.Successes
		}
	}
	if u := p.Unhealthy; u != nil {
		if len(u.HTTPStatuses) > 0 {
			t.badStatuses = u.HTTPStatuses
		}
		if u.HTTPFailures != 0 {
			t.httpFailures = u.HTTPFailures
		}
		if u.TCPFailures != 0 {
			t.tcpFailures = u.TCPFailures
		}
		if u.Timeouts != 0 {
			t.timeouts = u.Timeouts
		}
	}
	if err := t.validate("checks.passive"); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *thresholds) validate(where string) error {
	for name, v := range map[string]int{"healthy.successes": t.successes, "unhealthy.http_failures": t.httpFailures,
		"unhealthy.tcp_failures": t.tcpFailures, "unhealthy.timeouts": t.timeouts} {
		if v < 0 || v > 254 {
			return fmt.Errorf("%w: %s.%s: must be 0..254, got %d", ErrInvalid, where, name, v)
		}
	}
	for _, s := range append(slices.Clone(t.okStatuses), t.badStatuses...) {
		if s < 200 || s > 599 {
			return fmt.Errorf("%w: %s: http status %d out of 200..599", ErrInvalid, where, s)
		}
	}
	return nil
}

// Healthy reports whether node idx is healthy. It is lock-free. Unknown
// indexes, and every index of a nil *Checker, are healthy.
func (c *Checker) Healthy(idx int) bool {
	if c == nil || idx < 0 || idx >= len(c.nodes) {
		return true
	}
	return !c.nodes[idx].unhealthy.Load()
}

// HealthyAddr is Healthy by node address; unknown addresses are healthy.
func (c *Checker) HealthyAddr(addr string) bool {
	if c == nil {
		return true
	}
	i, ok := c.byAddr[addr]
	return !ok || c.Healthy(i)
}

// Status returns the state of node idx.
func (c *Checker) Status(idx int) Status {
	if c.Healthy(idx) {
		return Healthy
	}
	return Unhealthy
}

// Targets returns the checked nodes; the slice must not be mutated.
func (c *Checker) Targets() []Target { return c.targets }

// Report feeds the passive check with the outcome of a proxied request to
// node idx (status is the response status for OutcomeResponse). It is a
// no-op without passive checks and on a nil *Checker.
func (c *Checker) Report(idx int, status int, o Outcome) {
	if c == nil || c.passive == nil || idx < 0 || idx >= len(c.nodes) {
		return
	}
	c.record(idx, c.passive, status, o, "passive")
}

// ReportAddr is Report by node address; unknown addresses are ignored.
func (c *Checker) ReportAddr(addr string, status int, o Outcome) {
	if c == nil {
		return
	}
	if i, ok := c.byAddr[addr]; ok {
		c.Report(i, status, o)
	}
}

const (
	ctrSuccess = iota
	ctrHTTP
	ctrTCP
	ctrTimeout
)

// record applies one event with the given thresholds.
func (c *Checker) record(idx int, t *thresholds, status int, o Outcome, source string) {
	var k, limit int
	switch o {
	case OutcomeTCPError:
		k, limit = ctrTCP, t.tcpFailures
	case OutcomeTimeout:
		k, limit = ctrTimeout, t.timeouts
	case OutcomeSuccess:
		k, limit = ctrSuccess, t.successes
	default:
		switch {
		case slices.Contains(t.okStatuses, status):
			k, limit = ctrSuccess, t.successes
		case slices.Contains(t.badStatuses, status):
			k, limit = ctrHTTP, t.httpFailures
		default:
			return
		}
	}
	n := c.nodes[idx]
	n.mu.Lock()
	unhealthy := n.unhealthy.Load()
	success := k == ctrSuccess
	if limit == 0 || (success && n.state == stateHealthy) || (!success && n.state == stateUnhealthy) {
		// Agrees with the settled state (or this kind never counts).
		n.mu.Unlock()
		return
	}
	n.ctr[k]++
	flipped := false
	switch {
	case n.ctr[k] >= limit:
		n.ctr = [4]int{}
		if success {
			n.state = stateHealthy
		} else {
			n.state = stateUnhealthy
		}
		flipped = unhealthy == success
		n.unhealthy.Store(!success)
	case n.state == stateHealthy:
		n.state = stateMostlyHealthy
	case n.state == stateUnhealthy:
		n.state = stateMostlyUnhealthy
	}
	n.mu.Unlock()
	if flipped {
		s := Healthy
		if !unhealthy {
			s = Unhealthy
		}
		c.log.Info("health: node state changed", "addr", c.targets[idx].Addr, "status", s.String(),
			"source", source, "outcome", o.String(), "http_status", status)
		if c.change != nil {
			c.change(idx, c.targets[idx].Addr, s)
		}
	}
}
