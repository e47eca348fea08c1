package balancer

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// decayTime is how fast an EWMA forgets, as APISIX's ewma.lua DECAY_TIME.
const decayTime = 10 * time.Second

// NodeState is the per-node state that outlives a snapshot: in-flight
// requests and the peak EWMA of response times. It is shared by every
// Picker built with the same States and is updated with atomics; two
// samples folded at the same instant may lose one, which only delays the
// estimate by a sample.
type NodeState struct {
	inflight atomic.Int64
	ewma     atomic.Uint64 // float64 bits, nanoseconds
	stamp    atomic.Int64  // nanotime of the last sample, 0 = none
}

// InFlight returns the number of picked attempts not yet Done.
func (s *NodeState) InFlight() int64 { return s.inflight.Load() }

// EWMA returns the current latency estimate, decayed to now.
func (s *NodeState) EWMA() time.Duration {
	return time.Duration(s.score(nanotime()))
}

// observe folds one response time into the peak EWMA: a slower sample
// replaces the estimate at once, faster ones pull it down with a weight
// that grows with the time since the last sample.
func (s *NodeState) observe(rtt time.Duration, now int64) {
	x := float64(rtt)
	if x < 0 {
		x = 0
	}
	old, last := math.Float64frombits(s.ewma.Load()), s.stamp.Load()
	if x <= old && last != 0 {
		w := math.Exp(-float64(now-last) / float64(decayTime))
		x = old*w + x*(1-w)
	}
	s.ewma.Store(math.Float64bits(x))
	s.stamp.Store(now)
}

// score is the EWMA decayed towards zero by the idle time, so a node that
// was slow long ago is tried again.
func (s *NodeState) score(now int64) float64 {
	t := s.stamp.Load()
	if t == 0 {
		return 0
	}
	e := math.Float64frombits(s.ewma.Load())
	td := now - t
	if td <= 0 {
		return e
	}
	return e * math.Exp(-float64(td)/float64(decayTime))
}

// States holds NodeState by node address for one upstream, so the proxy
// can carry in-flight counts and EWMA scores over to the Picker of the next
// snapshot. Safe for concurrent use. Most upstreams have few nodes, so the
// states are a slice searched linearly (no map per upstream: thousands of
// upstreams each pay only for their nodes); past linearMax nodes an index
// map keeps lookups constant-time.
type States struct {
	mu    sync.Mutex
	addrs []string
	nodes []*NodeState
	idx   map[string]int // nil while len(addrs) <= linearMax
}

// linearMax is the node count up to which States searches linearly.
const linearMax = 16

// NewStates returns an empty registry.
func NewStates() *States { return &States{} }

func (s *States) get(addr string) *NodeState {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i := s.index(addr); i >= 0 {
		return s.nodes[i]
	}
	st := &NodeState{}
	s.addrs = append(s.addrs, addr)
	s.nodes = append(s.nodes, st)
	if s.idx != nil {
		s.idx[addr] = len(s.addrs) - 1
	} else if len(s.addrs) > linearMax {
		s.reindex()
	}
	return st
}

// reindex rebuilds idx from addrs; s.mu is held.
func (s *States) reindex() {
	if len(s.addrs) <= linearMax {
		s.idx = nil
		return
	}
	s.idx = make(map[string]int, len(s.addrs))
	for i, a := range s.addrs {
		s.idx[a] = i
	}
}

// index returns the position of addr or -1; s.mu is held.
func (s *States) index(addr string) int {
	if s.idx != nil {
		if i, ok := s.idx[addr]; ok {
			return i
		}
		return -1
	}
	for i, a := range s.addrs {
		if a == addr {
			return i
		}
	}
	return -1
}

// Get returns the state of addr, or nil if there is none.
func (s *States) Get(addr string) *NodeState {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i := s.index(addr); i >= 0 {
		return s.nodes[i]
	}
	return nil
}

// Retain drops the state of every address not among nodes. Call it after
// the Picker of a new snapshot is built and the old one is retired.
func (s *States) Retain(nodes []Node) {
	keep := make(map[string]struct{}, len(nodes))
	for _, n := range nodes {
		keep[n.Addr] = struct{}{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	j := 0
	for i, a := range s.addrs {
		if _, ok := keep[a]; ok {
			s.addrs[j], s.nodes[j] = a, s.nodes[i]
			j++
		}
	}
	clear(s.addrs[j:])
	clear(s.nodes[j:])
	s.addrs, s.nodes = s.addrs[:j], s.nodes[:j]
	s.reindex()
}

var epoch = time.Now()

// nanotime is a monotonic clock that is never 0.
func nanotime() int64 { return int64(time.Since(epoch)) + 1 }
