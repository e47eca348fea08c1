package balancer

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func nodes(weights ...int) []Node {
	ns := make([]Node, len(weights))
	for i, w := range weights {
		ns[i] = Node{Addr: fmt.Sprintf("10.0.0.%d:80", i+1), Weight: w}
	}
	return ns
}

// health is a static health filter for tests.
type health []bool

func (h health) Healthy(i int) bool { return h[i] }

func mustNew(t testing.TB, k Kind, ns []Node, st *States) Picker {
	t.Helper()
	p, err := New(k, ns, st)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func pickOnce(t testing.TB, p Picker, key string, h Health) int {
	t.Helper()
	var a Attempt
	a.Reset(key, h)
	idx, ok := p.Pick(&a)
	if !ok {
		t.Fatal("Pick found no node")
	}
	p.Done(idx, time.Millisecond)
	return idx
}

func TestRoundRobinWeights(t *testing.T) {
	ws := []int{1, 2, 3, 4, 10}
	p := mustNew(t, RoundRobin, nodes(ws...), nil)
	const picks = 100000
	counts := make([]int, len(ws))
	for i := 0; i < picks; i++ {
		counts[pickOnce(t, p, "", nil)]++
	}
	total := 0
	for _, w := range ws {
		total += w
	}
	for i, w := range ws {
		want := float64(picks) * float64(w) / float64(total)
		if math.Abs(float64(counts[i])-want)/want > 0.01 {
			t.Errorf("node %d (weight %d): %d picks, want %.0f ±1%%", i, w, counts[i], want)
		}
	}
}

func TestRoundRobinIsSmooth(t *testing.T) {
	// nginx's smooth WRR for weights 5,1,1 yields a a b a c a a.
	p := mustNew(t, RoundRobin, nodes(5, 1, 1), nil)
	var got strings.Builder
	for i := 0; i < 7; i++ {
		got.WriteByte("abc"[pickOnce(t, p, "", nil)])
	}
	if got.String() != "aabacaa" {
		t.Fatalf("sequence %q, want aabacaa", got.String())
	}
}

func TestWeightZeroNeverPicked(t *testing.T) {
	for _, k := range []Kind{RoundRobin, CHash, LeastConn} {
		p := mustNew(t, k, nodes(0, 1), nil)
		for i := 0; i < 100; i++ {
			if idx := pickOnce(t, p, fmt.Sprint(i), nil); idx == 0 {
				t.Fatalf("%v picked the weight-0 node", k)
			}
		}
	}
}

func chashOwners(t *testing.T, p Picker, keys int) []string {
	owners := make([]string, keys)
	var a Attempt
	for i := range owners {
		a.Reset("user-"+strconv.Itoa(i), nil)
		idx, ok := p.Pick(&a)
		if !ok {
			t.Fatal("no node")
		}
		p.Done(idx, 0)
		owners[i] = p.Nodes()[idx].Addr
	}
	return owners
}

func TestCHashStableAndBalanced(t *testing.T) {
	const n, keys = 10, 20000
	ns := nodes(make([]int, n)...)
	for i := range ns {
		ns[i].Weight = 1
	}
	p := mustNew(t, CHash, ns, nil)
	before := chashOwners(t, p, keys)
	again := chashOwners(t, mustNew(t, CHash, ns, nil), keys)
	per := map[string]int{}
	for i := range before {
		if before[i] != again[i] {
			t.Fatalf("key %d moved between identical rings", i)
		}
		per[before[i]]++
	}
	for a, c := range per {
		if dev := math.Abs(float64(c)-keys/n) / (keys / n); dev > 0.25 {
			t.Errorf("node %s owns %d keys, %.0f%% off the mean", a, c, dev*100)
		}
	}
	// Remove one node: only its keys move, about 1/N of all.
	removed := ns[3].Addr
	p2 := mustNew(t, CHash, append(append([]Node(nil), ns[:3]...), ns[4:]...), nil)
	after := chashOwners(t, p2, keys)
	moved := 0
	for i := range before {
		if before[i] != after[i] {
			moved++
			if before[i] != removed {
				t.Fatalf("key %d moved from surviving node %s to %s", i, before[i], after[i])
			}
		}
	}
	if frac := float64(moved) / keys; frac > 1.0/n*1.3 {
		t.Fatalf("%.3f of keys moved, want about %.3f", frac, 1.0/n)
	}
}

func TestCHashRetryAndHealth(t *testing.T) {
	p := mustNew(t, CHash, nodes(1, 1, 1), nil)
	var a Attempt
	a.Reset("k", health{false, false, false})
	first, _ := p.Pick(&a)
	second, ok := p.Pick(&a)
	if !ok || second == first {
		t.Fatalf("retry picked %d after %d", second, first)
	}
	// chash ignores health (APISIX): the same key keeps its node.
	if got := pickOnce(t, p, "k", health{first != 0, first != 1, first != 2}); got != first {
		t.Fatalf("health changed chash owner from %d to %d", first, got)
	}
}

func TestEWMAShiftsLoadFromSlowNode(t *testing.T) {
	p := mustNew(t, EWMA, nodes(1, 1, 1), nil)
	rtt := []time.Duration{time.Millisecond, 80 * time.Millisecond, 2 * time.Millisecond}
	counts := make([]int, 3)
	for i := 0; i < 3000; i++ {
		var a Attempt
		idx, ok := p.Pick(&a)
		if !ok {
			t.Fatal("no node")
		}
		p.Done(idx, rtt[idx])
		if i >= 300 {
			counts[idx]++
		}
	}
	if share := float64(counts[1]) / 2700; share > 0.05 {
		t.Fatalf("slow node got %.1f%% of picks (%v), want < 5%%", share*100, counts)
	}
	if counts[0] < counts[2]/2 {
		t.Fatalf("fastest node starved: %v", counts)
	}
}

func TestEWMAPrefersFewerInFlight(t *testing.T) {
	p := mustNew(t, EWMA, nodes(1, 1), nil)
	// Equal latency history; node 0 holds 20 requests in flight.
	for i := 0; i < 2; i++ {
		var a Attempt
		idx, _ := p.Pick(&a)
		p.Done(idx, 5*time.Millisecond)
	}
	st := p.(*picker).states
	st[0].inflight.Add(20)
	defer st[0].inflight.Add(-20)
	for i := 0; i < 100; i++ {
		if pickOnce(t, p, "", nil) != 1 {
			t.Fatal("picked the node with 20 in flight")
		}
	}
}

func TestLeastConn(t *testing.T) {
	p := mustNew(t, LeastConn, nodes(1, 1, 2), nil)
	// Hold requests open: weight 2 takes two for every one of the others.
	held := map[int]int{}
	for i := 0; i < 8; i++ {
		var a Attempt
		idx, _ := p.Pick(&a)
		held[idx]++
	}
	if held[0] != 2 || held[1] != 2 || held[2] != 4 {
		t.Fatalf("in-flight spread %v, want 2/2/4", held)
	}
	p.Done(1, time.Millisecond)
	var a Attempt
	if idx, _ := p.Pick(&a); idx != 1 {
		t.Fatalf("after releasing node 1 picked %d", idx)
	}
}

func TestPriorityFailover(t *testing.T) {
	ns := []Node{
		{Addr: "a:80", Weight: 1, Priority: 10}, {Addr: "b:80", Weight: 1, Priority: 10},
		{Addr: "c:80", Weight: 1, Priority: 0}, {Addr: "d:80", Weight: 1, Priority: -5},
	}
	for _, k := range []Kind{RoundRobin, CHash, EWMA, LeastConn} {
		t.Run(k.String(), func(t *testing.T) {
			p := mustNew(t, k, ns, nil)
			var a Attempt
			a.Reset("key", nil)
			var got []string
			for {
				idx, ok := p.Pick(&a)
				if !ok {
					break
				}
				got = append(got, ns[idx].Addr[:1])
			}
			s := strings.Join(got, "")
			if len(s) != 4 || !strings.Contains("ab ba", s[:2]) || s[2:] != "cd" {
				t.Fatalf("retry order %q, want the a/b group, then c, then d, each once", s)
			}
			if a.Tries() != 4 {
				t.Fatalf("Tries() = %d", a.Tries())
			}
		})
	}
	t.Run("unhealthy high group skipped", func(t *testing.T) {
		p := mustNew(t, RoundRobin, ns, nil)
		if idx := pickOnce(t, p, "", health{false, false, true, true}); ns[idx].Addr != "c:80" {
			t.Fatalf("picked %s, want c:80", ns[idx].Addr)
		}
	})
	t.Run("all unhealthy still tries by priority", func(t *testing.T) {
		p := mustNew(t, LeastConn, ns, nil)
		if idx := pickOnce(t, p, "", health{false, false, false, false}); ns[idx].Priority != 10 {
			t.Fatalf("picked %s, want a node of the top group", ns[idx].Addr)
		}
	})
	t.Run("healthy nodes tried does not fall to unhealthy", func(t *testing.T) {
		p := mustNew(t, RoundRobin, ns, nil)
		var a Attempt
		a.Reset("", health{false, false, true, false})
		if idx, ok := p.Pick(&a); !ok || ns[idx].Addr != "c:80" {
			t.Fatalf("first pick %v %v", idx, ok)
		}
		if idx, ok := p.Pick(&a); ok {
			t.Fatalf("picked unhealthy %s after the only healthy node was tried", ns[idx].Addr)
		}
	})
}

func TestAttemptManyNodes(t *testing.T) {
	ws := make([]int, 300)
	for i := range ws {
		ws[i] = 1
	}
	p := mustNew(t, RoundRobin, nodes(ws...), nil)
	var a Attempt
	seen := map[int]bool{}
	for {
		idx, ok := p.Pick(&a)
		if !ok {
			break
		}
		if seen[idx] {
			t.Fatalf("node %d picked twice", idx)
		}
		seen[idx] = true
		p.Done(idx, 0)
	}
	if len(seen) != 300 {
		t.Fatalf("picked %d distinct nodes, want 300", len(seen))
	}
	a.Reset("", nil)
	if a.Tried(299) || a.Tries() != 0 {
		t.Fatal("Reset did not clear the overflow bitset")
	}
}

func TestStatesCarryOver(t *testing.T) {
	st := NewStates()
	p1 := mustNew(t, LeastConn, nodes(1, 1), st)
	var a Attempt
	idx, _ := p1.Pick(&a) // in flight across the swap
	addr := p1.Nodes()[idx].Addr
	ns2 := append(nodes(1, 1), Node{Addr: "10.0.0.9:80", Weight: 1})
	p2 := mustNew(t, LeastConn, ns2, st)
	if got := st.Get(addr).InFlight(); got != 1 {
		t.Fatalf("in-flight of %s = %d after swap, want 1", addr, got)
	}
	p1.Done(idx, time.Millisecond) // the old snapshot finishes the request
	if got := st.Get(addr).InFlight(); got != 0 {
		t.Fatalf("in-flight = %d after Done on the old picker", got)
	}
	st.Retain(p2.Nodes()[1:])
	if st.Get(ns2[0].Addr) != nil || st.Get("10.0.0.9:80") == nil {
		t.Fatal("Retain kept or dropped the wrong states")
	}
	pe := mustNew(t, EWMA, nodes(1), st)
	pe.Done(pickOnce(t, pe, "", nil), 0)
	var b Attempt
	i, _ := pe.Pick(&b)
	pe.Done(i, 40*time.Millisecond)
	pe2 := mustNew(t, EWMA, nodes(1), st)
	if e := pe2.(*picker).states[0].EWMA(); e < 30*time.Millisecond {
		t.Fatalf("EWMA after swap = %v, want the carried ~40ms", e)
	}
}

func TestNewErrors(t *testing.T) {
	cases := []struct {
		name string
		ns   []Node
		want string
	}{
		{"no nodes", nil, "nodes: at least one"},
		{"negative weight", []Node{{Addr: "a:1", Weight: -1}}, "nodes[0]: weight"},
		{"duplicate", []Node{{Addr: "a:1", Weight: 1}, {Addr: "a:1", Weight: 1}}, "nodes[1]: address a:1 repeats"},
		{"empty addr", []Node{{Weight: 1}}, "addr is required"},
	}
	for _, c := range cases {
		if _, err := New(RoundRobin, c.ns, nil); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.name, err, c.want)
		}
	}
	for _, s := range []string{"", "roundrobin", "chash", "ewma", "least_conn"} {
		k, err := ParseKind(s)
		if err != nil || (s != "" && k.String() != s) {
			t.Errorf("ParseKind(%q) = %v, %v", s, k, err)
		}
	}
	if _, err := ParseKind("random"); !errors.Is(err, ErrInvalid) {
		t.Errorf("ParseKind(random) err = %v", err)
	}
}

func TestConcurrentPicks(t *testing.T) {
	for _, k := range []Kind{RoundRobin, CHash, EWMA, LeastConn} {
		p := mustNew(t, k, nodes(1, 2, 3), nil)
		var wg sync.WaitGroup
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				var a Attempt
				for i := 0; i < 2000; i++ {
					a.Reset(fmt.Sprint(i), health{true, i%2 == 0, true})
					idx, ok := p.Pick(&a)
					if !ok {
						t.Error("no node")
						return
					}
					p.Done(idx, time.Duration(idx+1)*time.Millisecond)
				}
			}(g)
		}
		wg.Wait()
		for i, s := range p.(*picker).states {
			if s.InFlight() != 0 {
				t.Fatalf("%v: node %d in-flight %d after all Done", k, i, s.InFlight())
			}
		}
	}
}

func TestPickDoesNotAllocate(t *testing.T) {
	for _, k := range []Kind{RoundRobin, CHash, EWMA, LeastConn} {
		p := mustNew(t, k, nodes(1, 2, 3, 4), nil)
		var h Health = health{true, true, false, true}
		var a Attempt
		if n := testing.AllocsPerRun(200, func() {
			a.Reset("some-key", h)
			idx, _ := p.Pick(&a)
			p.Done(idx, time.Millisecond)
		}); n != 0 {
			t.Errorf("%v: Pick allocates %v times", k, n)
		}
	}
}

// TestStatesLinearAndIndexed checks States keeps one NodeState per
// address across the linear and indexed sizes and through Retain.
func TestStatesLinearAndIndexed(t *testing.T) {
	for _, n := range []int{1, linearMax, linearMax + 1, 100} {
		s := NewStates()
		var nodes []Node
		first := map[string]*NodeState{}
		for i := range n {
			a := fmt.Sprintf("10.0.0.%d:80", i)
			nodes = append(nodes, Node{Addr: a, Weight: 1})
			first[a] = s.get(a)
		}
		for a, st := range first {
			if s.get(a) != st || s.Get(a) != st {
				t.Fatalf("n=%d: %s: state not stable", n, a)
			}
		}
		if s.Get("10.9.9.9:80") != nil {
			t.Fatalf("n=%d: unknown address has a state", n)
		}
		keep := nodes[n/2:]
		s.Retain(keep)
		for i, nd := range nodes {
			got := s.Get(nd.Addr)
			if i < n/2 && got != nil {
				t.Fatalf("n=%d: %s survived Retain", n, nd.Addr)
			}
			if i >= n/2 && got != first[nd.Addr] {
				t.Fatalf("n=%d: %s lost its state in Retain", n, nd.Addr)
			}
		}
	}
}
