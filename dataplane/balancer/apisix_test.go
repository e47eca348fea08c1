package balancer

import (
	"errors"
	"strings"
	"testing"

	"github.com/meshagent/meshagent/dataplane/expr"
	"github.com/meshagent/meshagent/etcdcompat/apisix"
)

func TestNodesFromUpstream(t *testing.T) {
	got, err := NodesFromUpstream(&apisix.Upstream{Scheme: "https", Nodes: apisix.Nodes{
		{Host: "a.svc", Weight: 3}, {Host: "10.0.0.1", Port: 8080, Weight: 1, Priority: -1}, {Host: "[::1]", Port: 9, Weight: 0},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := []Node{{Addr: "a.svc:443", Weight: 3}, {Addr: "10.0.0.1:8080", Weight: 1, Priority: -1}, {Addr: "[::1]:9"}}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("node %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if n, _ := NodesFromUpstream(&apisix.Upstream{Nodes: apisix.Nodes{{Host: "h", Weight: 1}}}); n[0].Addr != "h:80" {
		t.Errorf("http default port: %s", n[0].Addr)
	}
	for _, bad := range []struct {
		u    *apisix.Upstream
		want string
	}{
		{nil, "upstream is missing"},
		{&apisix.Upstream{}, "nodes: at least one"},
		{&apisix.Upstream{ServiceName: "x", DiscoveryType: "dns"}, "discovery (dns)"},
		{&apisix.Upstream{Nodes: apisix.Nodes{{Host: "h", Port: 70000}}}, "nodes[0].port"},
		{&apisix.Upstream{Nodes: apisix.Nodes{{Host: "h", Weight: -2}}}, "nodes[0].weight"},
		{&apisix.Upstream{Nodes: apisix.Nodes{{Weight: 1}}}, "nodes[0].host"},
	} {
		if _, err := NodesFromUpstream(bad.u); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("err = %v, want %q", err, bad.want)
		}
	}
}

func TestKeySpec(t *testing.T) {
	vars := expr.MapVars{"remote_addr": "10.1.1.1", "uri": "/p", "arg_user": "u7", "http_x_tenant": "t1", "cookie_sid": "s9", "consumer_name": "jack"}
	cases := []struct {
		hashOn, key, want string
	}{
		{"", "", "10.1.1.1"},
		{"vars", "uri", "/p"},
		{"vars", "arg_user", "u7"},
		{"vars", "arg_missing", "10.1.1.1"},
		{"header", "x_tenant", "t1"},
		{"header", "X-Tenant", "t1"},
		{"cookie", "sid", "s9"},
		{"consumer", "", "jack"},
		{"vars_combinations", "$remote_addr-$uri", "10.1.1.1-/p"},
		{"vars_combinations", "${arg_user}x$nope", "u7x"},
		{"vars_combinations", "$nope$none", "10.1.1.1"},
	}
	for _, c := range cases {
		k, err := NewKeySpec(c.hashOn, c.key)
		if err != nil {
			t.Fatalf("%s/%s: %v", c.hashOn, c.key, err)
		}
		if got := string(k.Append(nil, vars)); got != c.want {
			t.Errorf("%s/%s: key %q, want %q", c.hashOn, c.key, got, c.want)
		}
	}
	for _, bad := range [][2]string{{"vars", "http_x"}, {"header", ""}, {"cookie", ""}, {"vars_combinations", ""}, {"body", "x"}} {
		if _, err := NewKeySpec(bad[0], bad[1]); !errors.Is(err, ErrInvalid) {
			t.Errorf("NewKeySpec(%q, %q) err = %v", bad[0], bad[1], err)
		}
	}
}

func TestResetBytesSameRingPosition(t *testing.T) {
	p := mustNew(t, CHash, nodes(1, 1, 1, 1, 1), nil)
	for _, key := range []string{"a", "user-1", "", "10.0.0.1"} {
		var a, b Attempt
		a.Reset(key, nil)
		b.ResetBytes([]byte(key), nil)
		x, _ := p.Pick(&a)
		y, _ := p.Pick(&b)
		if x != y {
			t.Fatalf("key %q: string picks %d, bytes pick %d", key, x, y)
		}
	}
}

func TestTries(t *testing.T) {
	zero, two, ten := 0, 2, 10
	cases := []struct {
		u     *apisix.Upstream
		nodes int
		want  int
	}{
		{&apisix.Upstream{}, 3, 3},
		{nil, 4, 4},
		{&apisix.Upstream{Retries: &zero}, 3, 1},
		{&apisix.Upstream{Retries: &two}, 5, 3},
		{&apisix.Upstream{Retries: &ten}, 5, 5},
		{&apisix.Upstream{}, 0, 0},
	}
	for _, c := range cases {
		if got := Tries(c.u, c.nodes); got != c.want {
			t.Errorf("Tries(%+v, %d) = %d, want %d", c.u, c.nodes, got, c.want)
		}
	}
}
