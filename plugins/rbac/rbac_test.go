package rbac

import (
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

type hdrs map[string]string

func (h hdrs) Header(n string) (string, bool) { v, ok := h[n]; return v, ok }

func conn(src, dst, principal string) *Conn {
	c := &Conn{
		DirectSource: netip.MustParseAddrPort(src), Dest: netip.MustParseAddrPort(dst),
		Authenticated: principal != "", Principal: principal,
	}
	c.Source = c.DirectSource
	return c
}

func TestEngine(t *testing.T) {
	web := conn("10.1.2.3:5000", "10.0.0.1:8080", "spiffe://cluster.local/ns/default/sa/web")
	anon := conn("192.168.1.9:5000", "10.0.0.1:9090", "")
	get := hdrs{":method": "GET", ":path": "/api/v1/items?x=1", ":authority": "svc", "x-env": "prod", "x-n": "42"}
	post := hdrs{":method": "POST", ":path": "/admin", ":authority": "svc"}
	cases := []struct {
		name  string
		rules string
		c     *Conn
		h     Headers
		want  bool
	}{
		{"no policies ALLOW denies", `{}`, web, get, false},
		{"no policies DENY allows", `{"action":"DENY"}`, web, get, true},
		{"any/any", `{"policies":{"p":{"permissions":[{"any":true}],"principals":[{"any":true}]}}}`, anon, nil, true},
		{"principal exact", `{"policies":{"p":{"permissions":[{"any":true}],"principals":[{"authenticated":{"principalName":{"exact":"spiffe://cluster.local/ns/default/sa/web"}}}]}}}`, web, get, true},
		{"principal mismatch", `{"policies":{"p":{"permissions":[{"any":true}],"principals":[{"authenticated":{"principalName":{"exact":"spiffe://cluster.local/ns/default/sa/db"}}}]}}}`, web, get, false},
		{"principal regex", `{"policies":{"p":{"permissions":[{"any":true}],"principals":[{"authenticated":{"principalName":{"safeRegex":{"regex":"spiffe://cluster\\.local/ns/default/.*"}}}}]}}}`, web, get, true},
		{"authenticated any needs a cert", `{"policies":{"p":{"permissions":[{"any":true}],"principals":[{"authenticated":{}}]}}}`, anon, get, false},
		{"path prefix ignores query", `{"policies":{"p":{"permissions":[{"urlPath":{"path":{"exact":"/api/v1/items"}}}],"principals":[{"any":true}]}}}`, web, get, true},
		{"path ignore case", `{"policies":{"p":{"permissions":[{"urlPath":{"path":{"prefix":"/API/","ignoreCase":true}}}],"principals":[{"any":true}]}}}`, web, get, true},
		{"method header", `{"policies":{"p":{"permissions":[{"header":{"name":":method","stringMatch":{"exact":"GET"}}}],"principals":[{"any":true}]}}}`, web, post, false},
		{"header present", `{"policies":{"p":{"permissions":[{"header":{"name":"x-env","presentMatch":true}}],"principals":[{"any":true}]}}}`, web, get, true},
		{"header inverted", `{"policies":{"p":{"permissions":[{"header":{"name":"x-env","exactMatch":"prod","invertMatch":true}}],"principals":[{"any":true}]}}}`, web, get, false},
		{"header range", `{"policies":{"p":{"permissions":[{"header":{"name":"x-n","rangeMatch":{"start":"40","end":"50"}}}],"principals":[{"any":true}]}}}`, web, get, true},
		{"header missing", `{"policies":{"p":{"permissions":[{"header":{"name":"x-none","exactMatch":""}}],"principals":[{"any":true}]}}}`, web, get, false},
		{"destination port", `{"policies":{"p":{"permissions":[{"destinationPort":8080}],"principals":[{"any":true}]}}}`, anon, nil, false},
		{"destination port range", `{"policies":{"p":{"permissions":[{"destinationPortRange":{"start":9000,"end":9100}}],"principals":[{"any":true}]}}}`, anon, nil, true},
		{"destination ip", `{"policies":{"p":{"permissions":[{"destinationIp":{"addressPrefix":"10.0.0.0","prefixLen":8}}],"principals":[{"any":true}]}}}`, anon, nil, true},
		{"source cidr", `{"policies":{"p":{"permissions":[{"any":true}],"principals":[{"directRemoteIp":{"addressPrefix":"10.0.0.0","prefixLen":8}}]}}}`, anon, nil, false},
		{"remote ip", `{"policies":{"p":{"permissions":[{"any":true}],"principals":[{"remoteIp":{"addressPrefix":"192.168.0.0","prefixLen":16}}]}}}`, anon, nil, true},
		{"source ip (deprecated)", `{"policies":{"p":{"permissions":[{"any":true}],"principals":[{"sourceIp":{"addressPrefix":"10.1.2.3","prefixLen":32}}]}}}`, web, nil, true},
		{"and rules", `{"policies":{"p":{"permissions":[{"andRules":{"rules":[{"destinationPort":8080},{"urlPath":{"path":{"prefix":"/api"}}}]}}],"principals":[{"any":true}]}}}`, web, get, true},
		{"or ids", `{"policies":{"p":{"permissions":[{"any":true}],"principals":[{"orIds":{"ids":[{"authenticated":{"principalName":{"exact":"x"}}},{"remoteIp":{"addressPrefix":"10.1.0.0","prefixLen":16}}]}}]}}}`, web, get, true},
		{"not rule", `{"policies":{"p":{"permissions":[{"notRule":{"urlPath":{"path":{"prefix":"/admin"}}}}],"principals":[{"any":true}]}}}`, web, post, false},
		{"not id", `{"policies":{"p":{"permissions":[{"any":true}],"principals":[{"notId":{"authenticated":{}}}]}}}`, anon, nil, true},
		{"DENY matching", `{"action":"DENY","policies":{"p":{"permissions":[{"urlPath":{"path":{"prefix":"/admin"}}}],"principals":[{"any":true}]}}}`, web, post, false},
		{"DENY not matching", `{"action":"DENY","policies":{"p":{"permissions":[{"urlPath":{"path":{"prefix":"/admin"}}}],"principals":[{"any":true}]}}}`, web, get, true},
		{"LOG never denies", `{"action":"LOG","policies":{"p":{"permissions":[{"any":true}],"principals":[{"any":true}]}}}`, web, get, true},
		{"path without headers (network stage)", `{"policies":{"p":{"permissions":[{"urlPath":{"path":{"prefix":"/"}}}],"principals":[{"any":true}]}}}`, web, nil, false},
		{"sni", `{"policies":{"p":{"permissions":[{"requestedServerName":{"suffix":".local"}}],"principals":[{"any":true}]}}}`, &Conn{SNI: "db.svc.local"}, nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, err := CompileRules("rules", json.RawMessage(tc.rules))
			if err != nil {
				t.Fatal(err)
			}
			if got := e.Allowed(tc.c, tc.h); got != tc.want {
				t.Fatalf("Allowed = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	cases := []struct{ name, cfg, field string }{
		{"no filters", `{"filters":[]}`, `"filters"`},
		{"bad stage", `{"filters":[{"stage":"tcp","config":{}}]}`, `filters[0].stage`},
		{"unknown field", `{"filters":[{"stage":"http","config":{"rulez":{}}}]}`, `filters[0].config`},
		{"condition", `{"filters":[{"stage":"http","config":{"rules":{"policies":{"p":{"permissions":[{"any":true}],"principals":[{"any":true}],"condition":{"constExpr":{"boolValue":true}}}}}}}]}`, `policies.p.condition`},
		{"metadata permission", `{"filters":[{"stage":"http","config":{"rules":{"policies":{"p":{"permissions":[{"metadata":{"filter":"x"}}],"principals":[{"any":true}]}}}}}]}`, `permissions[0].metadata`},
		{"two rules in one", `{"filters":[{"stage":"http","config":{"rules":{"policies":{"p":{"permissions":[{"any":true,"destinationPort":80}],"principals":[{"any":true}]}}}}}]}`, `permissions[0]`},
		{"bad cidr", `{"filters":[{"stage":"network","config":{"rules":{"policies":{"p":{"permissions":[{"any":true}],"principals":[{"remoteIp":{"addressPrefix":"10.0.0","prefixLen":8}}]}}}}}]}`, `principals[0].remoteIp`},
		{"bad regex", `{"filters":[{"stage":"http","config":{"rules":{"policies":{"p":{"permissions":[{"urlPath":{"path":{"safeRegex":{"regex":"("}}}}],"principals":[{"any":true}]}}}}}]}`, `urlPath.path.safeRegex`},
		{"bad action", `{"filters":[{"stage":"http","config":{"rules":{"action":"MAYBE"}}}]}`, `rules.action`},
		{"matcher api", `{"filters":[{"stage":"http","config":{"matcher":{}}}]}`, `matcher`},
		{"empty principals", `{"filters":[{"stage":"http","config":{"rules":{"policies":{"p":{"permissions":[{"any":true}],"principals":[]}}}}}]}`, `policies.p`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile(json.RawMessage(tc.cfg))
			if err == nil {
				t.Fatal("compiled, want error")
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("error %q: want ErrInvalid naming %s", err, tc.field)
			}
		})
	}
}

// Kuma's inbound MeshTrafficPermission filter, as in the 2.14.3 fixture.
func TestPolicyStages(t *testing.T) {
	p, err := Compile(json.RawMessage(`{"filters":[
	  {"stage":"network","config":{"statPrefix":"x","rules":{"policies":{"mtp":{"permissions":[{"any":true}],"principals":[{"authenticated":{"principalName":{"prefix":"spiffe://default/"}}}]}}}}},
	  {"stage":"http","config":{"rules":{"policies":{"MeshTrafficPermission":{"permissions":[{"any":true}],"principals":[{"any":true}]}}}}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if !p.HasNetwork() || !p.HasHTTP() {
		t.Fatal("stages lost")
	}
	if p.AllowConn(conn("1.1.1.1:1", "2.2.2.2:2", "")) {
		t.Fatal("unauthenticated connection allowed")
	}
	c := conn("1.1.1.1:1", "2.2.2.2:2", "spiffe://default/web")
	if !p.AllowConn(c) || !p.AllowRequest(c, hdrs{}) {
		t.Fatal("mesh peer refused")
	}
	// A filter without rules enforces nothing.
	p, err = Compile(json.RawMessage(`{"filters":[{"stage":"http","config":{"shadowRules":{"policies":{}}}}]}`))
	if err != nil || !p.AllowRequest(c, hdrs{}) {
		t.Fatalf("rules-less filter: %v", err)
	}
}

// Matching must not allocate (it runs per connection and per request).
func TestAllowDoesNotAllocate(t *testing.T) {
	p, err := Compile(json.RawMessage(`{"filters":[{"stage":"http","config":{"rules":{"policies":{
	  "a":{"permissions":[{"andRules":{"rules":[{"header":{"name":":method","stringMatch":{"exact":"GET","ignoreCase":true}}},{"urlPath":{"path":{"prefix":"/api/"}}}]}}],
	       "principals":[{"authenticated":{"principalName":{"safeRegex":{"regex":"spiffe://default/.*"}}}}]}}}}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	c := conn("10.0.0.1:1", "10.0.0.2:80", "spiffe://default/web")
	var h Headers = hdrs{":method": "get", ":path": "/api/x?y=1"}
	if n := testing.AllocsPerRun(100, func() {
		if !p.AllowRequest(c, h) {
			t.Fatal("denied")
		}
	}); n != 0 {
		t.Fatalf("%v allocs per request", n)
	}
}
