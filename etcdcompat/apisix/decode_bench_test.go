package apisix

import (
	"encoding/json"
	"testing"
)

// A typical translated route and upstream (sizes like the xDS translation
// writes for an Istio service).
const (
	benchRoute = `{"id":"outbound_8080__reviews.default.svc.cluster.local-0","name":"reviews-v1","uri":"/reviews/*",
"hosts":["reviews.default.svc.cluster.local","reviews","reviews.default"],"methods":["GET","POST"],"priority":10,
"vars":[["http_x_canary","==","1"],["arg_debug","!","~~","^$"]],
"labels":{"meshagent.xds.name":"8080","meshagent.xds.version":"2026-11-21T06:00:00Z/1","meshagent.route_config":"8080"},
"timeout":{"connect":1,"send":15,"read":15},"upstream_id":"outbound_8080__reviews.default.svc.cluster.local",
"plugins":{"proxy-rewrite":{"headers":{"set":{"x-envoy-attempt-count":"1"}}},"traffic-split":{"rules":[{"weighted_upstreams":[{"upstream_id":"v1","weight":80},{"weight":20}]}]}}}`
	benchUpstream = `{"id":"outbound_8080__reviews.default.svc.cluster.local","type":"least_conn","scheme":"http","pass_host":"pass",
"nodes":[{"host":"10.0.1.11","port":9080,"weight":1,"priority":0,"metadata":{"zone":"a"}},{"host":"10.0.1.12","port":9080,"weight":1},
{"host":"10.0.2.13","port":9080,"weight":1,"priority":-1}],"retries":2,"timeout":{"connect":1,"send":10,"read":10},
"keepalive_pool":{"size":64,"idle_timeout":30,"requests":1000},
"checks":{"active":{"type":"http","http_path":"/healthz","healthy":{"interval":2,"successes":2},"unhealthy":{"interval":1,"http_failures":3}},
"passive":{"unhealthy":{"http_statuses":[502,503],"http_failures":3}}},
"labels":{"meshagent.xds.name":"outbound|8080||reviews.default.svc.cluster.local"}}`
)

func BenchmarkDecodeRoute(b *testing.B) {
	data := []byte(benchRoute)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode([]byte("/apisix/routes/r1"), data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeUpstream(b *testing.B) {
	data := []byte(benchUpstream)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode([]byte("/apisix/upstreams/u1"), data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStdlibUnmarshalRoute is the baseline: encoding/json into the
// same type, without strictness, paths, defaults or validation.
func BenchmarkStdlibUnmarshalRoute(b *testing.B) {
	data := []byte(benchRoute)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		var r Route
		if err := json.Unmarshal(data, &r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLoadStandalone(b *testing.B) {
	data := []byte(sampleYAML)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := LoadStandalone(data); err != nil {
			b.Fatal(err)
		}
	}
}
