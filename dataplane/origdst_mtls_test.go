package dataplane

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"net"
	"testing"
	"time"

	"github.com/meshagent/meshagent/dataplane/mtlstest"
	"github.com/meshagent/meshagent/etcdcompat/apisix"
)

// TestOrigDstOverMTLS: an inbound chain terminating mTLS (Istio STRICT,
// InboundPassthroughCluster for a port no Service declares) forwards the
// decrypted HTTP/1.1 request to the connection's original destination.
func TestOrigDstOverMTLS(t *testing.T) {
	oe := newODEnv(t)
	a, _ := odBackend(t, "127.0.0.1:0", "a")
	ca, err := mtlstest.NewCA("mesh")
	if err != nil {
		t.Fatal(err)
	}
	srv := ca.MustIssue("spiffe://default/backend", time.Hour, mtlstest.ECDSA)
	cli := ca.MustIssue("spiffe://default/web", time.Hour, mtlstest.ECDSA)
	oe.put("/apisix/ssls/identity", `{"type":"client","cert":`+jsonString(srv.CertPEM)+`,"key":`+jsonString(srv.KeyPEM)+
		`,"labels":{"`+apisix.LabelXDSName+`":"identity"}}`)
	oe.put(apisix.SecretPrefix+"mesh_ca", `{"trusted_ca":`+jsonString(ca.PEM)+`,"labels":{"`+apisix.LabelXDSName+`":"mesh_ca"}}`)
	oe.put("/apisix/routes/pt", `{"uri":"/*","labels":{"meshagent.route_config":"in"},"upstream":`+odUpstream+`}}`)
	oe.put("/meshagent/listeners/inbound", `{"address":"127.0.0.1:0","direction":"inbound","labels":{"meshagent.original_dst_filter":"true"},`+
		`"filter_chains":[{"name":"mtls","kind":"http","route_config":"in","tls":{"secret_name":"identity","ca_secret_name":"mesh_ca","require_client_certificate":true}}]}`)
	ia, _ := oe.dp.ListenerAddr("inbound")

	cert, err := tls.X509KeyPair([]byte(cli.CertPEM), []byte(cli.KeyPEM))
	if err != nil {
		t.Fatal(err)
	}
	raw := oe.dial(t, ia.String(), a)
	// The server's certificate names a SPIFFE URI only: identity checks
	// are the data plane's business here, not this client's.
	c := tls.Client(raw, &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}}) //nolint:gosec // test client
	defer c.Close()
	r := odGet(t, c, bufio.NewReader(c), "undeclared.example")
	if r.StatusCode != 200 || r.Header.Get("X-Backend") != "a" {
		t.Fatalf("%d from %q, want 200 from a", r.StatusCode, r.Header.Get("X-Backend"))
	}
	_, port, _ := net.SplitHostPort(a)
	if p := r.Header.Get("X-Seen-XFPort"); p != port {
		t.Errorf("X-Forwarded-Port %q, want %s", p, port)
	}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
