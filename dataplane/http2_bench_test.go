package dataplane

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"testing"

	"golang.org/x/net/http2"
)

// BenchmarkH2Forward measures the HTTP/2 (h2c) front end forwarding to an
// HTTP/1.1 fasthttp backend: an x/net/http2 client -> the data plane
// (sniffing, routing, X-Forwarded-*) -> the node's pool -> the backend.
// allocs/op counts every allocation in the process (client included).
func BenchmarkH2Forward(b *testing.B) {
	e := newEnv(b, nil)
	be := fastBackend(b)
	e.put("/apisix/upstreams/u", `{"nodes":`+nodesJSON(be)+`}`)
	e.put("/apisix/routes/r", `{"uri":"/bench","upstream_id":"u"}`)
	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, n, a string, _ *tls.Config) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, n, a)
	}}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	url := "http://" + e.http + "/bench"
	get := func() error {
		r, err := hc.Get(url)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
		if r.StatusCode != 200 {
			b.Errorf("status %d", r.StatusCode)
		}
		return nil
	}
	for range 10 {
		if err := get(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := get(); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
