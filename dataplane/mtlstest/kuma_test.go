package mtlstest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"

	"github.com/meshagent/meshagent/dataplane"
	"github.com/meshagent/meshagent/etcdcompat/apisix"
	"github.com/meshagent/meshagent/etcdcompat/store"
	"github.com/meshagent/meshagent/xds"
	"github.com/meshagent/meshagent/xds/controlplane"
	"github.com/meshagent/meshagent/xds/translate"

	_ "github.com/meshagent/meshagent/plugins/proxyrewrite" // Kuma's inbound routes strip x-kuma-tags
)

// kumaDir holds kuma-cp 2.14.3's mTLS-mode responses for dataplane
// default.web-1 (from /work/shared/fixtures; its SDS secrets had their keys
// redacted, so the test supplies its own under the same names).
const kumaDir = "testdata/kuma-2.14.3-mtls"

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// kumaResources loads the fixture, moved to free ports: the inbound
// listener on inPort (its local app at app), the outbound listener on
// outPort, cluster backend's endpoints at peer; the identity and CA
// secrets are test certificates.
func kumaResources(t *testing.T, inPort, outPort int, app, peer string, leaf *Leaf, ca *CA) controlplane.Resources {
	t.Helper()
	var res controlplane.Resources
	for _, f := range []string{"cds.json", "eds.json", "lds.json"} {
		_, _, msgs, err := controlplane.LoadResponseJSON(filepath.Join(kumaDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := res.Add(msgs...); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range res.Listeners {
		switch {
		case strings.HasPrefix(l.Name, "inbound:"):
			l.Address = controlplane.SocketAddress(fmt.Sprintf("127.0.0.1:%d", inPort))
		case strings.HasPrefix(l.Name, "outbound:"):
			l.Address = controlplane.SocketAddress(fmt.Sprintf("127.0.0.1:%d", outPort))
		}
	}
	for i, c := range res.Clusters {
		if c.Name == "localhost:8080" {
			c = proto.Clone(c).(*clusterv3.Cluster)
			c.LoadAssignment = controlplane.Endpoints(c.Name, controlplane.Endpoint{Addr: app})
			res.Clusters[i] = c
		}
	}
	for i, e := range res.Endpoints {
		if e.ClusterName == "backend" {
			res.Endpoints[i] = controlplane.Endpoints("backend", controlplane.Endpoint{Addr: peer})
		}
	}
	inline := func(s string) *corev3.DataSource {
		return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: []byte(s)}}
	}
	res.Secrets = []*tlsv3.Secret{
		{Name: identityName, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: inline(leaf.CertPEM), PrivateKey: inline(leaf.KeyPEM)}}},
		{Name: caName, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: inline(ca.PEM)}}},
	}
	return res
}

// kumaSidecar is a meshagent fed by the control plane: ADS client,
// translation into the store, data plane.
func kumaSidecar(t *testing.T, cpAddr, dp string) *agent {
	t.Helper()
	st, err := store.New(store.Options{Decoder: apisix.Decode})
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuf{}
	log := newLogger(logs)
	node, err := xds.BuildNode(xds.NodeConfig{Preset: xds.PresetKuma, Dataplane: dp}, "test")
	if err != nil {
		t.Fatal(err)
	}
	cl, err := xds.New(xds.Options{Addr: cpAddr, Node: node, Handler: xds.NewApplier(st, xds.ApplierOptions{Logger: log}), Logger: log,
		BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = cl.Run(ctx) }()
	d, err := dataplane.New(dataplane.Options{Source: st, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		<-done
		_ = d.Close()
		_ = st.Close()
	})
	return &agent{t: t, st: st, dp: d, logs: logs}
}

// TestKumaFixtureEndToEnd: kuma-cp's mTLS-mode resources for the web
// dataplane, served by go-control-plane to two meshagents (web and
// backend, each with its own SPIFFE identity), translated and carrying a
// request web outbound -> mTLS (SNI backend{mesh=default}, ALPN kuma,
// SAN spiffe://default/backend) -> backend inbound (client certificate
// required, SAN prefix spiffe://default/, MeshTrafficPermission RBAC,
// x-forwarded-client-cert SANITIZE_SET) -> the backend's app.
func TestKumaFixtureEndToEnd(t *testing.T) {
	ca := mustCA(t, "default")
	cp, err := controlplane.Start("127.0.0.1:0", newLogger(&logBuf{}))
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Stop()
	app := backend(t)
	webIn, webOut, beIn, beOut := freePort(t), freePort(t), freePort(t), freePort(t)
	beInAddr := fmt.Sprintf("127.0.0.1:%d", beIn)
	web := kumaResources(t, webIn, webOut, app, beInAddr, ca.MustIssue("spiffe://default/web", time.Hour, ECDSA), ca)
	be := kumaResources(t, beIn, beOut, app, beInAddr, ca.MustIssue("spiffe://default/backend", time.Hour, ECDSA), ca)
	ctx := context.Background()
	if err := cp.SetSnapshot(ctx, "default.web-1", "1", web); err != nil {
		t.Fatal(err)
	}
	if err := cp.SetSnapshot(ctx, "default.backend-1", "1", be); err != nil {
		t.Fatal(err)
	}
	w := kumaSidecar(t, cp.Addr(), "web-1")
	b := kumaSidecar(t, cp.Addr(), "backend-1")
	w.listenerAddr(translate.ObjectID("outbound:127.0.0.1:10001"))
	b.listenerAddr(translate.ObjectID("inbound:127.0.0.1:20001"))

	url := fmt.Sprintf("http://127.0.0.1:%d/orders", webOut)
	var st int
	var xfcc string
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, xfcc, err = get(http.DefaultClient, url)
		if err == nil && st == 200 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st != 200 {
		t.Fatalf("web -> backend over mTLS: %d %v\nweb logs:\n%s\nbackend logs:\n%s", st, err, w.logs, b.logs)
	}
	if !strings.Contains(xfcc, "URI=spiffe://default/web") {
		t.Fatalf("app saw x-forwarded-client-cert %q, want URI=spiffe://default/web", xfcc)
	}
	// Plaintext to the backend's inbound listener is refused (STRICT: the
	// fixture's inbound has a single TLS chain).
	if resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + beInAddr + "/orders"); err == nil {
		resp.Body.Close()
		t.Fatalf("plaintext served by the STRICT inbound: %d", resp.StatusCode)
	}
	b.logs.waitFor(t, "plaintext connection refused")
}
