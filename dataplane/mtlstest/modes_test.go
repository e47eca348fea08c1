package mtlstest

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// STRICT is a listener whose only chain has TLS: plaintext is refused.
// PERMISSIVE has a chain matching transport_protocol "tls" and one
// matching "raw_buffer": both are served on the one port, and a
// plaintext client's own x-forwarded-client-cert never reaches the app.
func TestStrictAndPermissive(t *testing.T) {
	ca := mustCA(t, "mesh")
	permissive := []map[string]any{
		mtlsChain("mtls", "inbound:backend", map[string]any{"transport_protocol": "tls"}, nil),
		{"name": "plain", "kind": "http", "route_config": "inbound:backend", "match": map[string]any{"transport_protocol": "raw_buffer"}},
	}
	cases := []struct {
		name          string
		chains        []map[string]any
		plainAccepted bool
	}{
		{"STRICT", nil, false},
		{"PERMISSIVE", permissive, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newPair(t, ca, pairOpts{chains: tc.chains})
			// mTLS through the client meshagent works in both modes.
			st, xfcc, err := get(http.DefaultClient, p.entry+"/m")
			if err != nil || st != 200 || !strings.Contains(xfcc, "URI=spiffe://default/web") {
				t.Fatalf("mTLS: %d %q %v", st, xfcc, err)
			}
			req, _ := http.NewRequest("GET", "http://"+p.srvAddr+"/plain", nil)
			req.Header.Set("X-Forwarded-Client-Cert", "URI=spiffe://default/forged")
			c := &http.Client{Timeout: 2 * time.Second}
			resp, err := c.Do(req)
			if !tc.plainAccepted {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("plaintext accepted in STRICT mode: %d", resp.StatusCode)
				}
				p.srv.logs.waitFor(t, "plaintext connection refused", "STRICT", "listener=inbound")
				return
			}
			if err != nil {
				t.Fatalf("plaintext refused in PERMISSIVE mode: %v\n%s", err, p.srv.logs)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("plaintext: status %d", resp.StatusCode)
			}
			if got := resp.Header.Get("X-Seen-XFCC"); got != "" {
				t.Fatalf("forged x-forwarded-client-cert reached the app: %q", got)
			}
		})
	}
}
