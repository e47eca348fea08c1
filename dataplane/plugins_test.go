package dataplane

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/meshagent/meshagent/plugins"
)

// Test-only plugins that misbehave, to check the chain's enforcement.
type panicFilter struct{}

func (panicFilter) Rewrite(plugins.Ctx) plugins.Status { panic("boom") }

type lazyStop struct{}

func (lazyStop) Access(plugins.Ctx) plugins.Status { return plugins.Stop }

func init() {
	plugins.Register(plugins.Plugin{Name: "test-panic", Priority: 1, New: func(cfg json.RawMessage, _ plugins.Builder) (any, error) {
		return panicFilter{}, plugins.Decode(cfg, &struct{}{})
	}})
	plugins.Register(plugins.Plugin{Name: "test-lazy-stop", Priority: 1, New: func(cfg json.RawMessage, _ plugins.Builder) (any, error) {
		return lazyStop{}, plugins.Decode(cfg, &struct{}{})
	}})
}

// traffic-split runs in both HTTP/1.1 engines: the event loops run it
// themselves (h1ctx_linux.go), with no hand-off to fasthttp.
func TestTrafficSplit(t *testing.T) {
	for _, engine := range []string{EngineEvloop, EngineFasthttp} {
		t.Run(engine, func(t *testing.T) {
			e := newEnv(t, func(o *Options) { o.HTTP1Engine = engine })
			testTrafficSplit(t, e)
			if n := e.dp.stats.H1Fallbacks.Load(); n != 0 && engine == EngineEvloop {
				t.Fatalf("%d connections handed to fasthttp", n)
			}
		})
	}
}

func testTrafficSplit(t *testing.T, e *env) {
	a, b, c := backend(t, "a"), backend(t, "b"), backend(t, "c")
	e.put("/apisix/upstreams/ub", `{"nodes":`+nodesJSON(b)+`}`)
	e.put("/apisix/routes/r", `{"uri":"/ts","upstream":{"nodes":`+nodesJSON(a)+`},"plugins":{"traffic-split":{"rules":[
		{"match":[{"vars":[["http_x_canary","==","1"]]},{"vars":[["arg_canary","==","yes"]]}],
		 "weighted_upstreams":[{"upstream":{"nodes":`+nodesJSON(c)+`},"weight":1}]},
		{"weighted_upstreams":[{"upstream_id":"ub","weight":3},{"weight":1}]}]}}}`)
	cases := []struct {
		name string
		path string
		hdr  []string
		want map[string]int
	}{
		{"header match", "/ts", []string{"X-Canary", "1"}, map[string]int{"c": 8}},
		{"arg match (OR)", "/ts?canary=yes", nil, map[string]int{"c": 8}},
		{"weighted 3:1 route upstream", "/ts", nil, map[string]int{"b": 6, "a": 2}},
	}
	for _, cs := range cases {
		t.Run(cs.name, func(t *testing.T) {
			got := map[string]int{}
			for range 8 {
				r := e.get(cs.path, cs.hdr...)
				if r.status != 200 {
					t.Fatalf("status %d", r.status)
				}
				got[r.h.Get("X-Backend")]++
			}
			for k, v := range cs.want {
				if got[k] != v {
					t.Fatalf("distribution %v, want %v", got, cs.want)
				}
			}
		})
	}
}

func TestProxyRewrite(t *testing.T) {
	e := newEnv(t, nil)
	b := backend(t, "b")
	up := `"upstream":{"nodes":` + nodesJSON(b) + `}`
	e.put("/apisix/routes/r1", `{"uri":"/old/*",`+up+`,"plugins":{"proxy-rewrite":{
		"regex_uri":["^/old/(.*)","/new/$1"],"host":"rw.example.com","method":"PUT",
		"headers":{"add":{"X-Test-Add":"a"},"set":{"X-Test-Set":"s"},"remove":["X-Test-Gone"]}}}}`)
	e.put("/apisix/routes/r2", `{"uri":"/tmpl",`+up+`,"plugins":{"proxy-rewrite":{"uri":"/t/$arg_id?q=$uri"}}}`)
	e.put("/apisix/routes/r3", `{"uri":"/legacy",`+up+`,"plugins":{"proxy-rewrite":{"headers":{"X-Test-Set":"legacy","X-Test-Gone":""}}}}`)
	cases := []struct {
		name, path string
		hdr        []string
		want       map[string]string
	}{
		{"regex_uri host method headers", "/old/a/b?z=1", []string{"X-Test-Gone", "x", "X-Test-Set", "orig"},
			map[string]string{"X-Seen-Path": "/new/a/b?z=1", "X-Seen-Host": "rw.example.com", "X-Seen-Method": "PUT",
				"X-Echo-Add": "a", "X-Echo-Set": "s", "X-Echo-Gone": ""}},
		{"uri template", "/tmpl?id=42", nil, map[string]string{"X-Seen-Path": "/t/42?q=/tmpl"}},
		{"legacy headers", "/legacy", []string{"X-Test-Gone", "x"}, map[string]string{"X-Echo-Set": "legacy", "X-Echo-Gone": ""}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.get(c.path, c.hdr...)
			if r.status != 200 {
				t.Fatalf("status %d %q", r.status, r.body)
			}
			for k, v := range c.want {
				if got := r.h.Get(k); got != v {
					t.Fatalf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

func TestFaultInjection(t *testing.T) {
	e := newEnv(t, nil)
	b := backend(t, "b")
	up := `"upstream":{"nodes":` + nodesJSON(b) + `}`
	e.put("/apisix/routes/abort", `{"uri":"/abort",`+up+`,"plugins":{"fault-injection":{"abort":{"http_status":418,"body":"teapot","vars":[[["arg_fail","==","1"]]]}}}}`)
	e.put("/apisix/routes/delay", `{"uri":"/delay",`+up+`,"plugins":{"fault-injection":{"delay":{"duration":0.3}}}}`)
	e.put("/apisix/routes/never", `{"uri":"/never",`+up+`,"plugins":{"fault-injection":{"abort":{"http_status":500,"percentage":0}}}}`)
	if r := e.get("/abort?fail=1"); r.status != 418 || r.body != "teapot" {
		t.Fatalf("abort: %d %q", r.status, r.body)
	}
	if r := e.get("/abort?fail=0"); r.status != 200 {
		t.Fatalf("abort vars not matched: %d", r.status)
	}
	start := time.Now()
	if r := e.get("/delay"); r.status != 200 {
		t.Fatalf("delay: %d", r.status)
	}
	if el := time.Since(start); el < 300*time.Millisecond {
		t.Fatalf("delay took %v, want >= 300ms", el)
	}
	for range 5 {
		if r := e.get("/never"); r.status != 200 {
			t.Fatalf("percentage 0 aborted: %d", r.status)
		}
	}
}

func TestBadPluginConfigKeepsOldRoute(t *testing.T) {
	e := newEnv(t, nil)
	b := backend(t, "b")
	up := `"upstream":{"nodes":` + nodesJSON(b) + `}`
	e.put("/apisix/routes/r", `{"uri":"/x",`+up+`,"plugins":{"fault-injection":{"abort":{"http_status":403}}}}`)
	if r := e.get("/x"); r.status != 403 {
		t.Fatalf("initial: %d", r.status)
	}
	before := e.dp.Stats().ConfigRejected.Load()
	// Unknown field: the store accepts the route (plugin schemas are the
	// data plane's), the data plane rejects it and keeps the old one.
	e.put("/apisix/routes/r", `{"uri":"/x",`+up+`,"plugins":{"fault-injection":{"abort":{"http_status":403,"bogus":1}}}}`)
	if r := e.get("/x"); r.status != 403 {
		t.Fatalf("after bad update: %d, want the old config (403)", r.status)
	}
	if e.dp.Stats().ConfigRejected.Load() == before {
		t.Fatal("rejection not counted")
	}
	e.put("/apisix/routes/r", `{"uri":"/x",`+up+`}`)
	if r := e.get("/x"); r.status != 200 {
		t.Fatalf("after good update: %d", r.status)
	}
}

func TestPluginMisbehaviour(t *testing.T) {
	e := newEnv(t, nil)
	b := backend(t, "b")
	up := `"upstream":{"nodes":` + nodesJSON(b) + `}`
	e.put("/apisix/routes/p", `{"uri":"/panic",`+up+`,"plugins":{"test-panic":{}}}`)
	e.put("/apisix/routes/s", `{"uri":"/stop",`+up+`,"plugins":{"test-lazy-stop":{}}}`)
	for range 3 {
		if r := e.get("/panic"); r.status != 500 {
			t.Fatalf("panic: %d", r.status)
		}
	}
	if r := e.get("/stop"); r.status != 500 {
		t.Fatalf("stop without response: %d", r.status)
	}
	if got := e.dp.Stats().PluginPanics.Load(); got != 3 {
		t.Fatalf("panics counted %d, want 3", got)
	}
	if got := e.dp.Stats().PluginBugs.Load(); got != 1 {
		t.Fatalf("bugs counted %d, want 1", got)
	}
	// Serving continues.
	e.put("/apisix/routes/ok", `{"uri":"/ok",`+up+`}`)
	if r := e.get("/ok"); r.status != 200 || !strings.HasPrefix(r.body, "b:") {
		t.Fatalf("after panics: %d", r.status)
	}
}
