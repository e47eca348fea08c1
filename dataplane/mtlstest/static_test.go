package mtlstest

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/meshagent/meshagent/dataplane"
	"github.com/meshagent/meshagent/etcdcompat/apisix"
	"github.com/meshagent/meshagent/etcdcompat/store"
)

// The static HTTP listener serves ssl objects by SNI; an ssl with
// client.ca requires client certificates, and the route-level rbac
// plugin sees their identity through peer_identity.
func TestStaticListenerClientCA(t *testing.T) {
	ca, rogue := mustCA(t, "mesh"), mustCA(t, "rogue")
	st, err := store.New(store.Options{Decoder: apisix.Decode})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	logs := &logBuf{}
	d, err := dataplane.New(dataplane.Options{Source: st, Logger: newLogger(logs), HTTPListen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	a := &agent{t: t, st: st, dp: d, logs: logs}
	srvLeaf, err := ca.Issue("", []string{"api.example.com"}, time.Now().Add(-time.Minute), time.Now().Add(time.Hour), ECDSA)
	if err != nil {
		t.Fatal(err)
	}
	a.put("/apisix/ssls/api", map[string]any{"cert": srvLeaf.CertPEM, "key": srvLeaf.KeyPEM, "snis": []string{"api.example.com"},
		"client": map[string]any{"ca": ca.PEM, "depth": 1}})
	a.put("/apisix/routes/r", map[string]any{"uri": "/*",
		"plugins": map[string]any{"rbac": map[string]any{"filters": []map[string]any{{"stage": "http", "config": json.RawMessage(
			`{"rules": {"policies": {"web": {"permissions": [{"any": true}], "principals": [{"authenticated": {"principalName": {"exact": "spiffe://default/web"}}}]}}}}`)}}}},
		"upstream": map[string]any{"type": "roundrobin", "nodes": []map[string]any{{"host": "127.0.0.1", "port": portOf(backend(t)), "weight": 1}}},
	})
	addr := d.Addrs()[0].String()
	for _, tc := range []struct {
		name string
		leaf *Leaf
		want int // 0: handshake refused
	}{
		{"web", ca.MustIssue("spiffe://default/web", time.Hour, ECDSA), 200},
		{"other", ca.MustIssue("spiffe://default/other", time.Hour, ECDSA), 403},
		{"rogue CA", rogue.MustIssue("spiffe://default/web", time.Hour, ECDSA), 0},
	} {
		cert, err := tls.X509KeyPair([]byte(tc.leaf.CertPEM), []byte(tc.leaf.KeyPEM))
		if err != nil {
			t.Fatal(err)
		}
		tr := &http.Transport{TLSClientConfig: &tls.Config{ServerName: "api.example.com", Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true}} //nolint:gosec // test
		resp, err := (&http.Client{Transport: tr, Timeout: 3 * time.Second}).Get("https://" + addr + "/x")
		tr.CloseIdleConnections()
		if tc.want == 0 {
			if err == nil {
				resp.Body.Close()
				t.Errorf("%s: served (%d), want handshake refused", tc.name, resp.StatusCode)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v\n%s", tc.name, err, logs)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
	}
	logs.waitFor(t, "mtls: client certificate rejected", "unknown authority")
}
