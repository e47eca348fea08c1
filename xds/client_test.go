package xds

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"

	"github.com/meshagent/meshagent/etcdcompat/store"
	"github.com/meshagent/meshagent/xds/controlplane"
	"github.com/meshagent/meshagent/xds/translate"
	"github.com/meshagent/meshagent/xds/xdstest"
)

const testNode = "sidecar~127.0.0.1~test.default~default.svc.cluster.local"

// storeJSON returns the objects under prefix, decoded as generic JSON.
func storeJSON(t testing.TB, st store.Store, prefix string) map[string]map[string]any {
	t.Helper()
	resp, err := st.Range(context.Background(), &pb.RangeRequest{Key: []byte(prefix), RangeEnd: []byte(prefix[:len(prefix)-1] + string(prefix[len(prefix)-1]+1))})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]any{}
	for _, kv := range resp.Kvs {
		var v map[string]any
		if err := json.Unmarshal(kv.Value, &v); err != nil {
			t.Fatalf("%s: %v", kv.Key, err)
		}
		out[string(kv.Key)] = v
	}
	return out
}

func nodesOf(up map[string]any) []string {
	var out []string
	ns, _ := up["nodes"].([]any)
	for _, n := range ns {
		m := n.(map[string]any)
		out = append(out, fmt.Sprintf("%v:%v/p%v", m["host"], m["port"], m["priority"]))
	}
	return out
}

type harness struct {
	cp     *controlplane.Server
	st     store.Store
	app    *Applier
	cl     *Client
	cancel context.CancelFunc
	done   chan error
}

func newHarness(t *testing.T, delta bool) *harness {
	t.Helper()
	cp, err := controlplane.Start("127.0.0.1:0", xdstest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	st := newStore(t)
	node, err := BuildNode(NodeConfig{Preset: PresetIstio, ID: testNode}, "test")
	if err != nil {
		t.Fatal(err)
	}
	app := NewApplier(st, ApplierOptions{Logger: xdstest.Logger(t)})
	cl, err := New(Options{Addr: cp.Addr(), Delta: delta, Node: node, Handler: app, Logger: xdstest.Logger(t),
		BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{cp: cp, st: st, app: app, cl: cl, cancel: cancel, done: make(chan error, 1)}
	go func() { h.done <- cl.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-h.done
		h.cp.Stop()
	})
	return h
}

func baseConfig(backendA, backendB string) controlplane.Resources {
	return controlplane.Resources{
		Clusters: []*controlplane.Cluster{controlplane.EDSCluster("svc-a"), controlplane.EDSCluster("svc-b")},
		Endpoints: []*controlplane.CLA{
			controlplane.Endpoints("svc-a", controlplane.Endpoint{Addr: backendA}),
			controlplane.Endpoints("svc-b", controlplane.Endpoint{Addr: backendB}),
		},
		Listeners: []*controlplane.Listener{controlplane.HTTPListener("http-8080", "127.0.0.1:18080", "routes-8080")},
		Routes: []*controlplane.RouteConfiguration{controlplane.RouteConfig("routes-8080",
			controlplane.VirtualHost("all", []string{"*"},
				controlplane.PrefixRoute("b", "/b", "svc-b"),
				controlplane.PrefixRoute("a", "/", "svc-a")))},
	}
}

// newStore returns an empty store, closed at cleanup (after the test's
// deferred calls, so after the clients writing to it stopped).
func newStore(t testing.TB) store.Store {
	t.Helper()
	st, err := store.New(store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// startClient creates a client with opts and runs it until stop is
// called; stop waits for Run to return.
func startClient(t testing.TB, opts Options) (cl *Client, stop func()) {
	t.Helper()
	cl, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = cl.Run(ctx) }()
	return cl, func() { cancel(); <-done }
}

func statusOf(c *Client, k translate.Kind) TypeStatus {
	for _, ts := range c.Status().Types {
		if ts.TypeURL == k.TypeURL() {
			return ts
		}
	}
	return TypeStatus{}
}

func TestClientLifecycle(t *testing.T) {
	for _, delta := range []bool{false, true} {
		t.Run(map[bool]string{false: "sotw", true: "delta"}[delta], func(t *testing.T) {
			h := newHarness(t, delta)
			ctx := context.Background()
			cfg := baseConfig("127.0.0.1:9001", "127.0.0.1:9002")
			if h.cl.Ready() {
				t.Fatal("ready before any config")
			}
			if err := h.cp.SetSnapshot(ctx, testNode, "v1", cfg); err != nil {
				t.Fatal(err)
			}
			// Initial sync.
			xdstest.WaitReady(t, h.cl, "")
			ups := storeJSON(t, h.st, translate.PrefixUpstreams)
			if got := nodesOf(ups[translate.PrefixUpstreams+"svc-a"]); strings.Join(got, ",") != "127.0.0.1:9001/p<nil>" {
				t.Fatalf("svc-a nodes %v (upstreams %v)", got, ups)
			}
			routes := storeJSON(t, h.st, translate.PrefixRoutes)
			if len(routes) != 2 {
				t.Fatalf("routes: %v", routes)
			}
			if l := storeJSON(t, h.st, translate.PrefixListeners); len(l) != 1 {
				t.Fatalf("listeners: %v", l)
			}
			for _, k := range translate.Kinds[:4] {
				if s := statusOf(h.cl, k); s.State != StateACKed || s.Nonce == "" {
					t.Fatalf("%s status %+v", k, s)
				}
			}
			checkWarmingOrder(t, h.cp.Requests())

			// Update: one endpoint moves, failover endpoint added.
			rev := h.st.Rev()
			cfg.Endpoints[0] = controlplane.Endpoints("svc-a",
				controlplane.Endpoint{Addr: "127.0.0.1:9011"},
				controlplane.Endpoint{Addr: "127.0.0.1:9012", Priority: 1})
			if err := h.cp.SetSnapshot(ctx, testNode, "v2", cfg); err != nil {
				t.Fatal(err)
			}
			xdstest.Eventually(t, "endpoint update", func() bool {
				got := nodesOf(storeJSON(t, h.st, translate.PrefixUpstreams)[translate.PrefixUpstreams+"svc-a"])
				return strings.Join(got, ",") == "127.0.0.1:9011/p<nil>,127.0.0.1:9012/p-1"
			})
			if d := h.st.Rev() - rev; d != 1 {
				t.Fatalf("an EDS change of one cluster moved the revision by %d, want 1", d)
			}

			// Removal: cluster svc-b and its route go away.
			cfg.Clusters = cfg.Clusters[:1]
			cfg.Endpoints = cfg.Endpoints[:1]
			// The cache marshals lazily: change a copy, never a pushed message.
			rc := proto.Clone(cfg.Routes[0]).(*controlplane.RouteConfiguration)
			rc.VirtualHosts[0].Routes = rc.VirtualHosts[0].Routes[1:]
			cfg.Routes = []*controlplane.RouteConfiguration{rc}
			if err := h.cp.SetSnapshot(ctx, testNode, "v3", cfg); err != nil {
				t.Fatal(err)
			}
			xdstest.Eventually(t, "removal", func() bool {
				_, ok := storeJSON(t, h.st, translate.PrefixUpstreams)[translate.PrefixUpstreams+"svc-b"]
				return !ok && len(storeJSON(t, h.st, translate.PrefixRoutes)) == 1
			})

			// A bad resource: NACKed with its detail, old config kept.
			xdstest.Eventually(t, "v3 acked", func() bool { return statusOf(h.cl, translate.KindRouteConfig).Version == "v3" })
			rev = h.st.Rev()
			bad := baseConfig("127.0.0.1:9011", "127.0.0.1:9002")
			bad.Clusters, bad.Endpoints = cfg.Clusters, cfg.Endpoints
			bad.Routes = []*controlplane.RouteConfiguration{controlplane.RouteConfig("routes-8080",
				controlplane.VirtualHost("all", []string{"*"}, &routev3.Route{
					Name: "broken",
					Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{
						SafeRegex: &matcherv3.RegexMatcher{Regex: "/api/(v1"}}},
					Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "svc-a"}}},
				}))}
			if err := h.cp.SetSnapshot(ctx, testNode, "v4", bad); err != nil {
				t.Fatal(err)
			}
			xdstest.Eventually(t, "NACK", func() bool { return statusOf(h.cl, translate.KindRouteConfig).State == StateNACKed })
			s := statusOf(h.cl, translate.KindRouteConfig)
			for _, want := range []string{`route_configuration "routes-8080"`, "routes[0] (broken)", "match.safe_regex", "does not compile"} {
				if !strings.Contains(s.NACKMessage, want) {
					t.Errorf("NACK message %q lacks %q", s.NACKMessage, want)
				}
			}
			if s.Version != "v3" {
				t.Errorf("version after NACK = %q, want the last ACKed v3", s.Version)
			}
			xdstest.Eventually(t, "NACK at the server", func() bool { return len(h.cp.NACKs()) > 0 })
			if !strings.Contains(h.cp.NACKs()[0], "does not compile") {
				t.Errorf("server saw error_detail %q", h.cp.NACKs()[0])
			}
			if h.st.Rev() != rev {
				t.Errorf("a NACKed push wrote to the store (rev %d -> %d)", rev, h.st.Rev())
			}
			if len(storeJSON(t, h.st, translate.PrefixRoutes)) != 1 {
				t.Error("old routes not kept after NACK")
			}

			// Control-plane restart on the same address: the last config is
			// served throughout, then a clean resync without rewrites.
			if err := h.cp.SetSnapshot(ctx, testNode, "v5", cfg); err != nil {
				t.Fatal(err)
			}
			xdstest.Eventually(t, "v5", func() bool { return statusOf(h.cl, translate.KindRouteConfig).State == StateACKed })
			rev = h.st.Rev()
			addr := h.cp.Addr()
			h.cp.Stop()
			xdstest.Eventually(t, "disconnect", func() bool { return !h.cl.Status().Connected })
			if len(storeJSON(t, h.st, translate.PrefixRoutes)) != 1 || !h.cl.Ready() {
				t.Fatal("config not kept while disconnected")
			}
			var lis net.Listener
			xdstest.Eventually(t, "rebind", func() bool {
				var err error
				lis, err = net.Listen("tcp", addr)
				return err == nil
			})
			h.cp = controlplane.Serve(lis, xdstest.Logger(t))
			if err := h.cp.SetSnapshot(ctx, testNode, "v6", cfg); err != nil {
				t.Fatal(err)
			}
			xdstest.Eventually(t, "resync", func() bool {
				st := h.cl.Status()
				return st.Connected && st.Reconnect > 0 && statusOf(h.cl, translate.KindCluster).ACKs > 0 && len(h.cp.Requests()) >= 4
			})
			xdstest.Eventually(t, "resync acked", func() bool {
				return statusOf(h.cl, translate.KindListener).State == StateACKed && statusOf(h.cl, translate.KindEndpoints).State == StateACKed
			})
			// The first CDS request of the new stream carries what is known.
			for _, r := range h.cp.Requests() {
				if r.TypeURL != translate.KindCluster.TypeURL() {
					continue
				}
				if delta && r.InitialVersions["svc-a"] == "" {
					t.Errorf("delta resubscription without initial_resource_versions: %+v", r)
				}
				if !delta && r.Version != "v5" {
					t.Errorf("SotW resubscription with version %q, want the last ACKed v5", r.Version)
				}
				break
			}
			time.Sleep(50 * time.Millisecond)
			if h.st.Rev() != rev {
				t.Errorf("resync of an unchanged config moved the revision %d -> %d", rev, h.st.Rev())
			}
		})
	}
}

// checkWarmingOrder asserts Envoy's order on the wire: EDS is requested
// only after a CDS response, RDS only after an LDS response, and a named
// type is never opened with an empty (wildcard) request.
func checkWarmingOrder(t *testing.T, reqs []controlplane.Request) {
	t.Helper()
	acked := map[string]bool{}
	opened := map[string]bool{}
	parent := map[string]string{
		translate.KindEndpoints.TypeURL():   translate.KindCluster.TypeURL(),
		translate.KindRouteConfig.TypeURL(): translate.KindListener.TypeURL(),
	}
	for i, r := range reqs {
		if r.Nonce != "" {
			acked[r.TypeURL] = true
		}
		p, named := parent[r.TypeURL]
		if !named {
			continue
		}
		if !acked[p] {
			t.Errorf("request %d for %s before any %s response", i, r.TypeURL, p)
		}
		if !opened[r.TypeURL] && len(r.Names) == 0 {
			t.Errorf("request %d opens %s with no names (a wildcard)", i, r.TypeURL)
		}
		opened[r.TypeURL] = true
	}
	if !opened[translate.KindEndpoints.TypeURL()] || !opened[translate.KindRouteConfig.TypeURL()] {
		t.Errorf("EDS or RDS never requested: %+v", reqs)
	}
}

// TestRestartOverExistingStore: a new client (a restarted meshagent with
// a persisted store) does not rewrite objects that are still current and
// deletes, before reporting ready, those the control plane no longer has.
func TestRestartOverExistingStore(t *testing.T) {
	cp, err := controlplane.Start("127.0.0.1:0", xdstest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Stop()
	st := newStore(t)
	node, _ := BuildNode(NodeConfig{ID: testNode}, "test")
	run := func(version string, cfg controlplane.Resources) {
		t.Helper()
		if err := cp.SetSnapshot(context.Background(), testNode, version, cfg); err != nil {
			t.Fatal(err)
		}
		cl, stop := startClient(t, Options{Addr: cp.Addr(), Node: node, Handler: NewApplier(st, ApplierOptions{}), Logger: xdstest.Logger(t)})
		defer stop()
		xdstest.WaitReady(t, cl, "")
	}
	run("v1", baseConfig("127.0.0.1:9001", "127.0.0.1:9002"))
	modRev := func(key string) int64 {
		resp, err := st.Range(context.Background(), &pb.RangeRequest{Key: []byte(key)})
		if err != nil || len(resp.Kvs) != 1 {
			return 0
		}
		return resp.Kvs[0].ModRevision
	}
	keepRev := modRev(translate.PrefixUpstreams + "svc-a")
	if keepRev == 0 || modRev(translate.PrefixUpstreams+"svc-b") == 0 {
		t.Fatal("first run did not write both upstreams")
	}
	// Second run: same svc-a, svc-b gone from the control plane.
	cfg := baseConfig("127.0.0.1:9001", "127.0.0.1:9002")
	cfg.Clusters, cfg.Endpoints = cfg.Clusters[:1], cfg.Endpoints[:1]
	cfg.Routes[0].VirtualHosts[0].Routes = cfg.Routes[0].VirtualHosts[0].Routes[1:]
	run("v1", cfg)
	if got := modRev(translate.PrefixUpstreams + "svc-a"); got != keepRev {
		t.Errorf("unchanged upstream rewritten: mod revision %d -> %d", keepRev, got)
	}
	if modRev(translate.PrefixUpstreams+"svc-b") != 0 {
		t.Error("stale upstream svc-b of the earlier run kept")
	}
	if n := len(storeJSON(t, st, translate.PrefixRoutes)); n != 1 {
		t.Errorf("%d routes after restart, want 1", n)
	}
}

// TestInitialFetchTimeout: an EDS cluster whose endpoints never come does
// not hold readiness forever (Envoy's initial_fetch_timeout), unless the
// timeout is disabled.
func TestInitialFetchTimeout(t *testing.T) {
	for _, c := range []struct {
		timeout time.Duration
		ready   bool
	}{{300 * time.Millisecond, true}, {-1, false}} {
		t.Run(c.timeout.String(), func(t *testing.T) {
			cp, err := controlplane.Start("127.0.0.1:0", xdstest.Logger(t))
			if err != nil {
				t.Fatal(err)
			}
			defer cp.Stop()
			cfg := baseConfig("127.0.0.1:9001", "127.0.0.1:9002")
			cfg.Endpoints = cfg.Endpoints[:1] // svc-b's endpoints never arrive
			if err := cp.SetSnapshot(context.Background(), testNode, "v1", cfg); err != nil {
				t.Fatal(err)
			}
			st := newStore(t)
			node, _ := BuildNode(NodeConfig{ID: testNode}, "test")
			cl, stop := startClient(t, Options{Addr: cp.Addr(), Node: node, Handler: NewApplier(st, ApplierOptions{}), Logger: xdstest.Logger(t), InitialFetchTimeout: c.timeout})
			defer stop()
			select {
			case <-cl.ReadyCh():
				if !c.ready {
					t.Fatal("ready although endpoints are missing and the timeout is disabled")
				}
				if _, ok := storeJSON(t, st, translate.PrefixUpstreams)[translate.PrefixUpstreams+"svc-a"]; !ok {
					t.Fatal("ready without the endpoints that did arrive")
				}
			case <-time.After(1500 * time.Millisecond):
				if c.ready {
					t.Fatalf("not ready after the initial fetch timeout: %+v", cl.Status())
				}
			}
		})
	}
}
