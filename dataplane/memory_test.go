package dataplane

import (
	"testing"
)

// Routes without plugins of their own share one chain (global rules
// only); a global rule change gives them a new shared chain that runs it,
// and a route with plugins keeps a chain of its own.
func TestPlainRoutesShareChain(t *testing.T) {
	e := newEnv(t, nil)
	a := backend(t, "a")
	e.put("/apisix/upstreams/u", `{"nodes":`+nodesJSON(a)+`}`)
	e.put("/apisix/routes/p1", `{"uri":"/p1","upstream_id":"u"}`)
	e.put("/apisix/routes/p2", `{"uri":"/p2","upstream_id":"u"}`)
	e.put("/apisix/routes/own", `{"uri":"/own","upstream_id":"u","plugins":{"proxy-rewrite":{"headers":{"set":{"X-Test-From":"own"}}}}}`)
	s := e.dp.snap.Load()
	p1, p2, own := s.routes["p1"].chain, s.routes["p2"].chain, s.routes["own"].chain
	if p1 != p2 {
		t.Fatal("plugin-less routes have separate chains, want one shared")
	}
	if own == p1 {
		t.Fatal("a route with plugins uses the shared chain")
	}
	// An unrelated change keeps the shared chain.
	e.put("/apisix/routes/p3", `{"uri":"/p3","upstream_id":"u"}`)
	s = e.dp.snap.Load()
	if s.routes["p3"].chain != p1 || s.routes["p1"].chain != p1 {
		t.Fatal("shared chain not carried over an unrelated change")
	}
	e.put("/apisix/global_rules/g", `{"plugins":{"fault-injection":{"abort":{"http_status":451,"vars":[[["http_x_global","==","1"]]]}}}}`)
	s = e.dp.snap.Load()
	if s.routes["p1"].chain == p1 || s.routes["p1"].chain != s.routes["p2"].chain {
		t.Fatal("global rule change: want a new chain shared by plugin-less routes")
	}
	for _, path := range []string{"/p1", "/p2", "/own"} {
		if r := e.get(path, "X-Global", "1"); r.status != 451 {
			t.Fatalf("%s with the global rule's header: status %d, want 451", path, r.status)
		}
		if r := e.get(path); r.status != 200 || r.h.Get("X-Backend") != "a" {
			t.Fatalf("%s: status %d backend %q, want 200 from a", path, r.status, r.h.Get("X-Backend"))
		}
	}
}
