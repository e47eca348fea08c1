package router

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/meshagent/meshagent/dataplane/expr"
)

// benchRouter builds n/4 routes of each kind: exact paths, prefixes, routes
// under wildcard hosts and exact-path routes guarded by vars.
func benchRouter(b *testing.B, n int) *Router[int] {
	b.Helper()
	routes := make([]Route[int], 0, n)
	n /= 4
	varsExpr := expr.MustCompile(`[["http_x_canary","==","1"],["arg_v","!","~~","^$"]]`)
	for i := 0; i < n; i++ {
		routes = append(routes,
			Route[int]{ID: fmt.Sprintf("e%d", i), URIs: []string{fmt.Sprintf("/api/v1/svc%d/items", i)}, Methods: []string{"GET"}, Value: i},
			Route[int]{ID: fmt.Sprintf("p%d", i), URIs: []string{fmt.Sprintf("/static/svc%d/*", i)}, Value: i},
			Route[int]{ID: fmt.Sprintf("h%d", i), URIs: []string{"/*"}, Hosts: []string{fmt.Sprintf("*.tenant%d.example.com", i)}, Value: i},
			Route[int]{ID: fmt.Sprintf("v%d", i), URIs: []string{fmt.Sprintf("/canary/svc%d", i)}, Vars: varsExpr, Priority: 1, Value: i},
		)
	}
	r, err := New(routes)
	if err != nil {
		b.Fatal(err)
	}
	return r
}

// benchVars answers two variables without allocating.
type benchVars struct{}

func (benchVars) Var(v expr.Var) (string, bool) {
	switch {
	case v.Kind == expr.KindHeader && v.Name == "x-canary":
		return "1", true
	case v.Kind == expr.KindArg && v.Name == "v":
		return "2", true
	}
	return "", false
}

func BenchmarkMatch(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		r := benchRouter(b, n)
		mid := n / 8
		cases := []struct {
			name string
			req  Request
		}{
			{"exact", Request{Path: fmt.Sprintf("/api/v1/svc%d/items", mid), Host: "api.example.com", Method: "GET"}},
			{"prefix", Request{Path: fmt.Sprintf("/static/svc%d/css/site.css", mid), Host: "api.example.com", Method: "GET"}},
			{"host-wildcard", Request{Path: "/anything", Host: fmt.Sprintf("shop.tenant%d.example.com", mid), Method: "GET"}},
			{"vars", Request{Path: fmt.Sprintf("/canary/svc%d", mid), Host: "api.example.com", Method: "GET", Vars: benchVars{}}},
			{"miss", Request{Path: "/nothing/here", Host: "api.example.com", Method: "GET"}},
		}
		for _, c := range cases {
			req := c.req
			req.RemoteAddr = netip.MustParseAddr("10.0.0.1")
			if _, ok := r.Match(&req); ok == (c.name == "miss") {
				b.Fatalf("%s: unexpected match result %v", c.name, ok)
			}
			b.Run(fmt.Sprintf("routes=%d/%s", n, c.name), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					r.Match(&req)
				}
			})
		}
	}
}

func BenchmarkNew(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		benchRouter(b, 4000)
	}
}
