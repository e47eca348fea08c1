// Package balancer picks an upstream node per request attempt, with the
// semantics of APISIX's balancers (apisix/balancer/*.lua and
// balancer/priority.lua): roundrobin (smooth weighted, nginx style), chash
// (consistent hashing on a caller-supplied key), ewma (peak EWMA latency,
// power of two choices) and least_conn (fewest in-flight requests per
// weight), wrapped in priority groups and per-request retry state.
//
// It owns node selection, the per-request Attempt (which nodes were tried),
// and per-node state that survives a config snapshot swap (States). It does
// not own health (it consults a Health filter, see package health), how the
// chash key is derived from a request, nor connection handling.
//
// Priority groups: nodes are grouped by priority and groups are tried from
// the highest priority down; a lower group is used only when every node of
// the higher groups was tried in this request or is unhealthy. When no node
// at all is healthy, every node is eligible again (APISIX keeps sending
// traffic rather than failing). chash ignores health, as APISIX does, so a
// key keeps its node while health flaps; retries still skip tried nodes.
package balancer

import (
	"errors"
	"fmt"
	"sort"
	"time"
)

// Errors returned by New; they name the field and the rule broken.
var (
	ErrInvalid = errors.New("balancer: invalid upstream")
)

// Kind is a balancing algorithm.
type Kind int

// Balancing algorithms, named as in APISIX's upstream "type".
const (
	RoundRobin Kind = iota
	CHash
	EWMA
	LeastConn
)

// String returns the APISIX name of the algorithm.
func (k Kind) String() string {
	switch k {
	case RoundRobin:
		return "roundrobin"
	case CHash:
		return "chash"
	case EWMA:
		return "ewma"
	case LeastConn:
		return "least_conn"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// ParseKind parses an APISIX upstream type; "" is roundrobin.
func ParseKind(s string) (Kind, error) {
	switch s {
	case "", "roundrobin":
		return RoundRobin, nil
	case "chash":
		return CHash, nil
	case "ewma":
		return EWMA, nil
	case "least_conn":
		return LeastConn, nil
	}
	return 0, fmt.Errorf("%w: type: unknown balancer %q (roundrobin, chash, ewma, least_conn)", ErrInvalid, s)
}

// Node is one upstream endpoint.
type Node struct {
	// Addr is "host:port"; it keys carried-over state.
	Addr string
	// Weight is >= 0; a node of weight 0 is never picked by roundrobin,
	// chash or least_conn.
	Weight int
	// Priority groups nodes; higher is tried first.
	Priority int
}

// Health tells whether a node (by its index in the Picker's node list) is
// healthy. Implementations must be safe for concurrent use and cheap
// (health.Checker is lock-free).
type Health interface {
	Healthy(idx int) bool
}

// Picker chooses nodes. Implementations are safe for concurrent use; the
// Attempt passed to Pick belongs to one request.
type Picker interface {
	// Pick chooses a node not yet tried in a, marks it tried and returns
	// its index into Nodes(). ok is false when every eligible node was
	// tried. Every successful Pick must be followed by one Done.
	Pick(a *Attempt) (idx int, ok bool)
	// Done reports that the attempt on node idx finished after rtt (the
	// time to the response header, or to the failure). It releases the
	// in-flight count taken by Pick and feeds EWMA.
	Done(idx int, rtt time.Duration)
	// Nodes returns the node list; it must not be mutated.
	Nodes() []Node
	// Kind returns the algorithm.
	Kind() Kind
}

// Attempt is the per-request picking state: which nodes were tried, the
// hash key and the health filter. The zero value is ready (no key, no
// health filter). It does not allocate for upstreams of up to 256 nodes.
type Attempt struct {
	// Key is the chash key (ignored by other algorithms).
	Key string
	// Health filters nodes; nil means all healthy.
	Health Health

	keyB  []byte
	small [4]uint64
	big   []uint64
	tries int
}

// Reset prepares a for a new request, keeping its overflow storage.
func (a *Attempt) Reset(key string, h Health) {
	a.Key, a.keyB, a.Health, a.small, a.tries = key, nil, h, [4]uint64{}, 0
	clear(a.big)
}

// ResetBytes is Reset with the chash key given as bytes (for example built
// by KeySpec.Append into a per-request buffer). key must stay unmodified
// until the last Pick of the request.
func (a *Attempt) ResetBytes(key []byte, h Health) {
	a.Reset("", h)
	a.keyB = key
	if a.keyB == nil {
		a.keyB = []byte{}
	}
}

func (a *Attempt) keyHash() uint64 {
	if a.keyB != nil {
		return hashBytes(a.keyB)
	}
	return HashKey(a.Key)
}

// Tries returns how many nodes were picked in this request.
func (a *Attempt) Tries() int { return a.tries }

// Tried reports whether node idx was picked in this request.
func (a *Attempt) Tried(idx int) bool {
	w, b := idx>>6, uint(idx&63)
	if w < len(a.small) {
		return a.small[w]&(1<<b) != 0
	}
	w -= len(a.small)
	return w < len(a.big) && a.big[w]&(1<<b) != 0
}

func (a *Attempt) mark(idx int) {
	a.tries++
	w, b := idx>>6, uint(idx&63)
	if w < len(a.small) {
		a.small[w] |= 1 << b
		return
	}
	w -= len(a.small)
	for len(a.big) <= w {
		a.big = append(a.big, 0)
	}
	a.big[w] |= 1 << b
}

// filter decides which nodes are eligible in one pass of Pick.
type filter struct {
	a         *Attempt
	useHealth bool
	sawHealth bool // some untried-or-not node was healthy
}

func (f *filter) ok(idx int) bool {
	if f.a.Tried(idx) {
		if f.useHealth && !f.sawHealth && f.a.Health.Healthy(idx) {
			f.sawHealth = true
		}
		return false
	}
	if !f.useHealth {
		return true
	}
	if f.a.Health.Healthy(idx) {
		f.sawHealth = true
		return true
	}
	return false
}

// group is one priority group; exactly one algorithm field is set. A
// switch rather than an interface keeps the filter on the stack.
type group struct {
	priority int
	rr       *roundRobin
	ch       *chash
	ew       *ewma
	lc       *leastConn
}

// pick returns a global node index or -1.
func (g *group) pick(f *filter) int {
	switch {
	case g.rr != nil:
		return g.rr.pick(f)
	case g.ch != nil:
		return g.ch.pick(f)
	case g.ew != nil:
		return g.ew.pick(f)
	default:
		return g.lc.pick(f)
	}
}

type picker struct {
	kind   Kind
	nodes  []Node
	states []*NodeState
	groups []group
}

// New builds a Picker over nodes. states carries per-node state (in-flight
// counts, EWMA) across snapshots; pass the same *States for the same
// upstream, or nil for fresh state. Nodes must have distinct addresses.
func New(kind Kind, nodes []Node, states *States) (Picker, error) {
	if len(nodes) == 0 {
		return nil, fmt.Errorf("%w: nodes: at least one node is required", ErrInvalid)
	}
	if states == nil {
		states = NewStates()
	}
	p := &picker{kind: kind, nodes: append([]Node(nil), nodes...), states: make([]*NodeState, len(nodes))}
	seen := make(map[string]int, len(nodes))
	for i, n := range p.nodes {
		if n.Addr == "" {
			return nil, fmt.Errorf("%w: nodes[%d]: addr is required", ErrInvalid, i)
		}
		if n.Weight < 0 {
			return nil, fmt.Errorf("%w: nodes[%d]: weight must be >= 0, got %d", ErrInvalid, i, n.Weight)
		}
		if j, dup := seen[n.Addr]; dup {
			return nil, fmt.Errorf("%w: nodes[%d]: address %s repeats nodes[%d]", ErrInvalid, i, n.Addr, j)
		}
		seen[n.Addr] = i
		p.states[i] = states.get(n.Addr)
	}
	// Group by priority, highest first; keep node order inside a group.
	order := make([]int, len(nodes))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(x, y int) bool { return p.nodes[order[x]].Priority > p.nodes[order[y]].Priority })
	for start := 0; start < len(order); {
		end := start
		for end < len(order) && p.nodes[order[end]].Priority == p.nodes[order[start]].Priority {
			end++
		}
		idx := append([]int(nil), order[start:end]...)
		g := group{priority: p.nodes[order[start]].Priority}
		switch kind {
		case RoundRobin:
			g.rr = newRoundRobin(p, idx)
		case CHash:
			g.ch = newCHash(p, idx)
		case EWMA:
			g.ew = newEWMA(p, idx)
		case LeastConn:
			g.lc = newLeastConn(p, idx)
		default:
			return nil, fmt.Errorf("%w: type: unknown balancer %v", ErrInvalid, kind)
		}
		p.groups = append(p.groups, g)
		start = end
	}
	return p, nil
}

func (p *picker) Nodes() []Node { return p.nodes }
func (p *picker) Kind() Kind    { return p.kind }

func (p *picker) Pick(a *Attempt) (int, bool) {
	f := filter{a: a, useHealth: a.Health != nil && p.kind != CHash}
	if idx := p.pickGroups(&f); idx >= 0 {
		return p.take(a, idx), true
	}
	if f.useHealth && !f.sawHealth {
		// No node is healthy: APISIX then uses all nodes.
		f = filter{a: a}
		if idx := p.pickGroups(&f); idx >= 0 {
			return p.take(a, idx), true
		}
	}
	return -1, false
}

func (p *picker) pickGroups(f *filter) int {
	for i := range p.groups {
		if idx := p.groups[i].pick(f); idx >= 0 {
			return idx
		}
	}
	return -1
}

func (p *picker) take(a *Attempt, idx int) int {
	a.mark(idx)
	p.states[idx].inflight.Add(1)
	return idx
}

func (p *picker) Done(idx int, rtt time.Duration) {
	if idx < 0 || idx >= len(p.states) {
		return
	}
	s := p.states[idx]
	s.inflight.Add(-1)
	if p.kind == EWMA {
		s.observe(rtt, nanotime())
	}
}

var _ Picker = (*picker)(nil)
