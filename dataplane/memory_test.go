package dataplane

import (
	"fmt"
	"testing"
	"time"
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

// Node pools cost no connection state until traffic: fasthttp's HostClient is
// made by the first request, and nodes with the same settings share one
// interned copy of them.
func TestHostPoolLazyAndShared(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.HTTP1Engine = EngineFasthttp }) // the event loops have pools of their own
	a, b := backend(t, "a"), backend(t, "b")
	e.put("/apisix/upstreams/u1", `{"nodes":`+nodesJSON(a)+`}`)
	e.put("/apisix/upstreams/u2", `{"nodes":`+nodesJSON(b)+`}`)
	e.put("/apisix/upstreams/slow", `{"nodes":`+nodesJSON(b)+`,"timeout":{"connect":1,"send":1,"read":1}}`)
	e.put("/apisix/routes/r1", `{"uri":"/r1","upstream_id":"u1"}`)
	s := e.dp.snap.Load()
	p1 := s.upstreams[s.routes["r1"].up.key].nodes[0].hc
	var p2, slow *hostPool
	for _, up := range s.upstreams {
		switch up.id {
		case "u2":
			p2 = up.nodes[0].hc
		case "slow":
			slow = up.nodes[0].hc
		}
	}
	if p1 == nil || p2 == nil || slow == nil {
		t.Fatal("upstreams not compiled")
	}
	for _, p := range []*hostPool{p1, p2, slow} {
		if p.hc.Load() != nil {
			t.Fatalf("pool %s has a HostClient before any request", p.addr)
		}
	}
	if p1.cfg != p2.cfg {
		t.Fatal("nodes with the same settings do not share them")
	}
	if p1.cfg == slow.cfg || slow.cfg.Value().to.read != time.Second {
		t.Fatalf("different timeouts share settings: %+v", slow.cfg.Value())
	}
	if r := e.get("/r1"); r.status != 200 || r.h.Get("X-Backend") != "a" {
		t.Fatalf("/r1: status %d backend %q", r.status, r.h.Get("X-Backend"))
	}
	hc := p1.hc.Load()
	if hc == nil || hc.Addr != p1.addr || hc.ReadTimeout != defaultTimeout {
		t.Fatalf("first request: HostClient %+v, want one for %s", hc, p1.addr)
	}
	if p2.hc.Load() != nil {
		t.Fatal("an upstream without traffic got a HostClient")
	}
}

// A route's fingerprint has a fixed size however many consumers and
// global rules there are (it embeds a digest of them), and still changes
// when they change.
func TestRouteFingerprintBounded(t *testing.T) {
	e := newEnv(t, nil)
	a := backend(t, "a")
	e.put("/apisix/routes/r", `{"uri":"/r","upstream":{"nodes":`+nodesJSON(a)+`}}`)
	fp0 := e.dp.snap.Load().routes["r"].fp
	for i := range 200 {
		e.put(fmt.Sprintf("/apisix/consumers/consumer%03d", i), fmt.Sprintf(`{"username":"consumer%03d"}`, i))
	}
	fp1 := e.dp.snap.Load().routes["r"].fp
	if fp1 == fp0 {
		t.Fatal("route fingerprint did not change with the consumers")
	}
	if len(fp1) > len(fp0)+8 || len(fp1) > 200 {
		t.Fatalf("route fingerprint grew with 200 consumers: %d bytes (was %d)", len(fp1), len(fp0))
	}
	if r := e.get("/r"); r.status != 200 || r.h.Get("X-Backend") != "a" {
		t.Fatalf("/r: status %d backend %q", r.status, r.h.Get("X-Backend"))
	}
}
