package mtlstest

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// benchPair is a client meshagent -> server meshagent -> backend path
// whose middle hop is mTLS (secure) or plaintext, on a PERMISSIVE inbound
// listener serving both.
func benchPair(b *testing.B, secure bool, kt KeyType) (entry, inbound string, ca *CA) {
	b.Helper()
	ca = mustCA(b, "mesh")
	srv, cli := newAgent(b), newAgent(b)
	srv.identity(ca.MustIssue("spiffe://default/backend", time.Hour, kt), ca.PEM)
	inbound = srv.server(backend(b),
		mtlsChain("mtls", "inbound:backend", map[string]any{"transport_protocol": "tls"}, nil),
		map[string]any{"name": "plain", "kind": "http", "route_config": "inbound:backend", "match": map[string]any{"transport_protocol": "raw_buffer"}},
	)
	cli.identity(ca.MustIssue("spiffe://default/web", time.Hour, kt), ca.PEM)
	if secure {
		entry = cli.client(inbound, "spiffe://default/backend")
	} else {
		host, port, _ := net.SplitHostPort(inbound)
		p, _ := strconv.Atoi(port)
		cli.put("/apisix/upstreams/backend", map[string]any{
			"type": "roundrobin", "nodes": []map[string]any{{"host": host, "port": p, "weight": 1}},
		})
		cli.put("/apisix/routes/outbound", map[string]any{
			"uri": "/*", "labels": map[string]string{"meshagent.route_config": "outbound:backend"}, "upstream_id": "backend",
		})
		cli.put("/meshagent/listeners/outbound", map[string]any{
			"address": "127.0.0.1:0", "direction": "outbound",
			"filter_chains": []map[string]any{{"name": "out", "kind": "http", "route_config": "outbound:backend"}},
		})
		entry = cli.listenerAddr("outbound")
	}
	return "http://" + entry, inbound, ca
}

// BenchmarkMeshKeepAlive: keep-alive requests through two meshagents
// whose hop is mTLS or plaintext (req/s reported).
func BenchmarkMeshKeepAlive(b *testing.B) {
	for _, mode := range []struct {
		name   string
		secure bool
	}{{"plaintext", false}, {"mtls", true}} {
		b.Run(mode.name, func(b *testing.B) {
			entry, _, _ := benchPair(b, mode.secure, ECDSA)
			tr := &http.Transport{MaxIdleConnsPerHost: 64}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr}
			if st, _, err := get(c, entry+"/warm"); err != nil || st != 200 {
				b.Fatalf("warm-up: %d %v", st, err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := c.Get(entry + "/ka")
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
		})
	}
}

// BenchmarkNewHandshake: a new connection per request straight to the
// server meshagent's inbound listener: plaintext, or an mTLS handshake
// (client certificate verified, SAN checked) with ECDSA or RSA keys
// (handshakes/s reported).
func BenchmarkNewHandshake(b *testing.B) {
	for _, mode := range []struct {
		name   string
		secure bool
		kt     KeyType
	}{{"plaintext", false, ECDSA}, {"mtls-ecdsa", true, ECDSA}, {"mtls-rsa", true, RSA}} {
		b.Run(mode.name, func(b *testing.B) {
			_, inbound, ca := benchPair(b, false, mode.kt)
			tr := &http.Transport{DisableKeepAlives: true}
			url := "http://" + inbound + "/hs"
			if mode.secure {
				l := ca.MustIssue("spiffe://default/web", time.Hour, mode.kt)
				cert, err := tls.X509KeyPair([]byte(l.CertPEM), []byte(l.KeyPEM))
				if err != nil {
					b.Fatal(err)
				}
				tr.TLSClientConfig = &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true} //nolint:gosec // bench client
				url = "https://" + inbound + "/hs"
			}
			c := &http.Client{Transport: tr}
			if st, _, err := get(c, url); err != nil || st != 200 {
				b.Fatalf("warm-up: %d %v", st, err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := c.Get(url)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "conns/s")
		})
	}
}
