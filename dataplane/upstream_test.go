package dataplane

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestRetriesToDeadNode(t *testing.T) {
	e := newEnv(t, nil)
	live := backend(t, "live")
	dead := deadAddr(t)
	e.put("/apisix/upstreams/u", `{"nodes":`+nodesJSON(dead, live)+`}`)
	e.put("/apisix/routes/r", `{"uri":"/*","upstream_id":"u"}`)
	// Round-robin alternates the first node; every request must succeed
	// because a connect error is retried on the next node (retries
	// default to nodes-1), for POST too.
	for i := range 6 {
		method := "GET"
		if i%2 == 1 {
			method = "POST"
		}
		r := e.do(method, "/x", "b")
		if r.status != 200 || r.h.Get("X-Backend") != "live" {
			t.Fatalf("request %d (%s): status %d backend %q", i, method, r.status, r.h.Get("X-Backend"))
		}
	}
	if e.dp.Stats().Retries.Load() == 0 {
		t.Fatal("no retry was counted")
	}
	// retries: 0 -> a dead node answers 502.
	e.put("/apisix/upstreams/u0", `{"nodes":`+nodesJSON(dead)+`,"retries":0}`)
	e.put("/apisix/routes/r0", `{"uri":"/dead","upstream_id":"u0"}`)
	if r := e.get("/dead"); r.status != 502 {
		t.Fatalf("dead only: status %d, want 502", r.status)
	}
}

func TestPassHost(t *testing.T) {
	e := newEnv(t, nil)
	b := backend(t, "b")
	_, port, _ := net.SplitHostPort(b)
	cases := []struct {
		name, up, want string
	}{
		{"pass", `"pass_host":"pass"`, "client.example.com"},
		{"node", `"pass_host":"node"`, "127.0.0.1:" + port},
		{"rewrite", `"pass_host":"rewrite","upstream_host":"rewritten.example.com"`, "rewritten.example.com"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := fmt.Sprintf("/ph%d", i)
			e.put("/apisix/routes/ph"+c.name, `{"uri":"`+path+`","upstream":{"nodes":`+nodesJSON(b)+`,`+c.up+`}}`)
			r := e.get(path, "Host", "client.example.com")
			if got := r.h.Get("X-Seen-Host"); got != c.want {
				t.Fatalf("upstream saw Host %q, want %q", got, c.want)
			}
		})
	}
}

func TestTimeouts(t *testing.T) {
	e := newEnv(t, nil)
	b := backend(t, "slow")
	e.put("/apisix/upstreams/u", `{"nodes":`+nodesJSON(b)+`,"timeout":{"connect":1,"send":1,"read":0.2}}`)
	e.put("/apisix/routes/r", `{"uri":"/slow","upstream_id":"u"}`)
	// Route timeout overrides the upstream's.
	e.put("/apisix/routes/r2", `{"uri":"/slow2","upstream_id":"u","timeout":{"connect":1,"send":1,"read":2}}`)
	start := time.Now()
	if r := e.get("/slow?sleep=1s"); r.status != 504 {
		t.Fatalf("status %d, want 504", r.status)
	}
	if el := time.Since(start); el > 900*time.Millisecond {
		t.Fatalf("504 took %v, want about the 200ms read timeout", el)
	}
	if r := e.get("/slow?sleep=50ms"); r.status != 200 {
		t.Fatalf("fast request: status %d", r.status)
	}
	if r := e.get("/slow2?sleep=500ms"); r.status != 200 {
		t.Fatalf("route timeout override: status %d, want 200", r.status)
	}
}

func TestNoUpstream503AndRouteStatus(t *testing.T) {
	e := newEnv(t, nil)
	b := backend(t, "b")
	e.put("/apisix/routes/r", `{"uri":"/x","upstream":{"nodes":`+nodesJSON(b)+`},"status":0}`)
	if r := e.get("/x"); r.status != 404 {
		t.Fatalf("disabled route: status %d, want 404", r.status)
	}
	e.put("/apisix/routes/r", `{"uri":"/x","upstream":{"nodes":`+nodesJSON(b)+`}}`)
	if r := e.get("/x"); r.status != 200 || !strings.HasPrefix(r.body, "b:") {
		t.Fatalf("enabled route: %d %q", r.status, r.body)
	}
	e.put("/apisix/routes/r", `{"uri":"/x","plugins":{"proxy-rewrite":{"uri":"/y"}}}`)
	if r := e.get("/x"); r.status != 503 {
		t.Fatalf("no upstream: status %d, want 503", r.status)
	}
}

func TestActiveHealthCheckSkipsBadNode(t *testing.T) {
	e := newEnv(t, nil)
	good := backend(t, "good")
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Backend", "bad")
		w.WriteHeader(500)
	}))
	t.Cleanup(bad.Close)
	e.put("/apisix/routes/r", `{"uri":"/h","upstream":{"nodes":`+nodesJSON(good, bad.Listener.Addr().String())+`,
		"checks":{"active":{"http_path":"/","healthy":{"interval":1,"successes":1},"unhealthy":{"interval":1,"http_failures":1}}}}}`)
	deadline := time.Now().Add(3 * time.Second)
	for {
		got := map[string]int{}
		for range 6 {
			got[e.get("/h").h.Get("X-Backend")]++
		}
		if got["good"] == 6 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("bad node still receives traffic: %v", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestCHashIsSticky(t *testing.T) {
	e := newEnv(t, nil)
	a, b, c := backend(t, "a"), backend(t, "b"), backend(t, "c")
	e.put("/apisix/routes/r", `{"uri":"/c","upstream":{"type":"chash","hash_on":"header","key":"x-user","nodes":`+nodesJSON(a, b, c)+`}}`)
	seen := map[string]string{}
	for round := range 3 {
		for _, user := range []string{"u1", "u2", "u3", "u4", "u5"} {
			got := e.get("/c", "X-User", user).h.Get("X-Backend")
			if round > 0 && seen[user] != got {
				t.Fatalf("user %s moved from %s to %s", user, seen[user], got)
			}
			seen[user] = got
		}
	}
}

func TestHTTPSUpstream(t *testing.T) {
	e := newEnv(t, nil)
	s := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", "tls")
		w.Header().Set("X-Seen-TLS", fmt.Sprint(r.TLS != nil))
	}))
	t.Cleanup(s.Close)
	e.put("/apisix/routes/r", `{"uri":"/s","upstream":{"scheme":"https","nodes":`+nodesJSON(s.Listener.Addr().String())+`}}`)
	r := e.get("/s")
	if r.status != 200 || r.h.Get("X-Seen-TLS") != "true" {
		t.Fatalf("status %d, backend TLS %q", r.status, r.h.Get("X-Seen-TLS"))
	}
}

// An endpoint change keeps the warm connections of unchanged nodes.
func TestPoolsSurviveUpstreamChange(t *testing.T) {
	e := newEnv(t, nil)
	var conns atomic.Int64
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Header().Set("X-Backend", "a") }))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	a := s.Listener.Addr().String()
	other := backend(t, "b")
	h, p, _ := net.SplitHostPort(other)
	e.put("/apisix/upstreams/u", `{"nodes":`+nodesJSON(a)+`}`)
	e.put("/apisix/routes/r", `{"uri":"/p","upstream_id":"u"}`)
	for range 5 {
		if r := e.get("/p"); r.status != 200 {
			t.Fatalf("status %d", r.status)
		}
	}
	before := conns.Load()
	// Add a node of weight 0 (never picked): node a is unchanged.
	e.put("/apisix/upstreams/u", `{"nodes":[{"host":"127.0.0.1","port":`+portOf(a)+`,"weight":1},{"host":"`+h+`","port":`+p+`,"weight":0}]}`)
	for range 5 {
		if r := e.get("/p"); r.status != 200 || r.h.Get("X-Backend") != "a" {
			t.Fatalf("status %d backend %q", r.status, r.h.Get("X-Backend"))
		}
	}
	if got := conns.Load(); got != before {
		t.Fatalf("backend saw %d new connections after the upstream change, want 0", got-before)
	}
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}
