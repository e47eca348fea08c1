package dataplane

import (
	"bufio"
	"net"
	"testing"
	"time"
)

// waitListener waits until listener id serves the object of the
// snapshot in force (listeners are reconciled just after it is stored).
func waitListener(t *testing.T, e *env, id string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := e.dp.snap.Load()
		e.dp.mu.Lock()
		l := e.dp.dynamic[id]
		e.dp.mu.Unlock()
		if s != nil && l != nil && l.chains.Load().obj == s.listeners[id] {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("listener %s not reconciled", id)
		}
		time.Sleep(time.Millisecond)
	}
}

// A keep-alive connection is drained (Connection: close on its next
// response) when a listener update changes or removes its filter chain,
// and only then: updates of other chains, however many, leave it open.
func TestDrainOnChainChange(t *testing.T) {
	e := newEnv(t, nil)
	a, b := backend(t, "a"), backend(t, "b")
	e.put("/apisix/routes/ra", `{"uri":"/*","labels":{"meshagent.route_config":"rc-a"},"upstream":{"nodes":`+nodesJSON(a)+`}}`)
	e.put("/apisix/routes/rb", `{"uri":"/*","labels":{"meshagent.route_config":"rc-b"},"upstream":{"nodes":`+nodesJSON(b)+`}}`)
	chainA := `{"name":"a","kind":"http","route_config":"rc-a","match":{"source_prefix_ranges":["127.0.0.1/32"]}}`
	chainB := `{"name":"b","kind":"http","route_config":"rc-b"}`
	other := func(i int) string {
		return `{"name":"t","kind":"tcp","stream_route_id":"none","match":{"server_names":["v` + string(rune('0'+i)) + `.test"]}}`
	}
	e.put("/meshagent/listeners/l", listenerJSON("127.0.0.1:0", chainA, chainB, other(0)))
	waitListener(t, e, "l")
	addr, ok := e.dp.ListenerAddr("l")
	if !ok {
		t.Fatal("listener not bound")
	}
	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", addr.String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, bufio.NewReader(c)
	}
	get := func(c net.Conn, br *bufio.Reader, want string, wantClosed bool) {
		t.Helper()
		got, closed := rawGetClose(t, c, br, "/x")
		if got != want || closed != wantClosed {
			t.Fatalf("got %q, closed %v; want %q, closed %v", got, closed, want, wantClosed)
		}
	}
	c, br := dial()
	get(c, br, "a", false)
	// Other chains change, twice: the connection stays.
	for i := 1; i <= 2; i++ {
		e.put("/meshagent/listeners/l", listenerJSON("127.0.0.1:0", chainA, chainB, other(i)))
		waitListener(t, e, "l")
		get(c, br, "a", false)
	}
	// Its chain changes: it is drained, after one more request on the
	// chain it was accepted with.
	idle, ibr := dial()
	get(idle, ibr, "a", false)
	e.put("/meshagent/listeners/l", listenerJSON("127.0.0.1:0", `{"name":"a","kind":"http","route_config":"rc-b"}`, other(2)))
	waitListener(t, e, "l")
	static, err := net.Dial("tcp", e.http)
	if err != nil {
		t.Fatal(err)
	}
	defer static.Close()
	if _, closed := rawGetClose(t, static, bufio.NewReader(static), "/x"); closed {
		t.Fatal("a connection of the static listener was drained")
	}
	get(c, br, "a", true)
	get(idle, ibr, "a", true)
	// New connections take the new chain and are not drained.
	c2, br2 := dial()
	get(c2, br2, "b", false)
	get(c2, br2, "b", false)
	// The listener goes: its connections are drained.
	deadline := time.Now().Add(5 * time.Second)
	for e.dp.servers.drains.n.Load() != 0 { // the drained connections are gone
		if time.Now().After(deadline) {
			t.Fatalf("%d drained connections still tracked", e.dp.servers.drains.n.Load())
		}
		time.Sleep(time.Millisecond)
	}
	e.del("/meshagent/listeners/l")
	for e.dp.servers.drains.n.Load() == 0 { // drained just after the snapshot is stored
		if time.Now().After(deadline) {
			t.Fatal("removed listener's connections not drained")
		}
		time.Sleep(time.Millisecond)
	}
	get(c2, br2, "b", true)
}
