package router

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/meshagent/meshagent/dataplane/expr"
	"github.com/meshagent/meshagent/etcdcompat/apisix"
)

// fixedVars answers every variable with the same value, without allocating.
type fixedVars string

func (f fixedVars) Var(expr.Var) (string, bool) { return string(f), true }

// countingVars records how often vars are consulted.
type countingVars struct{ n int }

func (c *countingVars) Var(expr.Var) (string, bool) { c.n++; return "1", true }

func TestConditionOrderVarsLast(t *testing.T) {
	cases := []struct {
		name      string
		route     rs
		req       rq
		wantCalls bool
	}{
		{"methods fail before vars", rs{id: "a", uris: u("/o"), methods: u("POST"), vars: `[["arg_x","==","1"]]`}, rq{path: "/o"}, false},
		{"remote_addrs fail before vars", rs{id: "a", uris: u("/o"), addrs: u("10.0.0.0/8"), vars: `[["arg_x","==","1"]]`}, rq{path: "/o"}, false},
		{"hosts fail before vars", rs{id: "a", uris: u("/o"), hosts: u("a.com"), vars: `[["arg_x","==","1"]]`}, rq{path: "/o", host: "b.com"}, false},
		{"vars consulted when the rest passes", rs{id: "a", uris: u("/o"), methods: u("GET"), vars: `[["arg_x","==","1"]]`}, rq{path: "/o"}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := build(t, []rs{c.route})
			cv := &countingVars{}
			req := c.req.request()
			req.Vars = cv
			r.Match(req)
			if (cv.n > 0) != c.wantCalls {
				t.Fatalf("vars consulted %d times, want consulted=%v", cv.n, c.wantCalls)
			}
		})
	}
}

func TestResultNamesPatterns(t *testing.T) {
	r := build(t, []rs{{id: "a", uris: u("/x", "/api/*"), hosts: u("*.x.com")}, {id: "b", uris: u("/b")}})
	res, ok := r.Match(rq{path: "/api/v1", host: "m.x.com"}.request())
	if !ok || res.URI != "/api/*" || res.Host != "*.x.com" || res.Route.ID != "a" {
		t.Fatalf("got %+v ok=%v", res, ok)
	}
	res, ok = r.Match(rq{path: "/b"}.request())
	if !ok || res.URI != "/b" || res.Host != "" {
		t.Fatalf("got %+v ok=%v", res, ok)
	}
	if len(r.Routes()) != 2 {
		t.Fatalf("Routes() = %d", len(r.Routes()))
	}
}

func TestNewRejectsBadRoutes(t *testing.T) {
	cases := []struct {
		name    string
		route   Route[int]
		wantSub string
	}{
		{"no uris", Route[int]{ID: "r1"}, `"r1": uris`},
		{"empty uri", Route[int]{ID: "r1", URIs: []string{""}}, "uris[0]"},
		{"bad host", Route[int]{ID: "r1", URIs: []string{"/"}, Hosts: []string{"a b.com"}}, "hosts[0]"},
		{"star inside host", Route[int]{ID: "r1", URIs: []string{"/"}, Hosts: []string{"a.*.com"}}, "hosts[0]"},
		{"bad method", Route[int]{ID: "r1", URIs: []string{"/"}, Methods: []string{"GET", "FETCH"}}, "methods[1]"},
		{"bad remote addr", Route[int]{ID: "r1", URIs: []string{"/"}, RemoteAddrs: []string{"10.0.0.0/40"}}, "remote_addrs[0]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := New([]Route[int]{c.route})
			if err == nil || !errors.Is(err, ErrInvalidRoute) || !strings.Contains(err.Error(), c.wantSub) {
				t.Fatalf("New error = %v, want ErrInvalidRoute containing %q", err, c.wantSub)
			}
		})
	}
}

func TestNewDoesNotAliasInput(t *testing.T) {
	routes := []Route[int]{{ID: "a", URIs: []string{"/a"}, Hosts: []string{"A.com"}, Value: 1}}
	r, err := New(routes)
	if err != nil {
		t.Fatal(err)
	}
	routes[0].URIs[0] = "/changed"
	routes[0].Hosts[0] = "changed.com"
	res, ok := r.Match(rq{path: "/a", host: "a.com"}.request())
	if !ok || res.Route.Value != 1 || res.Route.Hosts[0] != "a.com" {
		t.Fatalf("got %+v %v", res, ok)
	}
}

func TestFromAPISIX(t *testing.T) {
	zero, one := 0, 1
	svc := &apisix.Service{ID: "s1", Hosts: []string{"svc.example.com"}}
	cases := []struct {
		name  string
		route apisix.Route
		svc   *apisix.Service
		req   rq
		match bool
	}{
		{"uri field", apisix.Route{ID: "1", URI: "/a"}, nil, rq{path: "/a"}, true},
		{"uris field", apisix.Route{ID: "1", URIs: []string{"/x", "/a"}}, nil, rq{path: "/a"}, true},
		{"host field", apisix.Route{ID: "1", URI: "/a", Host: "h.com"}, nil, rq{path: "/a", host: "other.com"}, false},
		{"service hosts apply to a route without hosts", apisix.Route{ID: "1", URI: "/a", ServiceID: "s1"}, svc, rq{path: "/a", host: "other.com"}, false},
		{"service hosts match", apisix.Route{ID: "1", URI: "/a", ServiceID: "s1"}, svc, rq{path: "/a", host: "svc.example.com"}, true},
		{"route hosts override service hosts", apisix.Route{ID: "1", URI: "/a", Hosts: []string{"own.com"}, ServiceID: "s1"}, svc, rq{path: "/a", host: "own.com"}, true},
		{"remote_addr field", apisix.Route{ID: "1", URI: "/a", RemoteAddr: "10.0.0.0/8"}, nil, rq{path: "/a"}, false},
		{"status 0 is not routed", apisix.Route{ID: "1", URI: "/a", Status: &zero}, nil, rq{path: "/a"}, false},
		{"status 1 is routed", apisix.Route{ID: "1", URI: "/a", Status: &one}, nil, rq{path: "/a"}, true},
		{"vars compiled", apisix.Route{ID: "1", URI: "/a", Vars: json.RawMessage(`[["arg_k","==","v"]]`)}, nil, rq{path: "/a", vars: expr.MapVars{"arg_k": "v"}}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rt, err := FromAPISIX(&c.route, c.svc, "payload")
			if err != nil {
				t.Fatal(err)
			}
			r, err := New([]Route[string]{rt})
			if err != nil {
				t.Fatal(err)
			}
			res, ok := r.Match(c.req.request())
			if ok != c.match || (ok && res.Route.Value != "payload") {
				t.Fatalf("match = %v (%+v), want %v", ok, res, c.match)
			}
		})
	}
	for _, bad := range []apisix.Route{
		{ID: "f", URI: "/a", FilterFunc: "function(vars) return true end"},
		{ID: "v", URI: "/a", Vars: json.RawMessage(`[["a","bogus","b"]]`)},
		{ID: "n"},
	} {
		if _, err := FromAPISIX(&bad, nil, ""); !errors.Is(err, ErrInvalidRoute) {
			t.Errorf("FromAPISIX(%s) error = %v, want ErrInvalidRoute", bad.ID, err)
		}
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	var specs []rs
	for i := 0; i < 200; i++ {
		specs = append(specs,
			rs{id: fmt.Sprintf("e%d", i), uris: u(fmt.Sprintf("/svc%d/exact", i))},
			rs{id: fmt.Sprintf("p%d", i), uris: u(fmt.Sprintf("/svc%d/*", i)), methods: u("GET", "POST")},
			rs{id: fmt.Sprintf("h%d", i), uris: u("/*"), hosts: u(fmt.Sprintf("*.h%d.example.com", i)), vars: `[["http_x","~~","^a"]]`},
			rs{id: fmt.Sprintf("m%d", i), uris: u(fmt.Sprintf("/m%d/*/x", i)), hosts: u(fmt.Sprintf("svc%d:8080", i))},
		)
	}
	r := build(t, specs)
	var vars expr.Vars = fixedVars("abc")
	reqs := []*Request{
		{Path: "/svc7/exact", Host: "example.com", Method: "GET"},
		{Path: "/svc7/deep/path", Host: "Example.COM", Method: "POST", RemoteAddr: netip.MustParseAddr("10.0.0.1")},
		{Path: "/z", Host: "a.h9.example.com", Method: "GET", Vars: vars},
		{Path: "/m3/q/x", Host: "svc3", HostHeader: "SVC3:8080", Method: "GET"},
		{Path: "/none", Host: "nothing.org", Method: "GET"},
	}
	for _, req := range reqs {
		if n := testing.AllocsPerRun(200, func() { r.Match(req) }); n != 0 {
			t.Errorf("Match(%s %s) allocates %v times", req.Host, req.Path, n)
		}
	}
}

// FuzzMatch checks that random paths and hosts never panic and that a
// result, when found, really satisfies its route's patterns.
func FuzzMatch(f *testing.F) {
	specs := []rs{
		{id: "e", uris: u("/a/b")}, {id: "p", uris: u("/a/*")}, {id: "m", uris: u("/a/*/c/:id")},
		{id: "r", uris: u("*")}, {id: "h", uris: u("/*"), hosts: u("*.x.com")}, {id: "x", uris: u("/x"), hosts: u("x.com", "p.com:81")},
	}
	r := build(f, specs)
	for _, s := range [][2]string{{"/a/b", "x.com"}, {"/a/q/c/1", "a.x.com"}, {"", ""}, {"/x", "P.COM:81"}, {"/\xff", "\x00"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, path, host string) {
		h := host
		if i := strings.LastIndexByte(h, ':'); i >= 0 {
			h = h[:i]
		}
		res, ok := r.Match(&Request{Path: path, Host: h, HostHeader: host, Method: "GET"})
		if !ok {
			t.Fatalf("catch-all route * did not match %q", path)
		}
		uri := res.URI
		switch {
		case !strings.Contains(uri, "*") && uri != path:
			t.Fatalf("exact %q matched %q", uri, path)
		case strings.Contains(uri, "*") && !strings.HasPrefix(path, uri[:strings.IndexByte(uri, '*')]):
			t.Fatalf("prefix %q matched %q", uri, path)
		}
		lh, lhh := strings.ToLower(h), strings.ToLower(host)
		switch p := res.Host; {
		case p == "":
		case p[0] == '*':
			if !strings.HasSuffix(lh, p[1:]) && !strings.HasSuffix(lhh, p[1:]) {
				t.Fatalf("host %q matched wildcard %q", host, p)
			}
		case lh != p && lhh != p:
			t.Fatalf("host %q matched exact %q", host, p)
		}
	})
}

// FuzzNew compiles routes from random uri, host and remote address strings:
// New either rejects them with ErrInvalidRoute or builds a router that
// matches a request for the route's own literal path and host.
func FuzzNew(f *testing.F) {
	for _, s := range [][3]string{{"/a/*/b", "*.x.com", "10.0.0.0/8"}, {"*", "*", "::1"}, {"/:x/*", "h:80", ""}, {"", "", ""}} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, uri, host, addr string) {
		rt := Route[int]{ID: "f", URIs: []string{uri}}
		if host != "" {
			rt.Hosts = []string{host}
		}
		if addr != "" {
			rt.RemoteAddrs = []string{addr}
		}
		r, err := New([]Route[int]{rt})
		if err != nil {
			if !errors.Is(err, ErrInvalidRoute) {
				t.Fatalf("error %v does not wrap ErrInvalidRoute", err)
			}
			return
		}
		if strings.Contains(uri, "*") || strings.Contains(host, "*") {
			r.Match(&Request{Path: uri, Host: host, HostHeader: host, Method: "GET"})
			return
		}
		ra := netip.Addr{}
		if addr != "" {
			p, _ := expr.ParsePrefix(addr)
			ra = p.Addr()
		}
		h := strings.ToLower(host)
		if _, ok := r.Match(&Request{Path: uri, Host: h, HostHeader: h, Method: "GET", RemoteAddr: ra}); !ok {
			t.Fatalf("route %q host %q addr %q does not match its own literal request", uri, host, addr)
		}
	})
}
