package dataplane

import (
	"net"
	"net/netip"
	"testing"

	"github.com/valyala/fasthttp"
)

// BenchmarkOrigDstForward measures HTTP/1.1 forwarding to an original_dst
// upstream (Istio's PassthroughCluster): "conn" through an
// original_dst_filter listener whose connections carry the destination
// (the captured path), "header" through the static listener with
// x-envoy-original-dst-host (use_http_header). Both include the
// per-destination pool lookup; allocs/op counts the whole process.
func BenchmarkOrigDstForward(b *testing.B) {
	for _, bc := range []string{"conn", "header"} {
		b.Run(bc, func(b *testing.B) {
			be := fastBackend(b)
			e := newEnv(b, func(o *Options) {
				o.OriginalDst = func(net.Conn) (netip.AddrPort, error) { return netip.MustParseAddrPort(be), nil }
			})
			e.put("/apisix/routes/in", `{"uri":"/*","labels":{"meshagent.route_config":"in"},"upstream":`+odUpstream+`}}`)
			e.put("/apisix/routes/hdr", `{"uri":"/*","upstream":`+odUpstream+`,"discovery_args":{"use_http_header":true}}}`)
			e.put("/meshagent/listeners/in", `{"address":"127.0.0.1:0","labels":{"meshagent.original_dst_filter":"true"},"filter_chains":[{"kind":"http","route_config":"in"}]}`)
			addr := e.http
			if bc == "conn" {
				a, _ := e.dp.ListenerAddr("in")
				addr = a.String()
			}
			hc := &fasthttp.HostClient{Addr: addr, MaxConns: 64}
			do := func(req *fasthttp.Request, resp *fasthttp.Response) error {
				req.SetRequestURI("http://bench.local/bench")
				if bc == "header" {
					req.Header.Set("X-Envoy-Original-Dst-Host", be)
				}
				return hc.Do(req, resp)
			}
			for range 100 {
				req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
				if err := do(req, resp); err != nil || resp.StatusCode() != 200 {
					b.Fatalf("warm-up: %v %d", err, resp.StatusCode())
				}
				fasthttp.ReleaseRequest(req)
				fasthttp.ReleaseResponse(resp)
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
				defer fasthttp.ReleaseRequest(req)
				defer fasthttp.ReleaseResponse(resp)
				for pb.Next() {
					if err := do(req, resp); err != nil || resp.StatusCode() != 200 {
						b.Errorf("%v %d", err, resp.StatusCode())
						return
					}
				}
			})
		})
	}
}
