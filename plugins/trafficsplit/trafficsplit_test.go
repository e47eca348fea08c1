package trafficsplit_test

import (
	"testing"

	"github.com/meshagent/meshagent/plugins/plugintest"

	_ "github.com/meshagent/meshagent/plugins/trafficsplit"
)

// Schema violations are rejected at snapshot build with the field named.
func TestTrafficSplitSchema(t *testing.T) {
	e := plugintest.New(t)
	cases := []struct{ plugins, field string }{
		{`{"traffic-split":{"rules":[{"weighted_upstreams":[]}]}}`, "weighted_upstreams"},
		{`{"traffic-split":{"rules":[{"weighted_upstreams":[{"weight":-1}]}]}}`, "weight"},
		{`{"traffic-split":{"rules":[{"weighted_upstreams":[{"upstream_id":"missing"}]}]}}`, "upstream_id"},
		{`{"traffic-split":{"rules":[{"match":[{"vars":[["arg_x","=~","1"]]}],"weighted_upstreams":[{"weight":1}]}]}}`, "vars"},
		{`{"traffic-split":{"rules":[{"weighted_upstreams":[{"weight":1}],"extra":1}]}}`, "extra"},
		{`{"traffic-split":{"rules":[{"weighted_upstreams":[{"upstream":{"nodes":{"127.0.0.1:1":1},"bogus":true}}]}]}}`, "bogus"},
	}
	for i, c := range cases {
		e.Rejected("bad"+string(rune('a'+i)), "/bad", c.plugins, c.field)
	}
}

// With weights 0 everywhere the route's own upstream serves.
func TestTrafficSplitZeroWeights(t *testing.T) {
	e := plugintest.New(t)
	e.Route("z", "/z", `{"traffic-split":{"rules":[{"weighted_upstreams":[{"upstream":{"nodes":{"127.0.0.1:1":1}},"weight":0}]}]}}`)
	for range 3 {
		if r := e.Do("GET", "/z"); r.Status != 200 || r.Header.Get("X-Backend") != "echo" {
			t.Fatalf("%d %v", r.Status, r.Header)
		}
	}
}
