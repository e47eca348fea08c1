package mtlstest

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	_ "github.com/meshagent/meshagent/plugins/rbac" // route-level rbac plugin
)

// httpRBAC is an Envoy HTTP RBAC filter config as xds/translate keeps it.
const httpRBAC = `{"rules": {"policies": {
  "web-api": {"permissions": [{"urlPath": {"path": {"prefix": "/api/"}}}],
              "principals": [{"authenticated": {"principalName": {"exact": "spiffe://default/web"}}}]},
  "health":  {"permissions": [{"andRules": {"rules": [{"header": {"name": ":method", "stringMatch": {"exact": "GET"}}},
                                                      {"urlPath": {"path": {"exact": "/health"}}}]}}],
              "principals": [{"any": true}]}}}}`

// netRBAC denies one principal at connection time.
const netRBAC = `{"statPrefix": "inbound", "rules": {"action": "DENY", "policies": {
  "evil": {"permissions": [{"any": true}], "principals": [{"authenticated": {"principalName": {"prefix": "spiffe://default/evil"}}}]}}}}`

func rbacFilters(t *testing.T) any {
	t.Helper()
	var h, n any
	if err := json.Unmarshal([]byte(httpRBAC), &h); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(netRBAC), &n); err != nil {
		t.Fatal(err)
	}
	return map[string]any{"filters": []map[string]any{{"stage": "network", "config": n}, {"stage": "http", "config": h}}}
}

func TestRBACByPrincipalAndPath(t *testing.T) {
	ca := mustCA(t, "mesh")
	chains := []map[string]any{mtlsChain("mtls", "inbound:backend", nil, rbacFilters(t))}
	srv := newAgent(t)
	srv.identity(ca.MustIssue("spiffe://default/backend", time.Hour, ECDSA), ca.PEM)
	srvAddr := srv.server(backend(t), chains...)
	// A route-level rbac plugin reads peer_identity: only web may use /route-level/.
	srv.put("/apisix/routes/inbound-rl", map[string]any{
		"uri": "/api/route-level/*", "priority": 10, "labels": map[string]string{"meshagent.route_config": "inbound:backend"},
		"plugins": map[string]any{"rbac": map[string]any{"filters": []map[string]any{{"stage": "http", "config": json.RawMessage(
			`{"rules": {"policies": {"only-web": {"permissions": [{"any": true}], "principals": [{"authenticated": {"principalName": {"exact": "spiffe://default/web"}}}]}}}}`)}}}},
		"upstream": map[string]any{"type": "roundrobin", "nodes": []map[string]any{{"host": "127.0.0.1", "port": 1, "weight": 1}}},
	})
	clients := map[string]string{}
	for _, id := range []string{"web", "other", "evil"} {
		c := newAgent(t)
		c.identity(ca.MustIssue("spiffe://default/"+id, time.Hour, ECDSA), ca.PEM)
		clients[id] = "http://" + c.client(srvAddr, "spiffe://default/backend")
	}
	cases := []struct {
		client, method, path string
		want                 int // 0: connection refused by network RBAC (502 at the client meshagent)
	}{
		{"web", "GET", "/api/orders", 200},
		{"web", "POST", "/api/orders", 200},
		{"web", "GET", "/admin", 403},
		{"web", "GET", "/health", 200},
		{"other", "GET", "/api/orders", 403},
		{"other", "GET", "/health", 200},
		{"other", "POST", "/health", 403},
		{"evil", "GET", "/health", 502},
		// Route level: web passes the listener's RBAC (/api/) and the
		// route's rbac plugin (then reaches a dead upstream: 502).
		{"web", "GET", "/api/route-level/x", 502},
	}
	for _, tc := range cases {
		req, _ := http.NewRequest(tc.method, clients[tc.client]+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s %s: %v", tc.client, tc.method, tc.path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s %s: status %d (%s), want %d", tc.client, tc.method, tc.path, resp.StatusCode, body, tc.want)
			continue
		}
		if tc.want == 403 && string(body) != "RBAC: access denied" {
			t.Errorf("%s %s %s: body %q", tc.client, tc.method, tc.path, body)
		}
	}
	srv.logs.waitFor(t, "connection denied by RBAC", "principal=spiffe://default/evil")
}

// The route-level rbac plugin refuses a principal the listener allows.
func TestRBACRoutePluginPeerIdentity(t *testing.T) {
	ca := mustCA(t, "mesh")
	srv := newAgent(t)
	srv.identity(ca.MustIssue("spiffe://default/backend", time.Hour, ECDSA), ca.PEM)
	srvAddr := srv.server(backend(t), mtlsChain("mtls", "inbound:backend", nil, nil))
	srv.put("/apisix/routes/inbound", map[string]any{
		"uri": "/*", "labels": map[string]string{"meshagent.route_config": "inbound:backend"},
		"plugins": map[string]any{"rbac": map[string]any{"filters": []map[string]any{{"stage": "http", "config": json.RawMessage(
			`{"rules": {"policies": {"only-web": {"permissions": [{"any": true}], "principals": [{"authenticated": {"principalName": {"exact": "spiffe://default/web"}}}]}}}}`)}}}},
		"upstream": map[string]any{"type": "roundrobin", "nodes": []map[string]any{{"host": "127.0.0.1", "port": portOf(backend(t)), "weight": 1}}},
	})
	for _, tc := range []struct {
		id   string
		want int
	}{{"web", 200}, {"other", 403}} {
		c := newAgent(t)
		c.identity(ca.MustIssue("spiffe://default/"+tc.id, time.Hour, ECDSA), ca.PEM)
		st, _, err := get(http.DefaultClient, "http://"+c.client(srvAddr, "spiffe://default/backend")+"/x")
		if err != nil || st != tc.want {
			t.Errorf("%s: status %d (%v), want %d", tc.id, st, err, tc.want)
		}
	}
}
