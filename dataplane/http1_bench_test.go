package dataplane

import (
	"net"
	"testing"

	"github.com/valyala/fasthttp"
)

// fastBackend is a fasthttp server answering a fixed 2-byte body.
func fastBackend(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := &fasthttp.Server{Handler: func(c *fasthttp.RequestCtx) { c.SetBodyString("ok") }}
	go s.Serve(l)
	b.Cleanup(func() { s.Shutdown() })
	return l.Addr().String()
}

// BenchmarkHTTP1Forward measures the whole HTTP/1.1 forwarding path: a
// fasthttp client -> the data plane's listener (sniffing, routing,
// X-Forwarded-*, hop-by-hop removal) -> the node's fasthttp client pool ->
// a fasthttp backend, over loopback keep-alive connections. allocs/op
// counts every allocation in the process (client and backend included).
func BenchmarkHTTP1Forward(b *testing.B) {
	for _, bc := range []struct {
		name    string
		plugins string
	}{
		{"no-plugins", ""},
		{"proxy-rewrite-headers", `,"plugins":{"proxy-rewrite":{"headers":{"set":{"X-A":"1"}}}}`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e := newEnv(b, nil)
			be := fastBackend(b)
			e.put("/apisix/upstreams/u", `{"nodes":`+nodesJSON(be)+`}`)
			e.put("/apisix/routes/r", `{"uri":"/bench","upstream_id":"u"`+bc.plugins+`}`)
			hc := &fasthttp.HostClient{Addr: e.http, MaxConns: 64}
			warm := func() {
				req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
				req.SetRequestURI("http://bench.local/bench")
				if err := hc.Do(req, resp); err != nil || resp.StatusCode() != 200 {
					b.Fatalf("warm-up: %v %d", err, resp.StatusCode())
				}
				fasthttp.ReleaseRequest(req)
				fasthttp.ReleaseResponse(resp)
			}
			for range 100 {
				warm()
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
				defer fasthttp.ReleaseRequest(req)
				defer fasthttp.ReleaseResponse(resp)
				for pb.Next() {
					req.SetRequestURI("http://bench.local/bench")
					if err := hc.Do(req, resp); err != nil {
						b.Error(err)
						return
					}
					if resp.StatusCode() != 200 {
						b.Errorf("status %d", resp.StatusCode())
						return
					}
				}
			})
		})
	}
}

// BenchmarkHTTP1Direct is the baseline of BenchmarkHTTP1Forward: the same
// client straight to the same backend, without the data plane.
func BenchmarkHTTP1Direct(b *testing.B) {
	be := fastBackend(b)
	hc := &fasthttp.HostClient{Addr: be, MaxConns: 64}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		for pb.Next() {
			req.SetRequestURI("http://bench.local/bench")
			if err := hc.Do(req, resp); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
