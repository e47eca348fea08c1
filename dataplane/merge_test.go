package dataplane

import (
	"testing"
)

// Plugins are merged as APISIX merges them: service plugins, then the
// plugin_config, then the route's own (same name: the route wins); global
// rules run before the route's filters; a route without upstream uses its
// service's; route hosts default to the service's.
func TestPluginMergeAndServiceUpstream(t *testing.T) {
	e := newEnv(t, nil)
	a, b := backend(t, "a"), backend(t, "b")
	e.put("/apisix/services/s", `{"hosts":["svc.example.com"],"upstream":{"nodes":`+nodesJSON(a)+`},"plugins":{
		"proxy-rewrite":{"headers":{"set":{"X-Test-From":"service"}}},
		"fault-injection":{"abort":{"http_status":401,"vars":[[["http_x_svc_abort","==","1"]]]}}}}`)
	e.put("/apisix/plugin_configs/pc", `{"plugins":{"fault-injection":{"abort":{"http_status":402,"vars":[[["http_x_pc_abort","==","1"]]]}}}}`)
	e.put("/apisix/upstreams/ub", `{"nodes":`+nodesJSON(b)+`}`)
	e.put("/apisix/routes/svc", `{"uri":"/svc","service_id":"s"}`)
	e.put("/apisix/routes/over", `{"uri":"/over","service_id":"s","upstream_id":"ub","plugin_config_id":"pc",
		"plugins":{"proxy-rewrite":{"headers":{"set":{"X-Test-From":"route"}}}}}`)
	e.put("/apisix/global_rules/g", `{"plugins":{"fault-injection":{"abort":{"http_status":451,"vars":[[["http_x_global","==","1"]]]}}}}`)

	host := []string{"Host", "svc.example.com"}
	cases := []struct {
		name    string
		path    string
		hdr     []string
		status  int
		backend string
		from    string
	}{
		{"service upstream and plugins", "/svc", host, 200, "a", "service"},
		{"service hosts apply to its routes", "/svc", []string{"Host", "other.example.com"}, 404, "", ""},
		{"route plugin overrides service plugin", "/over", host, 200, "b", "route"},
		{"plugin_config overrides service plugin", "/over", append([]string{"X-Pc-Abort", "1"}, host...), 402, "", ""},
		{"service plugin replaced by plugin_config's", "/over", append([]string{"X-Svc-Abort", "1"}, host...), 200, "b", "route"},
		{"global rule runs first", "/svc", append([]string{"X-Global", "1"}, host...), 451, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.get(c.path, c.hdr...)
			if r.status != c.status || r.h.Get("X-Backend") != c.backend || r.h.Get("X-Echo-From") != c.from {
				t.Fatalf("status %d backend %q from %q; want %d %q %q", r.status, r.h.Get("X-Backend"), r.h.Get("X-Echo-From"), c.status, c.backend, c.from)
			}
		})
	}
}

// What the native data plane cannot run is refused, not ignored.
func TestUnsupportedFeaturesRejected(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.StreamListen = "127.0.0.1:0" })
	b := backend(t, "b")
	cases := []struct{ key, value string }{
		{"/apisix/routes/script", `{"uri":"/s","script":"local _M = {} return _M","upstream":{"nodes":` + nodesJSON(b) + `}}`},
		{"/apisix/stream_routes/sp", `{"plugins":{"limit-conn":{"conn":1,"burst":0,"default_conn_delay":0.1,"key":"remote_addr"}},"upstream":{"nodes":` + nodesJSON(b) + `}}`},
		{"/apisix/routes/unknown-plugin", `{"uri":"/u","plugins":{"no-such-plugin":{}},"upstream":{"nodes":` + nodesJSON(b) + `}}`},
	}
	for _, c := range cases {
		before := e.dp.Stats().ConfigRejected.Load()
		if err := e.tryPut(c.key, c.value); err != nil {
			continue // refused by the store's schema already: fine too
		}
		if e.dp.Stats().ConfigRejected.Load() == before {
			t.Errorf("%s accepted by the data plane", c.key)
		}
	}
	if r := e.get("/s"); r.status != 404 {
		t.Fatalf("script route serves: %d", r.status)
	}
}
