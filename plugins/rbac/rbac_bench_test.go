package rbac

import (
	"encoding/json"
	"testing"
)

// BenchmarkAllowRequest evaluates an Istio-like policy set (3 policies,
// principal + path + method) per request; it must not allocate.
func BenchmarkAllowRequest(b *testing.B) {
	p, err := Compile(json.RawMessage(`{"filters":[{"stage":"http","config":{"rules":{"policies":{
	  "a":{"permissions":[{"andRules":{"rules":[{"header":{"name":":method","stringMatch":{"exact":"POST"}}},{"urlPath":{"path":{"prefix":"/admin"}}}]}}],"principals":[{"authenticated":{"principalName":{"exact":"spiffe://cluster.local/ns/ops/sa/admin"}}}]},
	  "b":{"permissions":[{"urlPath":{"path":{"prefix":"/api/"}}}],"principals":[{"authenticated":{"principalName":{"prefix":"spiffe://cluster.local/ns/default/"}}}]},
	  "c":{"permissions":[{"destinationPort":8080}],"principals":[{"remoteIp":{"addressPrefix":"10.0.0.0","prefixLen":8}}]}}}}}]}`))
	if err != nil {
		b.Fatal(err)
	}
	c := conn("192.168.0.1:1000", "10.0.0.2:9090", "spiffe://cluster.local/ns/default/sa/web")
	h := hdrs{":method": "GET", ":path": "/api/items?id=1"}
	var hs Headers = h
	b.ReportAllocs()
	for b.Loop() {
		if !p.AllowRequest(c, hs) {
			b.Fatal("denied")
		}
	}
}
