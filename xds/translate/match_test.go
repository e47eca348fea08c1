package translate

import (
	"encoding/json"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	dpexpr "github.com/meshagent/meshagent/dataplane/expr"
	"github.com/meshagent/meshagent/dataplane/router"
	"github.com/meshagent/meshagent/etcdcompat/apisix"
)

type req struct {
	path, host, method string
	headers, query     map[string]string
}

func rt(name string, m *routev3.RouteMatch) *routev3.Route {
	return &routev3.Route{Name: name, Match: m, Action: &routev3.Route_Route{Route: &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "c-" + name}}}}
}

func prefix(p string) *routev3.RouteMatch {
	return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: p}}
}

func withHeaders(m *routev3.RouteMatch, hs ...*routev3.HeaderMatcher) *routev3.RouteMatch {
	m.Headers = hs
	return m
}

func exactHeader(name, v string, invert bool) *routev3.HeaderMatcher {
	return &routev3.HeaderMatcher{Name: name, InvertMatch: invert,
		HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: v}}}}
}

// routeFor translates a one-vhost route table and routes r through the
// data plane's own router (APISIX semantics); it returns the name of the
// Envoy route chosen ("" for none).
func routeFor(t *testing.T, domains []string, routes []*routev3.Route, r req) string {
	t.Helper()
	tr := New(nil)
	rc := &routev3.RouteConfiguration{Name: "rc", VirtualHosts: []*routev3.VirtualHost{{Name: "vh", Domains: domains, Routes: routes}}}
	if len(domains) != 1 || domains[0] != "*" {
		// A second, host-less virtual host: where APISIX would fall back.
		rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{Name: "fallback", Domains: []string{"*"}, Routes: []*routev3.Route{rt("fallback", prefix("/"))}})
	}
	p, err := tr.Stage(KindRouteConfig, []Resource{{Name: "rc", Version: "1", Msg: rc}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var rs []router.Route[string]
	for _, o := range p.Puts {
		v, err := apisix.Decode([]byte(o.Key), o.Value)
		if err != nil {
			t.Fatalf("%s: %v\n%s", o.Key, err, o.Value)
		}
		ar := v.(*apisix.Route)
		name := ar.Name[strings.IndexByte(ar.Name, '/')+1:]
		x, err := router.FromAPISIX(ar, nil, name)
		if err != nil {
			t.Fatalf("%s: %v", o.Key, err)
		}
		rs = append(rs, x)
	}
	rtr, err := router.New(rs)
	if err != nil {
		t.Fatal(err)
	}
	vars := dpexpr.MapVars{"uri": r.path, "host": r.host}
	for k, v := range r.headers {
		vars["http_"+strings.ReplaceAll(strings.ToLower(k), "-", "_")] = v
	}
	for k, v := range r.query {
		vars["arg_"+k] = v
	}
	method := r.method
	if method == "" {
		method = "GET"
	}
	vars["request_method"] = method
	res, ok := rtr.Match(&router.Request{Path: r.path, Host: r.host, HostHeader: r.host, Method: method,
		RemoteAddr: netip.MustParseAddr("127.0.0.1"), Vars: vars})
	if !ok {
		return ""
	}
	return res.Route.Value
}

func TestMatchSemantics(t *testing.T) {
	any := []string{"*"}
	regex := func(re string) *routev3.RouteMatch {
		return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re}}}
	}
	sep := func(p string) *routev3.RouteMatch {
		return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: p}}
	}
	path := func(p string) *routev3.RouteMatch {
		return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: p}}
	}
	ci := func(m *routev3.RouteMatch) *routev3.RouteMatch { m.CaseSensitive = wrapperspb.Bool(false); return m }
	present := func(name string, v bool) *routev3.HeaderMatcher {
		return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: v}}
	}
	hprefix := func(name, v string) *routev3.HeaderMatcher {
		return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: v}}}}
	}
	query := func(m *routev3.RouteMatch, name, v string) *routev3.RouteMatch {
		m.QueryParameters = append(m.QueryParameters, &routev3.QueryParameterMatcher{Name: name,
			QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: v}}}})
		return m
	}
	cases := []struct {
		name    string
		domains []string
		routes  []*routev3.Route
		req     req
		want    string
	}{
		{"prefix matches longer segment", any, []*routev3.Route{rt("api", prefix("/api"))}, req{path: "/apix"}, "api"},
		{"separated prefix: exact", any, []*routev3.Route{rt("api", sep("/api"))}, req{path: "/api"}, "api"},
		{"separated prefix: sub path", any, []*routev3.Route{rt("api", sep("/api"))}, req{path: "/api/v1"}, "api"},
		{"separated prefix: not /apix", any, []*routev3.Route{rt("api", sep("/api"))}, req{path: "/apix"}, ""},
		{"exact path", any, []*routev3.Route{rt("p", path("/healthz"))}, req{path: "/healthz"}, "p"},
		{"exact path no prefix", any, []*routev3.Route{rt("p", path("/healthz"))}, req{path: "/healthz/x"}, ""},
		{"regex full match", any, []*routev3.Route{rt("re", regex(`/v[0-9]+/items`))}, req{path: "/v12/items"}, "re"},
		{"regex anchored end", any, []*routev3.Route{rt("re", regex(`/v[0-9]+/items`))}, req{path: "/v12/items/7"}, ""},
		{"regex anchored start", any, []*routev3.Route{rt("re", regex(`/v[0-9]+/items`))}, req{path: "/x/v12/items"}, ""},
		{"regex alternation anchored", any, []*routev3.Route{rt("re", regex(`/a|/b`))}, req{path: "/bc"}, ""},
		{"case-insensitive prefix", any, []*routev3.Route{rt("ci", ci(prefix("/API")))}, req{path: "/api/x"}, "ci"},
		{"case-insensitive path", any, []*routev3.Route{rt("ci", ci(path("/Login")))}, req{path: "/LOGIN"}, "ci"},
		{"case-insensitive path no prefix", any, []*routev3.Route{rt("ci", ci(path("/Login")))}, req{path: "/LOGIN2"}, ""},
		{"header exact hit", any, []*routev3.Route{rt("h", withHeaders(prefix("/"), exactHeader("x-env", "prod", false)))}, req{path: "/", headers: map[string]string{"x-env": "prod"}}, "h"},
		{"header exact miss", any, []*routev3.Route{rt("h", withHeaders(prefix("/"), exactHeader("x-env", "prod", false)))}, req{path: "/", headers: map[string]string{"x-env": "prod1"}}, ""},
		{"header exact absent", any, []*routev3.Route{rt("h", withHeaders(prefix("/"), exactHeader("x-env", "prod", false)))}, req{path: "/"}, ""},
		{"inverted header other value", any, []*routev3.Route{rt("h", withHeaders(prefix("/"), exactHeader("x-env", "prod", true)))}, req{path: "/", headers: map[string]string{"x-env": "dev"}}, "h"},
		{"inverted header same value", any, []*routev3.Route{rt("h", withHeaders(prefix("/"), exactHeader("x-env", "prod", true)))}, req{path: "/", headers: map[string]string{"x-env": "prod"}}, ""},
		{"inverted header absent (Envoy: no match)", any, []*routev3.Route{rt("h", withHeaders(prefix("/"), exactHeader("x-env", "prod", true)))}, req{path: "/"}, ""},
		{"present true, present", any, []*routev3.Route{rt("h", withHeaders(prefix("/"), present("x-debug", true)))}, req{path: "/", headers: map[string]string{"x-debug": ""}}, "h"},
		{"present true, absent", any, []*routev3.Route{rt("h", withHeaders(prefix("/"), present("x-debug", true)))}, req{path: "/"}, ""},
		{"present false, absent", any, []*routev3.Route{rt("h", withHeaders(prefix("/"), present("x-debug", false)))}, req{path: "/"}, "h"},
		{"present false, present", any, []*routev3.Route{rt("h", withHeaders(prefix("/"), present("x-debug", false)))}, req{path: "/", headers: map[string]string{"x-debug": "1"}}, ""},
		{"header prefix literal dot", any, []*routev3.Route{rt("h", withHeaders(prefix("/"), hprefix("x-v", "a.b")))}, req{path: "/", headers: map[string]string{"x-v": "axb"}}, ""},
		{"header prefix literal dot hit", any, []*routev3.Route{rt("h", withHeaders(prefix("/"), hprefix("x-v", "a.b")))}, req{path: "/", headers: map[string]string{"x-v": "a.bc"}}, "h"},
		{"query exact", any, []*routev3.Route{rt("q", query(prefix("/"), "v", "2"))}, req{path: "/", query: map[string]string{"v": "2"}}, "q"},
		{"query exact miss", any, []*routev3.Route{rt("q", query(prefix("/"), "v", "2"))}, req{path: "/", query: map[string]string{"v": "22"}}, ""},
		{"method header", any, []*routev3.Route{rt("m", withHeaders(prefix("/"), exactHeader(":method", "POST", false)))}, req{path: "/", method: "GET"}, ""},
		{"method header hit", any, []*routev3.Route{rt("m", withHeaders(prefix("/"), exactHeader(":method", "POST", false)))}, req{path: "/", method: "POST"}, "m"},
		{"domain with port", []string{"shop.example.com:8080"}, []*routev3.Route{rt("d", prefix("/"))}, req{path: "/", host: "shop.example.com"}, "d"},
		{"domain other host goes to the * virtual host", []string{"shop.example.com"}, []*routev3.Route{rt("d", prefix("/"))}, req{path: "/", host: "other.example.com"}, "fallback"},
		{"host without a matching route does not fall through", []string{"shop.example.com"}, []*routev3.Route{rt("d", prefix("/cart"))}, req{path: "/other", host: "shop.example.com"}, "no-route"},
		{"wildcard domain", []string{"*.example.com"}, []*routev3.Route{rt("d", prefix("/"))}, req{path: "/", host: "a.example.com"}, "d"},
		{"first route wins on the same path", any, []*routev3.Route{
			rt("first", withHeaders(prefix("/"), present("x-canary", true))), rt("second", prefix("/"))},
			req{path: "/x", headers: map[string]string{"x-canary": "1"}}, "first"},
		{"earlier shorter prefix keeps Envoy's first match", any, []*routev3.Route{
			rt("canary", withHeaders(prefix("/"), present("x-canary", true))), rt("api", prefix("/api")), rt("exact", path("/api/v1"))},
			req{path: "/api/v1", headers: map[string]string{"x-canary": "1"}}, "canary"},
		{"reordered table: later longer prefix when the first misses", any, []*routev3.Route{
			rt("canary", withHeaders(prefix("/"), present("x-canary", true))), rt("api", prefix("/api")), rt("exact", path("/api/v1"))},
			req{path: "/api/v2"}, "api"},
		{"reordered table: exact path after prefixes", any, []*routev3.Route{
			rt("canary", withHeaders(prefix("/"), present("x-canary", true))), rt("api", prefix("/apix")), rt("exact", path("/api/v1"))},
			req{path: "/api/v1"}, "exact"},
		{"reordered table: separated prefix", any, []*routev3.Route{
			rt("canary", withHeaders(prefix("/"), present("x-canary", true))), rt("sep", sep("/api"))},
			req{path: "/apix"}, ""},
		{"reordered table: regex before prefix", any, []*routev3.Route{
			rt("re", regex(`/api/v[0-9]+`)), rt("api", prefix("/api"))},
			req{path: "/api/v3"}, "re"},
		{"fall through to the second", any, []*routev3.Route{
			rt("first", withHeaders(prefix("/"), present("x-canary", true))), rt("second", prefix("/"))},
			req{path: "/x"}, "second"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := routeFor(t, c.domains, c.routes, c.req); got != c.want {
				t.Fatalf("routed to %q, want %q", got, c.want)
			}
		})
	}
}

func TestHostsOf(t *testing.T) {
	cases := []struct {
		in      []string
		want    string
		wantErr string
	}{
		{[]string{"*"}, "null", ""},
		{[]string{"a.com", "*"}, "null", ""},
		{[]string{"reviews", "reviews:9080", "reviews.default.svc.cluster.local:9080", "10.0.0.1:9080"}, `["reviews","reviews.default.svc.cluster.local","10.0.0.1"]`, ""},
		{[]string{"[::1]:80", "[fd00::1]"}, `["[::1]","[fd00::1]"]`, ""},
		{[]string{"*.Example.com"}, `["*.example.com"]`, ""},
		{[]string{"foo.*"}, "", "suffix wildcards"},
		{[]string{"a.*.com"}, "", "first character"},
	}
	for _, c := range cases {
		got, err := hostsOf(c.in)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%v: err %v, want %q", c.in, err, c.wantErr)
			}
			continue
		}
		b, _ := json.Marshal(got)
		if err != nil || string(b) != c.want {
			t.Errorf("%v: %s %v, want %s", c.in, b, err, c.want)
		}
	}
}

func TestOrderedModeOnlyWhenNeeded(t *testing.T) {
	path := func(p string) *routev3.RouteMatch {
		return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: p}}
	}
	for _, c := range []struct {
		name   string
		routes []*routev3.Route
		uris   string
	}{
		{"specific first keeps the radix tree", []*routev3.Route{rt("e", path("/api/v1")), rt("p", prefix("/api")), rt("all", prefix("/"))}, `"/api/v1","/api*","/*"`},
		{"catch-all first switches to ordered vars", []*routev3.Route{rt("all", prefix("/")), rt("p", prefix("/api"))}, `"/*","/*"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr := New(nil)
			out := stage(t, tr, KindRouteConfig, &routev3.RouteConfiguration{Name: "rc", VirtualHosts: []*routev3.VirtualHost{{Name: "vh", Domains: []string{"*"}, Routes: c.routes}}})
			var got []string
			for i := range c.routes {
				got = append(got, field(t, out[PrefixRoutes+ObjectID("rc/vh/"+strconv.Itoa(i))], "uri"))
			}
			if strings.Join(got, ",") != c.uris {
				t.Errorf("uris %s, want %s", strings.Join(got, ","), c.uris)
			}
		})
	}
}
