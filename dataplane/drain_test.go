package dataplane

import (
	"bufio"
	"net"
	"testing"
)

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
		get(c, br, "a", false)
	}
	// Its chain changes: it is drained, after one more request on the
	// chain it was accepted with.
	idle, ibr := dial()
	get(idle, ibr, "a", false)
	e.put("/meshagent/listeners/l", listenerJSON("127.0.0.1:0", `{"name":"a","kind":"http","route_config":"rc-b"}`, other(2)))
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
	e.del("/meshagent/listeners/l")
	get(c2, br2, "b", true)
}
