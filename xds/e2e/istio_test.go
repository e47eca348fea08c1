package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshagent/meshagent/dataplane"
	"github.com/meshagent/meshagent/etcdcompat/apisix"
	"github.com/meshagent/meshagent/etcdcompat/store"
	"github.com/meshagent/meshagent/xds"
	"github.com/meshagent/meshagent/xds/controlplane"
	"github.com/meshagent/meshagent/xds/translate"
	"github.com/meshagent/meshagent/xds/xdstest"
)

// istioConfig is shaped like istiod's output for a sidecar calling the
// "reviews" service (VirtualService: end-user jason -> v2, otherwise 80/20
// v1/v2; DestinationRule subsets v1, v2) and a TCP service "db":
// virtualOutbound (use_original_dst, passthrough default chain),
// per-service outbound listeners with bind_to_port false, RDS named by
// port, EDS clusters named outbound|<port>|<subset>|<fqdn>, and
// virtualInbound with an inline inbound route table.
func istioConfig(outbound, svcPort, dbPort, inbound, appPort int, v1, v2, db, app string) controlplane.Resources {
	fqdn := "reviews.default.svc.cluster.local"
	sp := strconv.Itoa(svcPort)
	c1, c2 := "outbound|"+sp+"|v1|"+fqdn, "outbound|"+sp+"|v2|"+fqdn
	dbc := "outbound|" + strconv.Itoa(dbPort) + "||db.default.svc.cluster.local"
	inc := "inbound|" + strconv.Itoa(appPort) + "||"
	eds := func(name string) *clusterv3.Cluster {
		c := controlplane.EDSCluster(name)
		c.EdsClusterConfig.ServiceName = name
		c.ConnectTimeout = durationpb.New(10 * time.Second)
		return c
	}
	passthrough := &clusterv3.Cluster{Name: "PassthroughCluster", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
		LbPolicy: clusterv3.Cluster_CLUSTER_PROVIDED, ConnectTimeout: durationpb.New(10 * time.Second)}
	inboundCluster := controlplane.StaticCluster(inc, app)

	jason := controlplane.PrefixRoute("reviews-jason", "/", c2)
	jason.Match.Headers = []*routev3.HeaderMatcher{{Name: "end-user", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
		StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "jason"}}}}}
	split := controlplane.WeightedRoute("reviews-split", "/", controlplane.WeightedCluster{Name: c1, Weight: 80}, controlplane.WeightedCluster{Name: c2, Weight: 20})
	for _, r := range []*routev3.Route{jason, split} {
		r.GetRoute().Timeout = durationpb.New(0)
		r.GetRoute().RetryPolicy = &routev3.RetryPolicy{RetryOn: "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes", NumRetries: wrapperspb.UInt32(2)}
	}
	rc := controlplane.RouteConfig(sp,
		controlplane.VirtualHost(fqdn+":"+sp, []string{fqdn, fqdn + ":" + sp, "reviews", "reviews:" + sp, "reviews.default", "reviews.default:" + sp}, jason, split),
		controlplane.VirtualHost("allow_any", []string{"*"}, controlplane.PrefixRoute("allow_any", "/", "PassthroughCluster")))

	virtualOutbound := &listenerv3.Listener{
		Name: "virtualOutbound", Address: controlplane.SocketAddress("127.0.0.1:" + strconv.Itoa(outbound)),
		UseOriginalDst: wrapperspb.Bool(true), TrafficDirection: corev3.TrafficDirection_OUTBOUND,
		FilterChains:       []*listenerv3.FilterChain{},
		DefaultFilterChain: controlplane.TCPFilterChain("PassthroughCluster", "PassthroughCluster"),
	}
	svcListener := controlplane.HTTPListener("0.0.0.0_"+sp, "0.0.0.0:"+sp, sp)
	svcListener.BindToPort = wrapperspb.Bool(false)
	svcListener.TrafficDirection = corev3.TrafficDirection_OUTBOUND
	dbListener := &listenerv3.Listener{Name: "0.0.0.0_" + strconv.Itoa(dbPort), Address: controlplane.SocketAddress("0.0.0.0:" + strconv.Itoa(dbPort)),
		BindToPort: wrapperspb.Bool(false), TrafficDirection: corev3.TrafficDirection_OUTBOUND,
		FilterChains: []*listenerv3.FilterChain{controlplane.TCPFilterChain(dbc, dbc)}}
	inChain := controlplane.HTTPFilterChain(controlplane.HCM("inbound_0.0.0.0_"+strconv.Itoa(appPort), "",
		controlplane.RouteConfig("inbound|"+strconv.Itoa(appPort)+"||", controlplane.VirtualHost("inbound|http|"+strconv.Itoa(appPort), []string{"*"},
			controlplane.PrefixRoute("default", "/", inc)))))
	inChain.FilterChainMatch = &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(uint32(appPort))}
	virtualInbound := &listenerv3.Listener{Name: "virtualInbound", Address: controlplane.SocketAddress("127.0.0.1:" + strconv.Itoa(inbound)),
		TrafficDirection: corev3.TrafficDirection_INBOUND, FilterChains: []*listenerv3.FilterChain{inChain},
		ListenerFilters:    []*listenerv3.ListenerFilter{{Name: "envoy.filters.listener.original_dst"}},
		DefaultFilterChain: controlplane.TCPFilterChain("InboundPassthroughCluster", "PassthroughCluster")}

	return controlplane.Resources{
		Clusters: []*controlplane.Cluster{eds(c1), eds(c2), eds(dbc), passthrough, inboundCluster},
		Endpoints: []*controlplane.CLA{
			controlplane.Endpoints(c1, controlplane.Endpoint{Addr: v1}),
			controlplane.Endpoints(c2, controlplane.Endpoint{Addr: v2}),
			controlplane.Endpoints(dbc, controlplane.Endpoint{Addr: db}),
		},
		Listeners: []*controlplane.Listener{virtualOutbound, svcListener, dbListener, virtualInbound},
		Routes:    []*controlplane.RouteConfiguration{rc},
	}
}

func TestIstioShapedSnapshot(t *testing.T) {
	v1, v2, db, app := echoBackend(t, "reviews-v1"), echoBackend(t, "reviews-v2"), echoBackend(t, "db"), echoBackend(t, "app")
	outbound, svcPort, dbPort, inbound := freePort(t), freePort(t), freePort(t), freePort(t)
	_, ap, _ := net.SplitHostPort(app)
	appPort, _ := strconv.Atoi(ap)
	cp, err := controlplane.Start("127.0.0.1:0", xdstest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Stop()
	node := xds.NodeConfig{Preset: xds.PresetIstio, IP: "127.0.0.1", Pod: "productpage-v1-123", Namespace: "default"}
	n, err := xds.BuildNode(node, "test")
	if err != nil {
		t.Fatal(err)
	}
	if want := "sidecar~127.0.0.1~productpage-v1-123.default~default.svc.cluster.local"; n.GetId() != want {
		t.Fatalf("istio node id %q, want %q", n.GetId(), want)
	}
	for _, k := range []string{"ISTIO_VERSION", "CLUSTER_ID", "NAMESPACE", "INSTANCE_IPS", "MESH_ID"} {
		if _, ok := n.GetMetadata().GetFields()[k]; !ok {
			t.Errorf("istio metadata lacks %s", k)
		}
	}
	if err := cp.SetSnapshot(context.Background(), n.GetId(), "istio-1", istioConfig(outbound, svcPort, dbPort, inbound, appPort, v1, v2, db, app)); err != nil {
		t.Fatal(err)
	}

	// The sidecar, with an original-destination hook standing in for
	// iptables REDIRECT: connections to virtualOutbound "were" to odst.
	st, err := store.New(store.Options{Decoder: apisix.Decode})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	app2 := xds.NewApplier(st, xds.ApplierOptions{Logger: xdstest.Logger(t)})
	cl, err := xds.New(xds.Options{Addr: cp.Addr(), Node: n, Handler: app2, Logger: xdstest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	var odst atomic.Value
	dp, err := dataplane.New(dataplane.Options{Source: st, Logger: xdstest.Logger(t), OriginalDst: func(net.Conn) (netip.AddrPort, error) {
		return odst.Load().(netip.AddrPort), nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = cl.Run(ctx) }()
	if err := dp.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer dp.Close()
	xdstest.WaitReady(t, cl, "")
	waitApplied(t, dp, st)

	xdstest.Eventually(t, "listeners bound", func() bool {
		if _, ok := dp.ListenerAddr(translate.ObjectID("virtualOutbound")); !ok {
			return false
		}
		// Per-service listeners are bind_to_port=false: in force, unbound.
		for _, n := range []string{"0.0.0.0_" + strconv.Itoa(svcPort), "0.0.0.0_" + strconv.Itoa(dbPort)} {
			if _, bound := dp.ListenerAddr(translate.ObjectID(n)); bound || !dp.HasListener(translate.ObjectID(n)) {
				return false
			}
		}
		return true
	})

	// Translation: listeners with their roles, RDS table, EDS subsets.
	objs := dumpStore(t, st, "/meshagent/listeners/")
	for name, want := range map[string]string{
		"virtualOutbound":                  `"use_original_dst":true`,
		"0.0.0.0_" + strconv.Itoa(svcPort): `"meshagent.bind_to_port":"false"`,
		"virtualInbound":                   `"destination_port":` + strconv.Itoa(appPort),
		"virtualInbound ":                  `"meshagent.original_dst_filter":"true"`,
	} {
		name = strings.TrimSpace(name)
		v, ok := objs[translate.PrefixListeners+translate.ObjectID(name)]
		if !ok || !strings.Contains(string(v), want) {
			t.Errorf("listener %s: %s lacks %s", name, v, want)
		}
	}
	if got := len(dumpStore(t, st, translate.PrefixRoutes)); got != 4 {
		t.Errorf("%d routes, want 4 (2 reviews, allow_any, inbound)", got)
	}

	dial := func(to string, hdr map[string]string) (int, string) {
		odst.Store(netip.MustParseAddrPort(to))
		return getVia(t, "127.0.0.1:"+strconv.Itoa(outbound), "reviews:"+strconv.Itoa(svcPort), hdr)
	}
	// Header route: end-user jason always gets v2.
	for i := 0; i < 5; i++ {
		if code, body := dial("127.0.0.1:"+strconv.Itoa(svcPort), map[string]string{"end-user": "jason"}); code != 200 || !strings.HasPrefix(body, "reviews-v2 ") {
			t.Fatalf("jason: %d %q", code, body)
		}
	}
	// Weighted split 80/20 over the subsets.
	count := map[string]int{}
	for i := 0; i < 50; i++ {
		code, body := dial("127.0.0.1:"+strconv.Itoa(svcPort), nil)
		if code != 200 {
			t.Fatalf("split: %d %q", code, body)
		}
		count[strings.Fields(body)[0]]++
	}
	if count["reviews-v1"] < 35 || count["reviews-v1"] > 45 || count["reviews-v1"]+count["reviews-v2"] != 50 {
		t.Errorf("80/20 split gave %v", count)
	}
	// TCP service through its per-service listener.
	if code, body := dial("127.0.0.1:"+strconv.Itoa(dbPort), nil); code != 200 || !strings.HasPrefix(body, "db ") {
		t.Errorf("tcp service: %d %q", code, body)
	}
	// No listener for the destination: passthrough to it.
	if code, body := dial(app, nil); code != 200 || !strings.HasPrefix(body, "app ") {
		t.Errorf("passthrough: %d %q", code, body)
	}
	// HTTP to an unknown host on a port with a route table: the allow_any
	// route's PassthroughCluster (ORIGINAL_DST) forwards to the address
	// the client dialed, pooled per destination.
	external := echoBackendOn(t, "127.0.0.2:"+strconv.Itoa(svcPort), "external")
	for i := 0; i < 3; i++ {
		odst.Store(netip.MustParseAddrPort(external))
		code, body := getVia(t, "127.0.0.1:"+strconv.Itoa(outbound), "unknown.example:"+strconv.Itoa(svcPort), nil)
		if code != 200 || !strings.HasPrefix(body, "external unknown.example:"+strconv.Itoa(svcPort)+" ") {
			t.Fatalf("allow_any -> PassthroughCluster: %d %q", code, body)
		}
	}
	// virtualInbound, a port no inbound chain names: the default tcp_proxy
	// chain's PassthroughCluster connects to the original destination.
	odst.Store(netip.MustParseAddrPort(external))
	if code, body := getVia(t, "127.0.0.1:"+strconv.Itoa(inbound), "undeclared.example", nil); code != 200 || !strings.HasPrefix(body, "external ") {
		t.Errorf("inbound passthrough over tcp_proxy: %d %q", code, body)
	}
	// An EDS change moves traffic (v1 endpoint replaced by v2's backend).
	cfg := istioConfig(outbound, svcPort, dbPort, inbound, appPort, v2, v2, db, app)
	if err := cp.SetSnapshot(context.Background(), n.GetId(), "istio-2", cfg); err != nil {
		t.Fatal(err)
	}
	xdstest.Eventually(t, "eds change served", func() bool {
		_, body := dial("127.0.0.1:"+strconv.Itoa(svcPort), nil)
		_, body2 := dial("127.0.0.1:"+strconv.Itoa(svcPort), nil)
		return strings.HasPrefix(body, "reviews-v2 ") && strings.HasPrefix(body2, "reviews-v2 ")
	})
}

// echoBackendOn is an HTTP server on addr answering "name host path";
// the test is skipped when addr cannot be bound.
func echoBackendOn(t *testing.T, addr, name string) string {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", addr, err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s %s", name, r.Host, r.URL.Path)
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return l.Addr().String()
}

// getVia sends GET / with Host host over a fresh connection to addr.
func getVia(t *testing.T, addr, host string, hdr map[string]string) (int, string) {
	t.Helper()
	tr := &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, "http://"+host+"/reviews/1", nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("GET via %s: %v", addr, err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	_, _ = fmt.Fprint(&b, readAll(resp))
	return resp.StatusCode, b.String()
}
