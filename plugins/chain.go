package plugins

import (
	"sort"
	"strconv"
	"sync"
)

// Entry is one built filter of a chain.
type Entry struct {
	Name     string
	Priority int
	// Filter implements one or more phase interfaces.
	Filter any
}

// Fault says how a filter misbehaved.
type Fault int

const (
	// FaultNone: the phase ran normally.
	FaultNone Fault = iota
	// FaultPanic: a filter panicked; the request got a 500.
	FaultPanic
	// FaultStopWithoutResponse: a filter returned Stop without calling
	// Respond; the request got a 500.
	FaultStopWithoutResponse
)

// String names the fault.
func (f Fault) String() string {
	switch f {
	case FaultNone:
		return "none"
	case FaultPanic:
		return "panic"
	case FaultStopWithoutResponse:
		return "stop_without_response"
	}
	return "Fault(" + strconv.Itoa(int(f)) + ")"
}

// Result is the outcome of running one phase of a chain.
type Result struct {
	Status Status
	// Plugin names the filter that stopped the phase or misbehaved.
	Plugin string
	Fault  Fault
	// Panic is the recovered value when Fault is FaultPanic.
	Panic any
}

type step struct {
	name string
	f    any
}

// Chain is an immutable, ordered set of filters per phase. It is built
// once per snapshot and shared by all requests of that snapshot.
type Chain struct {
	phases  [numPhases][]step
	entries []Entry
	// global and route are NewChain's inputs, kept to derive consumer
	// chains (see WithConsumer); byConsumer caches those.
	global, route []Entry
	byConsumer    sync.Map // *Consumer -> *Chain
	names         []string
}

// NewChain orders filters per phase: all of global first, then route,
// each by priority (higher first, ties by name, as APISIX sorts).
func NewChain(global, route []Entry) *Chain {
	c := &Chain{global: global, route: route}
	for _, set := range [][]Entry{global, route} {
		s := append([]Entry(nil), set...)
		sort.SliceStable(s, func(i, j int) bool {
			if s[i].Priority != s[j].Priority {
				return s[i].Priority > s[j].Priority
			}
			return s[i].Name < s[j].Name
		})
		c.entries = append(c.entries, s...)
		for _, e := range s {
			c.names = append(c.names, e.Name)
			for p := Phase(0); p < numPhases; p++ {
				if implements(e.Filter, p) {
					c.phases[p] = append(c.phases[p], step{e.Name, e.Filter})
				}
			}
		}
	}
	return c
}

func implements(f any, p Phase) bool {
	var ok bool
	switch p {
	case PhaseRewrite:
		_, ok = f.(Rewriter)
	case PhaseAccess:
		_, ok = f.(Accessor)
	case PhaseBeforeProxy:
		_, ok = f.(BeforeProxier)
	case PhaseHeaderFilter:
		_, ok = f.(HeaderFilter)
	case PhaseBodyFilter:
		_, ok = f.(BodyFilter)
	case PhaseLog:
		_, ok = f.(Logger)
	}
	return ok
}

// Has reports whether any filter runs in phase p (so callers can skip
// work such as buffering a body).
func (c *Chain) Has(p Phase) bool { return c != nil && len(c.phases[p]) > 0 }

// Names returns the names of the chain's filters, in order (global rules
// first); the slice is shared and must not be changed.
func (c *Chain) Names() []string {
	if c == nil {
		return nil
	}
	return c.names
}

// Empty reports whether no filter runs in any phase: the request path may
// then skip the plugin machinery altogether.
func (c *Chain) Empty() bool {
	if c == nil {
		return true
	}
	for p := range c.phases {
		if len(c.phases[p]) > 0 {
			return false
		}
	}
	return true
}

// Len is the number of filter steps in phase p.
func (c *Chain) Len(p Phase) int {
	if c == nil {
		return 0
	}
	return len(c.phases[p])
}

// Run runs phase p. It enforces the Status contract: a Stop without a
// response and a panic both answer 500 through x.Respond and are reported
// in the Result with the plugin name. The log phase always continues.
func (c *Chain) Run(p Phase, x Ctx) (r Result) {
	if c == nil {
		return Result{}
	}
	steps := c.phases[p]
	for i := range steps {
		st := &steps[i]
		s, pv, panicked := runStep(p, st.f, x)
		if panicked {
			x.Respond(500, nil)
			return Result{Status: Stop, Plugin: st.name, Fault: FaultPanic, Panic: pv}
		}
		if s == Stop {
			if !x.Responded() {
				x.Respond(500, nil)
				return Result{Status: Stop, Plugin: st.name, Fault: FaultStopWithoutResponse}
			}
			return Result{Status: Stop, Plugin: st.name}
		}
	}
	return Result{}
}

func runStep(p Phase, f any, x Ctx) (s Status, pv any, panicked bool) {
	defer func() {
		if v := recover(); v != nil {
			pv, panicked = v, true
		}
	}()
	switch p {
	case PhaseRewrite:
		s = f.(Rewriter).Rewrite(x)
	case PhaseAccess:
		s = f.(Accessor).Access(x)
	case PhaseBeforeProxy:
		s = f.(BeforeProxier).BeforeProxy(x)
	case PhaseHeaderFilter:
		s = f.(HeaderFilter).HeaderFilter(x)
	case PhaseBodyFilter:
		s = f.(BodyFilter).BodyFilter(x)
	case PhaseLog:
		f.(Logger).Log(x)
	}
	return s, nil, false
}

// Close closes every filter implementing Closer, once each.
func (c *Chain) Close() error {
	if c == nil {
		return nil
	}
	var first error
	for _, e := range c.entries {
		if cl, ok := e.Filter.(Closer); ok {
			if err := cl.Close(); err != nil && first == nil {
				first = err
			}
		}
	}
	return first
}
