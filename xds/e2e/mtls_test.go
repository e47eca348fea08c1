package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbachttp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshagent/meshagent/xds"
	"github.com/meshagent/meshagent/xds/controlplane"
	"github.com/meshagent/meshagent/xds/translate"
	"github.com/meshagent/meshagent/xds/xdstest"
)

// meshPKI returns a mesh CA and an identity certificate for spiffeID.
func meshPKI(t *testing.T, spiffeID string) (caPEM, certPEM, keyPEM []byte) {
	t.Helper()
	ca := xdstest.NewCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "default", OrganizationalUnit: []string{"Mesh"}, Organization: []string{"Kuma"}},
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}, nil)
	u, err := url.Parse(spiffeID)
	if err != nil {
		t.Fatal(err)
	}
	id := xdstest.NewCert(t, &x509.Certificate{URIs: []*url.URL{u}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}, ca)
	return ca.CertPEM(), id.CertPEM(), id.KeyPEM()
}

func sdsRef(name string) *tlsv3.SdsSecretConfig {
	return &tlsv3.SdsSecretConfig{Name: name, SdsConfig: &corev3.ConfigSource{ResourceApiVersion: corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}}
}

func exact(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
}

// kumaMTLSConfig is shaped like kuma-cp's mTLS output (see the mtls
// fixtures' summary): SDS identity and mesh CA secrets, an upstream TLS
// cluster verifying the peer's SPIFFE id, and an inbound listener that
// requires client certificates and authorizes with HTTP RBAC.
func kumaMTLSConfig(outPort, inPort int, backend string, allowed string, caPEM, certPEM, keyPEM []byte) controlplane.Resources {
	const identity, meshCA = "identity_cert:secret:default", "mesh_ca:secret:default"
	backendCluster := controlplane.StaticCluster("backend", fmt.Sprintf("127.0.0.1:%d", inPort))
	backendCluster.TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{
		TypedConfig: controlplane.MustAny(&tlsv3.UpstreamTlsContext{Sni: "backend{mesh=default}", CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sdsRef(identity)},
			ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext: &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
					SanType: tlsv3.SubjectAltNameMatcher_URI, Matcher: exact("spiffe://default/web")}}},
				ValidationContextSdsSecretConfig: sdsRef(meshCA)}},
		}})}}
	local := controlplane.StaticCluster("localhost:8080", backend)

	outbound := controlplane.HTTPListener("outbound:127.0.0.1:10001", fmt.Sprintf("127.0.0.1:%d", outPort), "")
	outbound.FilterChains = []*listenerv3.FilterChain{controlplane.HTTPFilterChain(controlplane.HCM("backend", "",
		controlplane.RouteConfig("outbound:backend", controlplane.VirtualHost("backend", []string{"*"}, controlplane.PrefixRoute("", "/", "backend")))))}

	rules := &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW, Policies: map[string]*rbacv3.Policy{"MeshTrafficPermission": {
		Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_Any{Any: true}}},
		Principals: []*rbacv3.Principal{{Identifier: &rbacv3.Principal_Authenticated_{Authenticated: &rbacv3.Principal_Authenticated{
			PrincipalName: exact(allowed)}}}},
	}}}
	hcm := controlplane.HCM("localhost_8080", "", controlplane.RouteConfig("inbound:backend",
		controlplane.VirtualHost("backend", []string{"*"}, controlplane.PrefixRoute("", "/", "localhost:8080"))))
	hcm.HttpFilters = []*hcmv3.HttpFilter{
		{Name: "envoy.filters.http.rbac", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: controlplane.MustAny(&rbachttp.RBAC{Rules: rules})}},
		{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: controlplane.MustAny(&routerv3.Router{})}},
	}
	inChain := controlplane.HTTPFilterChain(hcm)
	inChain.TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{
		TypedConfig: controlplane.MustAny(&tlsv3.DownstreamTlsContext{RequireClientCertificate: wrapperspb.Bool(true), CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sdsRef(identity)},
			ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext: &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
					SanType: tlsv3.SubjectAltNameMatcher_URI, Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "spiffe://default/"}}}}},
				ValidationContextSdsSecretConfig: sdsRef(meshCA)}},
		}})}}
	inbound := &listenerv3.Listener{Name: "inbound:127.0.0.1:20001", Address: controlplane.SocketAddress(fmt.Sprintf("127.0.0.1:%d", inPort)),
		TrafficDirection: corev3.TrafficDirection_INBOUND, FilterChains: []*listenerv3.FilterChain{inChain}}

	return controlplane.Resources{
		Clusters:  []*clusterv3.Cluster{backendCluster, local},
		Listeners: []*listenerv3.Listener{outbound, inbound},
		Secrets: []*tlsv3.Secret{
			{Name: identity, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
				CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: certPEM}},
				PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: keyPEM}}}}},
			{Name: meshCA, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: caPEM}}}}},
		},
	}
}

// TestKumaMTLSShaped: SDS secrets, mTLS between the outbound cluster and
// the inbound listener (client certificates required, SPIFFE SANs
// checked) and HTTP RBAC on the peer identity, over real connections.
func TestKumaMTLSShaped(t *testing.T) {
	caPEM, certPEM, keyPEM := meshPKI(t, "spiffe://default/web")
	backend := echoBackend(t, "backend")
	outPort, inPort := freePort(t), freePort(t)
	cp, err := controlplane.Start("127.0.0.1:0", xdstest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Stop()
	if err := cp.SetSnapshot(context.Background(), "default.web-1", "mtls-1",
		kumaMTLSConfig(outPort, inPort, backend, "spiffe://default/web", caPEM, certPEM, keyPEM)); err != nil {
		t.Fatal(err)
	}
	s := startSidecar(t, cp.Addr(), xds.NodeConfig{Preset: xds.PresetKuma, Dataplane: "web-1"}, false, true)
	waitListeners(t, s.dp, "outbound:127.0.0.1:10001", "inbound:127.0.0.1:20001")
	if n := len(dumpStore(t, s.st, translate.PrefixSSLs)); n != 1 {
		t.Fatalf("%d ssl objects, want the identity", n)
	}

	// Allowed identity: outbound -> mTLS -> inbound -> RBAC -> backend.
	code, body, _ := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/orders", outPort), nil)
	if code != http.StatusOK || !strings.HasPrefix(body, "backend ") {
		t.Fatalf("through mTLS: %d %q", code, body)
	}

	// A new mTLS connection with the allowed identity is served.
	if code, body := mtlsGet(t, inPort, certPEM, keyPEM); code != http.StatusOK || !strings.HasPrefix(body, "backend ") {
		t.Fatalf("direct mTLS: %d %q", code, body)
	}

	// Without a client certificate the inbound listener refuses.
	conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", inPort), &tls.Config{InsecureSkipVerify: true})
	if err == nil {
		_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
		_, werr := conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		buf := make([]byte, 64)
		_, rerr := conn.Read(buf)
		conn.Close()
		if werr == nil && rerr == nil {
			t.Fatal("inbound listener served a client without a certificate")
		}
	}

	// RBAC allowing another identity: the same request is denied.
	if err := cp.SetSnapshot(context.Background(), "default.web-1", "mtls-2",
		kumaMTLSConfig(outPort, inPort, backend, "spiffe://default/other", caPEM, certPEM, keyPEM)); err != nil {
		t.Fatal(err)
	}
	xdstest.Eventually(t, "new RBAC policy stored", func() bool {
		for _, v := range dumpStore(t, s.st, translate.PrefixListeners) {
			if strings.Contains(string(v), "spiffe://default/other") {
				return true
			}
		}
		return false
	})
	// New connections get the new policy (connections already pooled by
	// the outbound side keep the filter chain they started with).
	xdstest.Eventually(t, "RBAC denial on a new connection", func() bool {
		code, body := mtlsGet(t, inPort, certPEM, keyPEM)
		return code == http.StatusForbidden && strings.Contains(body, "RBAC: access denied")
	})
}

// mtlsGet sends GET /orders over a new mTLS connection to the inbound
// listener, presenting the identity certificate.
func mtlsGet(t *testing.T, port int, certPEM, keyPEM []byte) (int, string) {
	t.Helper()
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(fmt.Sprintf("https://127.0.0.1:%d/orders", port))
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	return resp.StatusCode, readAll(resp)
}
