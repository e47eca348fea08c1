package router

import (
	"encoding/json"
	"net/netip"
	"testing"

	"github.com/meshagent/meshagent/dataplane/expr"
)

// rs is a compact route spec for the conformance table.
type rs struct {
	id       string
	uris     []string
	hosts    []string
	methods  []string
	addrs    []string
	vars     string
	prio     int
	disabled bool
}

// rq is a compact request; zero fields take defaults (GET, example.com,
// 127.0.0.1).
type rq struct {
	path, host, hostHeader, method, addr string
	vars                                 expr.MapVars
}

func u(p ...string) []string { return p }

func build(t testing.TB, specs []rs) *Router[string] {
	t.Helper()
	var routes []Route[string]
	for _, s := range specs {
		r := Route[string]{ID: s.id, URIs: s.uris, Hosts: s.hosts, Methods: s.methods, RemoteAddrs: s.addrs,
			Priority: s.prio, Disabled: s.disabled, Value: s.id}
		if s.vars != "" {
			e, err := expr.Compile(json.RawMessage(s.vars))
			if err != nil {
				t.Fatalf("route %s: %v", s.id, err)
			}
			r.Vars = e
		}
		routes = append(routes, r)
	}
	rt, err := New(routes)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return rt
}

func (q rq) request() *Request {
	r := &Request{Path: q.path, Host: q.host, HostHeader: q.hostHeader, Method: q.method}
	if r.Method == "" {
		r.Method = "GET"
	}
	if r.Host == "" && q.hostHeader == "" {
		r.Host = "example.com"
	}
	if r.HostHeader == "" {
		r.HostHeader = r.Host
	}
	a := q.addr
	if a == "" {
		a = "127.0.0.1"
	}
	r.RemoteAddr = netip.MustParseAddr(a)
	if q.vars != nil {
		r.Vars = q.vars
	}
	return r
}

var conformance = []struct {
	name   string
	routes []rs
	req    rq
	want   string // route id, "" for no match
}{
	// Path kinds.
	{"path/exact matches", []rs{{id: "a", uris: u("/foo")}}, rq{path: "/foo"}, "a"},
	{"path/exact does not match trailing slash", []rs{{id: "a", uris: u("/foo")}}, rq{path: "/foo/"}, ""},
	{"path/exact is not a prefix", []rs{{id: "a", uris: u("/foo")}}, rq{path: "/foo/bar"}, ""},
	{"path/exact is case sensitive", []rs{{id: "a", uris: u("/Foo")}}, rq{path: "/foo"}, ""},
	{"path/prefix matches its own stem", []rs{{id: "a", uris: u("/foo*")}}, rq{path: "/foo"}, "a"},
	{"path/prefix is a raw string prefix", []rs{{id: "a", uris: u("/foo*")}}, rq{path: "/foobar"}, "a"},
	{"path/prefix matches below", []rs{{id: "a", uris: u("/foo*")}}, rq{path: "/foo/x/y"}, "a"},
	{"path/prefix with slash needs the slash", []rs{{id: "a", uris: u("/foo/*")}}, rq{path: "/foo"}, ""},
	{"path/prefix with slash matches the slash", []rs{{id: "a", uris: u("/foo/*")}}, rq{path: "/foo/"}, "a"},
	{"path/root prefix matches root", []rs{{id: "a", uris: u("/*")}}, rq{path: "/"}, "a"},
	{"path/root prefix matches all", []rs{{id: "a", uris: u("/*")}}, rq{path: "/x/y/z"}, "a"},
	{"path/bare star matches all", []rs{{id: "a", uris: u("*")}}, rq{path: "/anything"}, "a"},
	{"path/prefix does not match a shorter path", []rs{{id: "a", uris: u("/foo/bar*")}}, rq{path: "/foo/ba"}, ""},
	{"path/colon is literal in exact paths", []rs{{id: "a", uris: u("/user/:id")}}, rq{path: "/user/42"}, ""},
	{"path/colon literal exact matches itself", []rs{{id: "a", uris: u("/user/:id")}}, rq{path: "/user/:id"}, "a"},
	{"path/middle star matches one segment", []rs{{id: "a", uris: u("/a/*/b")}}, rq{path: "/a/x/b"}, "a"},
	{"path/middle star matches several segments", []rs{{id: "a", uris: u("/a/*/b")}}, rq{path: "/a/x/y/b"}, "a"},
	{"path/middle star needs the tail", []rs{{id: "a", uris: u("/a/*/b")}}, rq{path: "/a/x/c"}, ""},
	{"path/middle star is a full match", []rs{{id: "a", uris: u("/a/*/b")}}, rq{path: "/a/x/b/c"}, ""},
	{"path/middle star needs the prefix", []rs{{id: "a", uris: u("/a/*/b")}}, rq{path: "/z/x/b"}, ""},
	{"path/middle star tail is literal not regex", []rs{{id: "a", uris: u("/a/*/b.c")}}, rq{path: "/a/x/bxc"}, ""},
	{"path/middle star tail literal matches", []rs{{id: "a", uris: u("/a/*/b.c")}}, rq{path: "/a/x/b.c"}, "a"},
	{"path/named star segment matches anything", []rs{{id: "a", uris: u("/a/*rest")}}, rq{path: "/a/x/y"}, "a"},
	{"path/colon segment after middle star is one segment", []rs{{id: "a", uris: u("/a/*/:id/z")}}, rq{path: "/a/q/r/9/z"}, "a"},
	{"path/colon segment after middle star not empty", []rs{{id: "a", uris: u("/a/*/x/:id")}}, rq{path: "/a/q/x/"}, ""},
	{"path/two stars", []rs{{id: "a", uris: u("/a/*/b/*")}}, rq{path: "/a/1/b/2/3"}, "a"},
	{"path/second uri of a route matches", []rs{{id: "a", uris: u("/x", "/y*")}}, rq{path: "/yes"}, "a"},
	{"path/no routes no match", nil, rq{path: "/"}, ""},

	// Lookup order.
	{"order/exact beats prefix despite priority", []rs{{id: "p", uris: u("/foo*"), prio: 100}, {id: "e", uris: u("/foo")}}, rq{path: "/foo"}, "e"},
	{"order/longer prefix beats shorter despite priority", []rs{{id: "s", uris: u("/a*"), prio: 100}, {id: "l", uris: u("/a/b*")}}, rq{path: "/a/b/c"}, "l"},
	{"order/shorter prefix when longer does not cover", []rs{{id: "s", uris: u("/a*")}, {id: "l", uris: u("/a/b*")}}, rq{path: "/a/c"}, "s"},
	{"order/falls back to shorter prefix when conditions fail", []rs{{id: "s", uris: u("/a*")}, {id: "l", uris: u("/a/b*"), methods: u("POST")}}, rq{path: "/a/b"}, "s"},
	{"order/falls back from exact to prefix when conditions fail", []rs{{id: "p", uris: u("/a*")}, {id: "e", uris: u("/a"), methods: u("POST")}}, rq{path: "/a"}, "p"},
	{"order/priority orders the exact bucket", []rs{{id: "lo", uris: u("/x"), prio: 1}, {id: "hi", uris: u("/x"), prio: 2}}, rq{path: "/x"}, "hi"},
	{"order/priority ties keep insertion order", []rs{{id: "first", uris: u("/x")}, {id: "second", uris: u("/x")}}, rq{path: "/x"}, "first"},
	{"order/priority orders the prefix bucket", []rs{{id: "lo", uris: u("/x*")}, {id: "hi", uris: u("/x*"), prio: 5}}, rq{path: "/xy"}, "hi"},
	{"order/negative priority goes last", []rs{{id: "neg", uris: u("/x"), prio: -1}, {id: "zero", uris: u("/x")}}, rq{path: "/x"}, "zero"},
	{"order/higher priority failing falls to lower", []rs{{id: "lo", uris: u("/x")}, {id: "hi", uris: u("/x"), prio: 9, methods: u("PUT")}}, rq{path: "/x"}, "lo"},
	{"order/same bucket longer original path first", []rs{{id: "short", uris: u("/a/*")}, {id: "long", uris: u("/a/*/b")}}, rq{path: "/a/x/b"}, "long"},
	{"order/same bucket longer original path falls back", []rs{{id: "short", uris: u("/a/*")}, {id: "long", uris: u("/a/*/b")}}, rq{path: "/a/x/c"}, "short"},
	{"order/priority beats original path length", []rs{{id: "short", uris: u("/a/*"), prio: 1}, {id: "long", uris: u("/a/*/b")}}, rq{path: "/a/x/b"}, "short"},
	{"order/middle star prefix is the part before star", []rs{{id: "mid", uris: u("/a/*/c")}, {id: "p", uris: u("/a*")}}, rq{path: "/a/x/c"}, "mid"},
	{"path/star inside a segment does not glob the segment", []rs{{id: "mid", uris: u("/a/b*/c")}, {id: "p", uris: u("/a/*")}}, rq{path: "/a/bx/c"}, "p"},

	// Methods.
	{"methods/match", []rs{{id: "a", uris: u("/m"), methods: u("GET")}}, rq{path: "/m"}, "a"},
	{"methods/mismatch", []rs{{id: "a", uris: u("/m"), methods: u("POST")}}, rq{path: "/m"}, ""},
	{"methods/any of a list", []rs{{id: "a", uris: u("/m"), methods: u("PUT", "DELETE", "PURGE")}}, rq{path: "/m", method: "PURGE"}, "a"},
	{"methods/unknown request method never matches a method list", []rs{{id: "a", uris: u("/m"), methods: u("GET")}}, rq{path: "/m", method: "BREW"}, ""},
	{"methods/no list matches unknown methods", []rs{{id: "a", uris: u("/m")}}, rq{path: "/m", method: "BREW"}, "a"},
	{"methods/picks the route for the method", []rs{{id: "get", uris: u("/m"), methods: u("GET")}, {id: "post", uris: u("/m"), methods: u("POST")}}, rq{path: "/m", method: "POST"}, "post"},
	{"methods/case sensitive request method", []rs{{id: "a", uris: u("/m"), methods: u("GET")}}, rq{path: "/m", method: "get"}, ""},

	// Remote addresses.
	{"remote_addrs/v4 cidr match", []rs{{id: "a", uris: u("/r"), addrs: u("10.0.0.0/8")}}, rq{path: "/r", addr: "10.9.8.7"}, "a"},
	{"remote_addrs/v4 cidr mismatch", []rs{{id: "a", uris: u("/r"), addrs: u("10.0.0.0/8")}}, rq{path: "/r", addr: "11.0.0.1"}, ""},
	{"remote_addrs/single v4 ip", []rs{{id: "a", uris: u("/r"), addrs: u("192.168.1.5")}}, rq{path: "/r", addr: "192.168.1.5"}, "a"},
	{"remote_addrs/single v4 ip other", []rs{{id: "a", uris: u("/r"), addrs: u("192.168.1.5")}}, rq{path: "/r", addr: "192.168.1.6"}, ""},
	{"remote_addrs/v6 cidr match", []rs{{id: "a", uris: u("/r"), addrs: u("2001:db8::/32")}}, rq{path: "/r", addr: "2001:db8:1::1"}, "a"},
	{"remote_addrs/v6 cidr mismatch", []rs{{id: "a", uris: u("/r"), addrs: u("2001:db8::/32")}}, rq{path: "/r", addr: "2001:db9::1"}, ""},
	{"remote_addrs/v4-mapped client matches v4 cidr", []rs{{id: "a", uris: u("/r"), addrs: u("10.0.0.0/8")}}, rq{path: "/r", addr: "::ffff:10.1.1.1"}, "a"},
	{"remote_addrs/v6 loopback ip", []rs{{id: "a", uris: u("/r"), addrs: u("::1")}}, rq{path: "/r", addr: "::1"}, "a"},
	{"remote_addrs/any of a list", []rs{{id: "a", uris: u("/r"), addrs: u("1.1.1.1", "fd00::/8", "172.16.0.0/12")}}, rq{path: "/r", addr: "172.20.0.1"}, "a"},
	{"remote_addrs/v4 client vs v6 cidr", []rs{{id: "a", uris: u("/r"), addrs: u("::/0")}}, rq{path: "/r", addr: "1.2.3.4"}, ""},

	// Hosts.
	{"hosts/exact", []rs{{id: "a", uris: u("/h"), hosts: u("api.x.com")}}, rq{path: "/h", host: "api.x.com"}, "a"},
	{"hosts/exact mismatch", []rs{{id: "a", uris: u("/h"), hosts: u("api.x.com")}}, rq{path: "/h", host: "web.x.com"}, ""},
	{"hosts/route host is lowercased", []rs{{id: "a", uris: u("/h"), hosts: u("API.X.com")}}, rq{path: "/h", host: "api.x.com"}, "a"},
	{"hosts/request host is lowercased", []rs{{id: "a", uris: u("/h"), hosts: u("api.x.com")}}, rq{path: "/h", host: "Api.X.COM"}, "a"},
	{"hosts/wildcard one level", []rs{{id: "a", uris: u("/h"), hosts: u("*.x.com")}}, rq{path: "/h", host: "a.x.com"}, "a"},
	{"hosts/wildcard any depth", []rs{{id: "a", uris: u("/h"), hosts: u("*.x.com")}}, rq{path: "/h", host: "a.b.x.com"}, "a"},
	{"hosts/wildcard not the apex", []rs{{id: "a", uris: u("/h"), hosts: u("*.x.com")}}, rq{path: "/h", host: "x.com"}, ""},
	{"hosts/wildcard is a suffix not a substring", []rs{{id: "a", uris: u("/h"), hosts: u("*.x.com")}}, rq{path: "/h", host: "a.x.com.evil"}, ""},
	{"hosts/wildcard without dot is a raw suffix", []rs{{id: "a", uris: u("/h"), hosts: u("*x.com")}}, rq{path: "/h", host: "abcx.com"}, "a"},
	{"hosts/wildcard without dot matches apex", []rs{{id: "a", uris: u("/h"), hosts: u("*x.com")}}, rq{path: "/h", host: "x.com"}, "a"},
	{"hosts/exact beats wildcard", []rs{{id: "w", uris: u("/h"), hosts: u("*.x.com"), prio: 9}, {id: "e", uris: u("/h"), hosts: u("a.x.com")}}, rq{path: "/h", host: "a.x.com"}, "e"},
	{"hosts/longer wildcard beats shorter", []rs{{id: "short", uris: u("/h"), hosts: u("*.x.com")}, {id: "long", uris: u("/h"), hosts: u("*.b.x.com")}}, rq{path: "/h", host: "a.b.x.com"}, "long"},
	{"hosts/exact host without uri falls to wildcard", []rs{{id: "e", uris: u("/other"), hosts: u("a.x.com")}, {id: "w", uris: u("/h"), hosts: u("*.x.com")}}, rq{path: "/h", host: "a.x.com"}, "w"},
	{"hosts/longer wildcard without uri falls to shorter", []rs{{id: "long", uris: u("/nope"), hosts: u("*.b.x.com")}, {id: "short", uris: u("/h"), hosts: u("*.x.com")}}, rq{path: "/h", host: "a.b.x.com"}, "short"},
	{"hosts/host route prefix beats host-less exact", []rs{{id: "any", uris: u("/h"), prio: 100}, {id: "host", uris: u("/*"), hosts: u("a.x.com")}}, rq{path: "/h", host: "a.x.com"}, "host"},
	{"hosts/falls back to host-less routes", []rs{{id: "host", uris: u("/other"), hosts: u("a.x.com")}, {id: "any", uris: u("/h")}}, rq{path: "/h", host: "a.x.com"}, "any"},
	{"hosts/host-less route for unknown host", []rs{{id: "host", uris: u("/h"), hosts: u("a.x.com")}, {id: "any", uris: u("/h")}}, rq{path: "/h", host: "b.x.com"}, "any"},
	{"hosts/star host matches any host", []rs{{id: "star", uris: u("/h"), hosts: u("*")}}, rq{path: "/h", host: "whatever.org"}, "star"},
	{"hosts/star host beats host-less", []rs{{id: "any", uris: u("/h"), prio: 5}, {id: "star", uris: u("/h*"), hosts: u("*")}}, rq{path: "/h", host: "q.org"}, "star"},
	{"hosts/any of a route's hosts", []rs{{id: "a", uris: u("/h"), hosts: u("a.com", "*.b.com")}}, rq{path: "/h", host: "z.b.com"}, "a"},
	{"hosts/port host matches host header with port", []rs{{id: "a", uris: u("/h"), hosts: u("svc:8080")}}, rq{path: "/h", host: "svc", hostHeader: "svc:8080"}, "a"},
	{"hosts/port host other port", []rs{{id: "a", uris: u("/h"), hosts: u("svc:8080")}}, rq{path: "/h", host: "svc", hostHeader: "svc:9090"}, ""},
	{"hosts/port host needs a port", []rs{{id: "a", uris: u("/h"), hosts: u("svc:8080")}}, rq{path: "/h", host: "svc", hostHeader: "svc"}, ""},
	{"hosts/port host beats plain host", []rs{{id: "plain", uris: u("/h"), hosts: u("svc")}, {id: "port", uris: u("/h"), hosts: u("svc:8080")}}, rq{path: "/h", host: "svc", hostHeader: "svc:8080"}, "port"},
	{"hosts/plain host ignores the port", []rs{{id: "plain", uris: u("/h"), hosts: u("svc")}}, rq{path: "/h", host: "svc", hostHeader: "svc:8080"}, "plain"},
	{"hosts/wildcard port host", []rs{{id: "a", uris: u("/h"), hosts: u("*.svc.cluster.local:80")}}, rq{path: "/h", host: "r.ns.svc.cluster.local", hostHeader: "r.ns.svc.cluster.local:80"}, "a"},
	{"hosts/port host case-insensitive header", []rs{{id: "a", uris: u("/h"), hosts: u("svc.local:80")}}, rq{path: "/h", host: "svc.local", hostHeader: "SVC.Local:80"}, "a"},
	{"hosts/ipv6 literal host without port", []rs{{id: "a", uris: u("/h"), hosts: u("[::1]")}}, rq{path: "/h", host: "[::1]", hostHeader: "[::1]:8080"}, "a"},
	{"hosts/ipv6 literal host with port", []rs{{id: "a", uris: u("/h"), hosts: u("[::1]:8080")}}, rq{path: "/h", host: "[::1]", hostHeader: "[::1]:8080"}, "a"},

	// Status.
	{"status/disabled route is not routed", []rs{{id: "off", uris: u("/s"), disabled: true}}, rq{path: "/s"}, ""},
	{"status/disabled route yields to the next", []rs{{id: "off", uris: u("/s"), prio: 9, disabled: true}, {id: "on", uris: u("/s")}}, rq{path: "/s"}, "on"},

	// Vars, one operator each (lua-resty-expr).
	{"vars/== match", []rs{{id: "a", uris: u("/v"), vars: `[["arg_k","==","v"]]`}}, rq{path: "/v", vars: expr.MapVars{"arg_k": "v"}}, "a"},
	{"vars/== missing var fails", []rs{{id: "a", uris: u("/v"), vars: `[["arg_k","==","v"]]`}}, rq{path: "/v"}, ""},
	{"vars/== number", []rs{{id: "a", uris: u("/v"), vars: `[["arg_n","==",10]]`}}, rq{path: "/v", vars: expr.MapVars{"arg_n": "10.0"}}, "a"},
	{"vars/~= missing var passes", []rs{{id: "a", uris: u("/v"), vars: `[["arg_k","~=","v"]]`}}, rq{path: "/v"}, "a"},
	{"vars/~= equal fails", []rs{{id: "a", uris: u("/v"), vars: `[["arg_k","~=","v"]]`}}, rq{path: "/v", vars: expr.MapVars{"arg_k": "v"}}, ""},
	{"vars/> numeric", []rs{{id: "a", uris: u("/v"), vars: `[["http_x_n",">",9]]`}}, rq{path: "/v", vars: expr.MapVars{"http_x_n": "10"}}, "a"},
	{"vars/> is numeric not lexical", []rs{{id: "a", uris: u("/v"), vars: `[["http_x_n",">","9"]]`}}, rq{path: "/v", vars: expr.MapVars{"http_x_n": "10"}}, "a"},
	{"vars/>= boundary", []rs{{id: "a", uris: u("/v"), vars: `[["http_x_n",">=",10]]`}}, rq{path: "/v", vars: expr.MapVars{"http_x_n": "10"}}, "a"},
	{"vars/< fails on non-number", []rs{{id: "a", uris: u("/v"), vars: `[["http_x_n","<",10]]`}}, rq{path: "/v", vars: expr.MapVars{"http_x_n": "ten"}}, ""},
	{"vars/<= boundary", []rs{{id: "a", uris: u("/v"), vars: `[["http_x_n","<=",10]]`}}, rq{path: "/v", vars: expr.MapVars{"http_x_n": "10"}}, "a"},
	{"vars/~~ unanchored", []rs{{id: "a", uris: u("/v"), vars: `[["http_user_agent","~~","curl/[0-9]"]]`}}, rq{path: "/v", vars: expr.MapVars{"http_user_agent": "x curl/8.1"}}, "a"},
	{"vars/~~ missing var fails", []rs{{id: "a", uris: u("/v"), vars: `[["http_user_agent","~~",".*"]]`}}, rq{path: "/v"}, ""},
	{"vars/not ~~ empty is true when absent", []rs{{id: "a", uris: u("/v"), vars: `[["arg_v","!","~~","^$"]]`}}, rq{path: "/v"}, "a"},
	{"vars/not ~~ empty is false when empty", []rs{{id: "a", uris: u("/v"), vars: `[["arg_v","!","~~","^$"]]`}}, rq{path: "/v", vars: expr.MapVars{"arg_v": ""}}, ""},
	{"vars/~* case-insensitive", []rs{{id: "a", uris: u("/v"), vars: `[["http_x_env","~*","^PROD$"]]`}}, rq{path: "/v", vars: expr.MapVars{"http_x_env": "prod"}}, "a"},
	{"vars/in", []rs{{id: "a", uris: u("/v"), vars: `[["cookie_region","in",["eu","us"]]]`}}, rq{path: "/v", vars: expr.MapVars{"cookie_region": "us"}}, "a"},
	{"vars/in mismatch", []rs{{id: "a", uris: u("/v"), vars: `[["cookie_region","in",["eu","us"]]]`}}, rq{path: "/v", vars: expr.MapVars{"cookie_region": "ap"}}, ""},
	{"vars/has on a scalar is false", []rs{{id: "a", uris: u("/v"), vars: `[["http_x_tags","has","a"]]`}}, rq{path: "/v", vars: expr.MapVars{"http_x_tags": "a"}}, ""},
	{"vars/ipmatch", []rs{{id: "a", uris: u("/v"), vars: `[["http_x_real_ip","ipmatch",["10.0.0.0/8","fd00::/8"]]]`}}, rq{path: "/v", vars: expr.MapVars{"http_x_real_ip": "fd00::7"}}, "a"},
	{"vars/ipmatch mismatch", []rs{{id: "a", uris: u("/v"), vars: `[["http_x_real_ip","ipmatch",["10.0.0.0/8"]]]`}}, rq{path: "/v", vars: expr.MapVars{"http_x_real_ip": "11.0.0.1"}}, ""},
	{"vars/OR", []rs{{id: "a", uris: u("/v"), vars: `["OR",["arg_a","==","1"],["arg_b","==","1"]]`}}, rq{path: "/v", vars: expr.MapVars{"arg_b": "1"}}, "a"},
	{"vars/AND all required", []rs{{id: "a", uris: u("/v"), vars: `["AND",["arg_a","==","1"],["arg_b","==","1"]]`}}, rq{path: "/v", vars: expr.MapVars{"arg_b": "1"}}, ""},
	{"vars/!AND", []rs{{id: "a", uris: u("/v"), vars: `["!AND",["arg_a","==","1"],["arg_b","==","1"]]`}}, rq{path: "/v", vars: expr.MapVars{"arg_b": "1"}}, "a"},
	{"vars/!OR", []rs{{id: "a", uris: u("/v"), vars: `["!OR",["arg_a","==","1"],["arg_b","==","1"]]`}}, rq{path: "/v", vars: expr.MapVars{"arg_b": "1"}}, ""},
	{"vars/failing vars falls to next route in bucket", []rs{{id: "canary", uris: u("/v"), prio: 1, vars: `[["http_x_canary","==","1"]]`}, {id: "stable", uris: u("/v")}}, rq{path: "/v"}, "stable"},
	{"vars/passing vars wins by priority", []rs{{id: "canary", uris: u("/v"), prio: 1, vars: `[["http_x_canary","==","1"]]`}, {id: "stable", uris: u("/v")}}, rq{path: "/v", vars: expr.MapVars{"http_x_canary": "1"}}, "canary"},
	{"vars/with host and method together", []rs{{id: "a", uris: u("/v*"), hosts: u("*.x.com"), methods: u("GET"), addrs: u("127.0.0.0/8"), vars: `[["arg_q","==","1"]]`}}, rq{path: "/v/1", host: "m.x.com", vars: expr.MapVars{"arg_q": "1"}}, "a"},
}

func TestConformance(t *testing.T) {
	if len(conformance) < 100 {
		t.Fatalf("conformance table has %d cases, want >= 100", len(conformance))
	}
	for _, c := range conformance {
		t.Run(c.name, func(t *testing.T) {
			r := build(t, c.routes)
			res, ok := r.Match(c.req.request())
			got := ""
			if ok {
				got = res.Route.Value
			}
			if got != c.want {
				t.Fatalf("Match(%+v) = %q, want %q", c.req, got, c.want)
			}
		})
	}
}
