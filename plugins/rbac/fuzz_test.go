package rbac

import (
	"encoding/json"
	"testing"
)

// FuzzCompile feeds arbitrary bytes to the policy compiler (configs come
// from a control plane) and evaluates whatever compiles.
func FuzzCompile(f *testing.F) {
	f.Add([]byte(`{"filters":[{"stage":"http","config":{"rules":{"policies":{"p":{"permissions":[{"urlPath":{"path":{"prefix":"/a"}}}],"principals":[{"authenticated":{"principalName":{"exact":"spiffe://x"}}}]}}}}}]}`))
	f.Add([]byte(`{"filters":[{"stage":"network","config":{"rules":{"action":"DENY","policies":{"p":{"permissions":[{"notRule":{"destinationPort":1}}],"principals":[{"orIds":{"ids":[{"remoteIp":{"addressPrefix":"::1","prefixLen":128}}]}}]}}}}}]}`))
	f.Add([]byte(`{"filters":[{"stage":"http","config":{"rules":{"policies":{"p":{"permissions":[{"header":{"name":"x","rangeMatch":{"start":"1","end":"9"}}}],"principals":[{"any":true}]}}}}}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Compile(json.RawMessage(b))
		if err != nil {
			return
		}
		c := conn("10.0.0.1:1", "10.0.0.2:80", "spiffe://x")
		p.AllowConn(c)
		p.AllowRequest(c, hdrs{":path": "/a?b", ":method": "GET", "x": "5"})
	})
}
