package mtlstest

import (
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// HTTP/2 over mTLS (ALPN h2 and Istio's istio-h2): the peer identity
// reaches the app and HTTP RBAC applies per stream.
func TestH2OverMTLS(t *testing.T) {
	ca := mustCA(t, "mesh")
	srv := newAgent(t)
	srv.identity(ca.MustIssue("spiffe://default/backend", time.Hour, ECDSA), ca.PEM)
	addr := srv.server(backend(t), mtlsChain("mtls", "inbound:backend", nil, rbacFilters(t)))
	for _, alpn := range []string{"h2", "istio-h2"} {
		t.Run(alpn, func(t *testing.T) {
			l := ca.MustIssue("spiffe://default/web", time.Hour, ECDSA)
			cert, err := tls.X509KeyPair([]byte(l.CertPEM), []byte(l.KeyPEM))
			if err != nil {
				t.Fatal(err)
			}
			tr := &http2.Transport{TLSClientConfig: &tls.Config{
				Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, NextProtos: []string{alpn}, //nolint:gosec // test client
			}}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
			for _, tc := range []struct {
				path string
				want int
			}{{"/api/x", 200}, {"/admin", 403}} {
				resp, err := c.Get("https://" + addr + tc.path)
				if err != nil {
					t.Fatalf("%s: %v\n%s", tc.path, err, srv.logs)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.ProtoMajor != 2 || resp.StatusCode != tc.want {
					t.Fatalf("%s: %s %d %q, want HTTP/2 %d", tc.path, resp.Proto, resp.StatusCode, body, tc.want)
				}
				if tc.want == 200 && !strings.Contains(resp.Header.Get("X-Seen-XFCC"), "URI=spiffe://default/web") {
					t.Fatalf("app saw x-forwarded-client-cert %q", resp.Header.Get("X-Seen-XFCC"))
				}
			}
		})
	}
}
