package translate

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultcommon "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	lrlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshagent/meshagent/etcdcompat/apisix"
	"github.com/meshagent/meshagent/xds/controlplane"
)

// stage pushes msgs of kind k and returns the puts by key, each validated
// by the APISIX decoder.
func stage(t *testing.T, tr *Translator, k Kind, msgs ...proto.Message) map[string]string {
	t.Helper()
	var rs []Resource
	for _, m := range msgs {
		rs = append(rs, Resource{Name: ResourceName(m), Version: "v1", Msg: m})
	}
	p, err := tr.Stage(k, rs, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.Commit()
	out := map[string]string{}
	for _, o := range p.Puts {
		if _, err := apisix.Decode([]byte(o.Key), o.Value); err != nil {
			t.Fatalf("%s rejected by apisix.Decode: %v\n%s", o.Key, err, o.Value)
		}
		out[o.Key] = string(o.Value)
	}
	return out
}

// field extracts a top-level JSON field of an object as compact JSON.
func field(t *testing.T, obj, name string) string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(obj), &m); err != nil {
		t.Fatal(err)
	}
	return string(m[name])
}

func TestClusterTranslation(t *testing.T) {
	withLB := func(lb clusterv3.Cluster_LbPolicy) *clusterv3.Cluster {
		c := controlplane.StaticCluster("c", "10.0.0.1:80")
		c.LbPolicy = lb
		return c
	}
	cases := []struct {
		name   string
		c      *clusterv3.Cluster
		fields map[string]string
	}{
		{"round robin", withLB(clusterv3.Cluster_ROUND_ROBIN), map[string]string{"type": `"roundrobin"`, "retries": "0"}},
		{"random", withLB(clusterv3.Cluster_RANDOM), map[string]string{"type": `"roundrobin"`}},
		{"least request", withLB(clusterv3.Cluster_LEAST_REQUEST), map[string]string{"type": `"least_conn"`}},
		{"ring hash", withLB(clusterv3.Cluster_RING_HASH), map[string]string{"type": `"chash"`, "hash_on": `"vars"`, "key": `"remote_addr"`}},
		{"maglev", withLB(clusterv3.Cluster_MAGLEV), map[string]string{"type": `"chash"`}},
		{"sub-second connect timeout", func() *clusterv3.Cluster {
			c := withLB(clusterv3.Cluster_ROUND_ROBIN)
			c.ConnectTimeout = durationpb.New(250 * time.Millisecond)
			return c
		}(), map[string]string{"timeout": `{"connect":0.25,"send":3600,"read":3600}`}},
		{"endpoints: priority, health, weight", func() *clusterv3.Cluster {
			c := withLB(clusterv3.Cluster_ROUND_ROBIN)
			c.LoadAssignment = controlplane.Endpoints("c",
				controlplane.Endpoint{Addr: "10.0.0.1:80", Weight: 3},
				controlplane.Endpoint{Addr: "10.0.0.2:80", Health: corev3.HealthStatus_UNHEALTHY},
				controlplane.Endpoint{Addr: "10.0.0.3:80", Health: corev3.HealthStatus_DRAINING},
				controlplane.Endpoint{Addr: "10.0.0.4:80", Health: corev3.HealthStatus_HEALTHY},
				controlplane.Endpoint{Addr: "10.0.1.1:80", Priority: 1},
				controlplane.Endpoint{Addr: "[fd00::1]:80", Priority: 2})
			return c
		}(), map[string]string{"nodes": `[{"host":"10.0.0.1","port":80,"weight":3},{"host":"10.0.0.4","port":80,"weight":1},{"host":"10.0.1.1","port":80,"weight":1,"priority":-1},{"host":"[fd00::1]","port":80,"weight":1,"priority":-2}]`}},
		{"health checks and outlier detection", func() *clusterv3.Cluster {
			c := withLB(clusterv3.Cluster_ROUND_ROBIN)
			c.HealthChecks = []*corev3.HealthCheck{{
				Timeout: durationpb.New(500 * time.Millisecond), Interval: durationpb.New(2 * time.Second),
				HealthyThreshold: wrapperspb.UInt32(2), UnhealthyThreshold: wrapperspb.UInt32(3),
				HealthChecker: &corev3.HealthCheck_HttpHealthCheck_{HttpHealthCheck: &corev3.HealthCheck_HttpHealthCheck{
					Path: "/healthz", ExpectedStatuses: []*typev3.Int64Range{{Start: 200, End: 204}}}},
			}}
			c.OutlierDetection = &clusterv3.OutlierDetection{Consecutive_5Xx: wrapperspb.UInt32(4)}
			return c
		}(), map[string]string{"checks": `{"active":{"type":"http","timeout":0.5,"http_path":"/healthz","healthy":{"interval":2,"http_statuses":[200,201,202,203],"successes":2},"unhealthy":{"interval":2,"http_failures":3,"tcp_failures":3}},"passive":{"type":"http","unhealthy":{"http_statuses":[500,502,503,504],"tcp_failures":5,"timeouts":5,"http_failures":4}}}`}},
		{"original destination (PassthroughCluster), header mode", func() *clusterv3.Cluster {
			c := withLB(clusterv3.Cluster_CLUSTER_PROVIDED)
			c.LoadAssignment = nil
			c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST}
			c.LbConfig = &clusterv3.Cluster_OriginalDstLbConfig_{OriginalDstLbConfig: &clusterv3.Cluster_OriginalDstLbConfig{
				UseHttpHeader: true, HttpHeaderName: "x-dst"}}
			return c
		}(), map[string]string{"discovery_type": `"original_dst"`, "discovery_args": `{"http_header_name":"x-dst","use_http_header":true}`}},
		{"outlier detection alone gets a re-admitting probe", func() *clusterv3.Cluster {
			c := withLB(clusterv3.Cluster_ROUND_ROBIN)
			c.OutlierDetection = &clusterv3.OutlierDetection{BaseEjectionTime: durationpb.New(10 * time.Second)}
			return c
		}(), map[string]string{"checks": `{"active":{"type":"tcp","healthy":{"interval":10,"successes":1},"unhealthy":{"interval":10,"tcp_failures":2}},"passive":{"type":"http","unhealthy":{"http_statuses":[500,502,503,504],"tcp_failures":5,"timeouts":5,"http_failures":5}}}`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := stage(t, New(nil), KindCluster, c.c)
			up, ok := out[PrefixUpstreams+"c"]
			if !ok {
				t.Fatalf("no upstream: %v", out)
			}
			for f, want := range c.fields {
				if got := field(t, up, f); got != want {
					t.Errorf("%s = %s, want %s", f, got, want)
				}
			}
		})
	}
}

func TestClusterRejected(t *testing.T) {
	custom := controlplane.StaticCluster("c", "10.0.0.1:80")
	custom.ClusterDiscoveryType = &clusterv3.Cluster_ClusterType{ClusterType: &clusterv3.Cluster_CustomClusterType{Name: "envoy.clusters.aggregate"}}
	badPort := controlplane.StaticCluster("c", "10.0.0.1:80")
	badPort.LoadAssignment.Endpoints[0].LbEndpoints[0].GetEndpoint().Address.GetSocketAddress().PortSpecifier = &corev3.SocketAddress_PortValue{PortValue: 0}
	provided := controlplane.StaticCluster("c", "10.0.0.1:80")
	provided.LbPolicy = clusterv3.Cluster_CLUSTER_PROVIDED
	for _, c := range []struct {
		name string
		c    *clusterv3.Cluster
		want string
	}{
		{"custom type", custom, `cluster "c": cluster_type: custom cluster type "envoy.clusters.aggregate"`},
		{"port 0", badPort, `cluster "c": endpoints: endpoints[0].lb_endpoints[0].endpoint.address: port_value 0`},
		{"cluster provided lb", provided, `cluster "c": lb_policy: CLUSTER_PROVIDED`},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr := New(nil)
			_, err := tr.Stage(KindCluster, []Resource{{Name: "c", Msg: c.c}}, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want %q", err, c.want)
			}
			if tr.Has(KindCluster, "c") {
				t.Fatal("a rejected cluster was kept")
			}
		})
	}
}

func TestEDSWarmingAndIdempotence(t *testing.T) {
	tr := New(nil)
	c := controlplane.EDSCluster("svc")
	if out := stage(t, tr, KindCluster, c); len(out) != 0 {
		t.Fatalf("an EDS cluster without endpoints produced %v", out)
	}
	if got := tr.Wanted(KindEndpoints); len(got) != 1 || got[0] != "svc" {
		t.Fatalf("wanted %v", got)
	}
	cla := controlplane.Endpoints("svc", controlplane.Endpoint{Addr: "10.0.0.1:80"})
	out := stage(t, tr, KindEndpoints, cla)
	if _, ok := out[PrefixUpstreams+"svc"]; !ok || len(out) != 1 {
		t.Fatalf("after endpoints: %v", out)
	}
	// A re-push of equal resources changes nothing.
	p, err := tr.Stage(KindEndpoints, []Resource{{Name: "svc", Version: "v2", Msg: proto.Clone(cla)}}, nil)
	if err != nil || !p.Empty() {
		t.Fatalf("re-push: %v %+v", err, p)
	}
	p.Commit()
	if tr.Version(KindEndpoints, "svc") != "v1" {
		t.Fatalf("version of an unchanged resource moved to %q", tr.Version(KindEndpoints, "svc"))
	}
	// Removing the cluster deletes its upstream.
	p, err = tr.Stage(KindCluster, nil, []string{"svc"})
	if err != nil || len(p.Deletes) != 1 || p.Deletes[0] != PrefixUpstreams+"svc" {
		t.Fatalf("removal: %v %+v", err, p)
	}
	p.Rollback()
	if !tr.Has(KindCluster, "svc") {
		t.Fatal("rollback lost the cluster")
	}
	if p2, err := tr.Stage(KindCluster, nil, []string{"svc"}); err != nil || len(p2.Deletes) != 1 {
		t.Fatalf("removal after rollback: %v %+v", err, p2)
	}
}

func TestRouteActions(t *testing.T) {
	route := func(m func(*routev3.Route)) *routev3.RouteConfiguration {
		r := controlplane.PrefixRoute("r", "/api", "svc")
		m(r)
		return controlplane.RouteConfig("rc", controlplane.VirtualHost("vh", []string{"*"}, r))
	}
	cases := []struct {
		name   string
		rc     *routev3.RouteConfiguration
		fields map[string]string
	}{
		{"cluster and default timeout", route(func(*routev3.Route) {}), map[string]string{
			"upstream_id": `"svc"`, "uri": `"/api*"`, "timeout": `{"connect":15,"send":15,"read":15}`}},
		{"sub-second timeout", route(func(r *routev3.Route) { r.GetRoute().Timeout = durationpb.New(1500 * time.Millisecond) }), map[string]string{
			"timeout": `{"connect":1.5,"send":1.5,"read":1.5}`}},
		{"timeout disabled", route(func(r *routev3.Route) { r.GetRoute().Timeout = durationpb.New(0) }), map[string]string{"timeout": ``}},
		{"weighted clusters", controlplane.RouteConfig("rc", controlplane.VirtualHost("vh", []string{"*"},
			controlplane.WeightedRoute("r", "/", controlplane.WeightedCluster{Name: "v1", Weight: 80}, controlplane.WeightedCluster{Name: "v2", Weight: 20}))),
			map[string]string{"upstream_id": `"v1"`, "plugins": `{"traffic-split":{"rules":[{"weighted_upstreams":[{"upstream_id":"v1","weight":80},{"upstream_id":"v2","weight":20}]}]}}`}},
		{"prefix rewrite and host", route(func(r *routev3.Route) {
			r.GetRoute().PrefixRewrite = "/v2/"
			r.GetRoute().HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: "backend.internal"}
		}), map[string]string{"plugins": `{"proxy-rewrite":{"host":"backend.internal","regex_uri":["^/api(.*)","/v2/$1"]}}`}},
		{"request and response headers", route(func(r *routev3.Route) {
			r.RequestHeadersToAdd = []*corev3.HeaderValueOption{
				{Header: &corev3.HeaderValue{Key: "x-a", Value: "1"}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD},
				{Header: &corev3.HeaderValue{Key: "x-b", Value: "2"}}}
			r.RequestHeadersToRemove = []string{"x-internal"}
			r.ResponseHeadersToAdd = []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-served-by", Value: "mesh"}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}}
			r.ResponseHeadersToRemove = []string{"server"}
		}), map[string]string{"plugins": `{"proxy-rewrite":{"headers":{"add":{"x-b":"2"},"remove":["x-internal"],"set":{"x-a":"1"}}},"response-rewrite":{"headers":{"remove":["server"],"set":{"x-served-by":"mesh"}}}}`}},
		{"https redirect", route(func(r *routev3.Route) {
			r.Action = &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{SchemeRewriteSpecifier: &routev3.RedirectAction_HttpsRedirect{HttpsRedirect: true}}}
		}), map[string]string{"plugins": `{"redirect":{"append_query_string":true,"ret_code":301,"uri":"https://$host$uri"}}`, "upstream_id": ``}},
		{"path redirect 302 strip query", route(func(r *routev3.Route) {
			r.Action = &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{PathRewriteSpecifier: &routev3.RedirectAction_PathRedirect{PathRedirect: "/new"},
				ResponseCode: routev3.RedirectAction_FOUND, StripQuery: true}}
		}), map[string]string{"plugins": `{"redirect":{"ret_code":302,"uri":"/new"}}`}},
		{"direct response", route(func(r *routev3.Route) {
			r.Action = &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 403,
				Body: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "denied"}}}}
		}), map[string]string{"plugins": `{"fault-injection":{"abort":{"body":"denied","http_status":403}}}`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := stage(t, New(nil), KindRouteConfig, c.rc)
			if len(out) != 1 {
				t.Fatalf("got %d objects: %v", len(out), out)
			}
			for _, obj := range out {
				checkPlugins(t, obj)
				for f, want := range c.fields {
					if got := field(t, obj, f); got != want {
						t.Errorf("%s = %s, want %s\n%s", f, got, want, obj)
					}
				}
			}
		})
	}
}

func TestRouteVariantsAndMirror(t *testing.T) {
	tr := New(nil)
	stage(t, tr, KindCluster, controlplane.StaticCluster("svc", "10.0.0.1:80"), controlplane.StaticCluster("shadow", "10.0.0.9:8080"))
	r := controlplane.PrefixRoute("r", "/", "svc")
	r.GetRoute().RetryPolicy = &routev3.RetryPolicy{NumRetries: wrapperspb.UInt32(3)}
	r.GetRoute().HashPolicy = []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: "x-user"}}}}
	r.GetRoute().RequestMirrorPolicies = []*routev3.RouteAction_RequestMirrorPolicy{{Cluster: "shadow"}}
	out := stage(t, tr, KindRouteConfig, controlplane.RouteConfig("rc", controlplane.VirtualHost("vh", []string{"*"}, r)))
	var routeObj, variantKey string
	for k, v := range out {
		switch {
		case strings.HasPrefix(k, PrefixRoutes):
			routeObj = v
		case strings.HasPrefix(k, PrefixUpstreams):
			variantKey = k
			if got := field(t, v, "retries"); got != "3" {
				t.Errorf("variant retries %s", got)
			}
		}
	}
	if variantKey == "" || field(t, routeObj, "upstream_id") != `"`+strings.TrimPrefix(variantKey, PrefixUpstreams)+`"` {
		t.Fatalf("route %s does not use the variant upstream (%v)", routeObj, out)
	}
	checkPlugins(t, routeObj)
	if got := field(t, routeObj, "plugins"); got != `{"proxy-mirror":{"host":"http://10.0.0.9:8080"}}` {
		t.Errorf("mirror plugins %s", got)
	}
	// The route goes away: so does the variant.
	p, err := tr.Stage(KindRouteConfig, nil, []string{"rc"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(p.Deletes, ",") != strings.Join([]string{PrefixRoutes + ObjectID("rc/vh/0"), variantKey}, ",") {
		t.Errorf("deletes %v", p.Deletes)
	}
}

func TestRouteRejected(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*routev3.Route)
		want string
	}{
		{"bad regex", func(r *routev3.Route) {
			r.Match = &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "a("}}}
		}, "routes[0] (r): match.safe_regex"},
		{"cluster_header", func(r *routev3.Route) {
			r.GetRoute().ClusterSpecifier = &routev3.RouteAction_ClusterHeader{ClusterHeader: "x-cluster"}
		}, "cluster specifier"},
		{"runtime fraction", func(r *routev3.Route) {
			r.Match.RuntimeFraction = &corev3.RuntimeFractionalPercent{}
		}, "match.runtime_fraction"},
		{"direct response 101", func(r *routev3.Route) {
			r.Action = &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 101}}
		}, "direct_response.status"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := controlplane.PrefixRoute("r", "/", "svc")
			c.mod(r)
			rc := controlplane.RouteConfig("rc", controlplane.VirtualHost("vh", []string{"*"}, r))
			_, err := New(nil).Stage(KindRouteConfig, []Resource{{Name: "rc", Msg: rc}}, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), `route_configuration "rc"`) {
				t.Fatalf("err %v, want %q", err, c.want)
			}
		})
	}
}

func TestFaultInjection(t *testing.T) {
	fault := &faultv3.HTTPFault{
		Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_HttpStatus{HttpStatus: 503},
			Percentage: &typev3.FractionalPercent{Numerator: 50, Denominator: typev3.FractionalPercent_HUNDRED}},
		Delay: &faultcommon.FaultDelay{FaultDelaySecifier: &faultcommon.FaultDelay_FixedDelay{FixedDelay: durationpb.New(1500 * time.Millisecond)},
			Percentage: &typev3.FractionalPercent{Numerator: 100000, Denominator: typev3.FractionalPercent_MILLION}},
		Headers: []*routev3.HeaderMatcher{{Name: "end-user", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
			StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "jason"}}}}},
	}
	r := controlplane.PrefixRoute("r", "/", "svc")
	r.TypedPerFilterConfig = map[string]*anypb.Any{"envoy.filters.http.fault": controlplane.MustAny(fault)}
	out := stage(t, New(nil), KindRouteConfig, controlplane.RouteConfig("rc", controlplane.VirtualHost("vh", []string{"*"}, r)))
	for _, obj := range out {
		checkPlugins(t, obj)
		want := `{"fault-injection":{"abort":{"http_status":503,"percentage":50,"vars":[[["http_end_user","~~","^"],["http_end_user","==","jason"]]]},"delay":{"duration":1.5,"percentage":10,"vars":[[["http_end_user","~~","^"],["http_end_user","==","jason"]]]}}}`
		if got := field(t, obj, "plugins"); got != want {
			t.Errorf("plugins %s\nwant    %s", got, want)
		}
	}
}

func TestCORSAndLocalRateLimit(t *testing.T) {
	cors := &corsv3.CorsPolicy{
		AllowOriginStringMatch: []*matcherv3.StringMatcher{
			{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "https://a.example.com"}},
			{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: ".b.example.com"}},
		},
		AllowMethods: "GET,POST", AllowHeaders: "x-user", MaxAge: "600", AllowCredentials: wrapperspb.Bool(true),
	}
	lrl := &lrlv3.LocalRateLimit{StatPrefix: "rl",
		TokenBucket:    &typev3.TokenBucket{MaxTokens: 20, TokensPerFill: wrapperspb.UInt32(10), FillInterval: durationpb.New(2 * time.Second)},
		FilterEnabled:  &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{Numerator: 100}},
		FilterEnforced: &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{Numerator: 100}},
	}
	r := controlplane.PrefixRoute("r", "/", "svc")
	r.TypedPerFilterConfig = map[string]*anypb.Any{"envoy.filters.http.local_ratelimit": controlplane.MustAny(lrl)}
	vh := controlplane.VirtualHost("vh", []string{"*"}, r)
	vh.TypedPerFilterConfig = map[string]*anypb.Any{"envoy.filters.http.cors": controlplane.MustAny(cors)}
	out := stage(t, New(nil), KindRouteConfig, controlplane.RouteConfig("rc", vh))
	for _, obj := range out {
		checkPlugins(t, obj)
		want := `{"cors":{"allow_credential":true,"allow_headers":"x-user","allow_methods":"GET,POST","allow_origins":"https://a.example.com","allow_origins_by_regex":["\\.b\\.example\\.com$"],"max_age":600},"limit-req":{"burst":20,"key":"server_addr","nodelay":true,"rate":5,"rejected_code":429}}`
		if got := field(t, obj, "plugins"); got != want {
			t.Errorf("plugins %s\nwant    %s", got, want)
		}
	}
}
