package balancer

import (
	"math/rand/v2"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
)

// roundRobin is nginx's smooth weighted round robin over one group.
type roundRobin struct {
	mu  sync.Mutex
	idx []int
	w   []int64
	cur []int64
}

func newRoundRobin(p *picker, idx []int) *roundRobin {
	r := &roundRobin{idx: idx, w: make([]int64, len(idx)), cur: make([]int64, len(idx))}
	for i, g := range idx {
		r.w[i] = int64(p.nodes[g].Weight)
	}
	return r
}

func (r *roundRobin) pick(f *filter) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	best, total := -1, int64(0)
	for i, g := range r.idx {
		if r.w[i] == 0 || !f.ok(g) {
			continue
		}
		r.cur[i] += r.w[i]
		total += r.w[i]
		if best < 0 || r.cur[i] > r.cur[best] {
			best = i
		}
	}
	if best < 0 {
		return -1
	}
	r.cur[best] -= total
	return r.idx[best]
}

// pointsPerNode is the ring size per node of average weight (Ketama uses
// 160 points per server).
const pointsPerNode = 160

type point struct {
	hash uint64
	node int32 // global index
}

// chash is a consistent-hash ring over one group; a node gets ring points
// in proportion to its weight.
type chash struct {
	ring []point
}

func newCHash(p *picker, idx []int) *chash {
	var total int
	for _, g := range idx {
		total += p.nodes[g].Weight
	}
	c := &chash{}
	if total == 0 {
		return c
	}
	for _, g := range idx {
		w := p.nodes[g].Weight
		if w == 0 {
			continue
		}
		n := (pointsPerNode*len(idx)*w + total/2) / total
		if n < 1 {
			n = 1
		}
		buf := make([]byte, 0, len(p.nodes[g].Addr)+8)
		for i := 0; i < n; i++ {
			buf = append(buf[:0], p.nodes[g].Addr...)
			buf = append(buf, '#')
			buf = strconv.AppendInt(buf, int64(i), 10)
			c.ring = append(c.ring, point{hash: hashBytes(buf), node: int32(g)})
		}
	}
	sort.Slice(c.ring, func(i, j int) bool {
		if c.ring[i].hash != c.ring[j].hash {
			return c.ring[i].hash < c.ring[j].hash
		}
		return c.ring[i].node < c.ring[j].node
	})
	return c
}

func (c *chash) pick(f *filter) int {
	if len(c.ring) == 0 {
		return -1
	}
	h := f.a.keyHash()
	i := sort.Search(len(c.ring), func(i int) bool { return c.ring[i].hash >= h })
	for n := 0; n < len(c.ring); n++ {
		p := c.ring[(i+n)%len(c.ring)]
		if f.ok(int(p.node)) {
			return int(p.node)
		}
	}
	return -1
}

// HashKey is the 64-bit hash chash places a key on the ring with (FNV-1a
// followed by a murmur3 finalizer for avalanche). It does not allocate.
func HashKey(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return mix(h)
}

func hashBytes(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return mix(h)
}

func mix(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// ewma picks the better of two random eligible nodes by peak EWMA latency
// times (in-flight + 1).
type ewma struct {
	p   *picker
	idx []int
}

func newEWMA(p *picker, idx []int) *ewma { return &ewma{p: p, idx: idx} }

func (e *ewma) pick(f *filter) int {
	n := 0
	for _, g := range e.idx {
		if f.ok(g) {
			n++
		}
	}
	switch n {
	case 0:
		return -1
	case 1:
		return e.nth(f, 0)
	}
	r1 := rand.IntN(n)
	r2 := rand.IntN(n - 1)
	if r2 >= r1 {
		r2++
	}
	a, b := e.nth(f, r1), e.nth(f, r2)
	now := nanotime()
	if e.cost(b, now) < e.cost(a, now) {
		return b
	}
	return a
}

// nth returns the k-th eligible node without re-running the health check
// bookkeeping (eligibility cannot change between the two scans in a way
// that matters: a node turning unhealthy is picked once more at worst).
func (e *ewma) nth(f *filter, k int) int {
	for _, g := range e.idx {
		if f.a.Tried(g) || (f.useHealth && !f.a.Health.Healthy(g)) {
			continue
		}
		if k == 0 {
			return g
		}
		k--
	}
	// Health changed between scans; fall back to any untried node.
	for _, g := range e.idx {
		if !f.a.Tried(g) {
			return g
		}
	}
	return e.idx[0]
}

func (e *ewma) cost(g int, now int64) float64 {
	s := e.p.states[g]
	return (s.score(now) + 1) * float64(s.inflight.Load()+1)
}

// leastConn picks the eligible node with the fewest in-flight attempts per
// unit of weight; ties rotate.
type leastConn struct {
	p    *picker
	idx  []int
	next atomic.Uint32
}

func newLeastConn(p *picker, idx []int) *leastConn { return &leastConn{p: p, idx: idx} }

func (l *leastConn) pick(f *filter) int {
	n := len(l.idx)
	start := int(l.next.Add(1)) % n
	best, bestScore := -1, 0.0
	for k := 0; k < n; k++ {
		g := l.idx[(start+k)%n]
		w := l.p.nodes[g].Weight
		if w == 0 || !f.ok(g) {
			continue
		}
		s := float64(l.p.states[g].inflight.Load()+1) / float64(w)
		if best < 0 || s < bestScore {
			best, bestScore = g, s
		}
	}
	return best
}
