package translate

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbachttp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshagent/meshagent/plugins/rbac"
	"github.com/meshagent/meshagent/xds/controlplane"
	"github.com/meshagent/meshagent/xds/xdstest"
)

// testCert returns a self-signed certificate for uri and its key, PEM
// encoded.
func testCert(t *testing.T, uri string) (string, string) {
	t.Helper()
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	c := xdstest.NewCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "web"}, URIs: []*url.URL{u}}, nil)
	return string(c.CertPEM()), string(c.KeyPEM())
}

func sds(name string) *tlsv3.SdsSecretConfig {
	return &tlsv3.SdsSecretConfig{Name: name, SdsConfig: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}}
}

func TestSecretsAndTLS(t *testing.T) {
	cert, key := testCert(t, "spiffe://default/web")
	tr := New(nil)
	out := stage(t, tr, KindSecret,
		&tlsv3.Secret{Name: "identity_cert:secret:default", Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: []byte(cert)}},
			PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: []byte(key)}}}}},
		&tlsv3.Secret{Name: "mesh_ca:secret:default", Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: []byte(cert)}}}}})
	ssl := out[PrefixSSLs+ObjectID("identity_cert:secret:default")]
	if field(t, ssl, "type") != `"client"` || !strings.Contains(ssl, "BEGIN CERTIFICATE") || !strings.Contains(ssl, "PRIVATE KEY") {
		t.Errorf("identity ssl %s", ssl)
	}
	if ca := out[PrefixSecrets+ObjectID("mesh_ca:secret:default")]; !strings.Contains(field(t, ca, "trusted_ca"), "BEGIN CERTIFICATE") {
		t.Errorf("ca secret %s", ca)
	}

	// An mTLS cluster as Kuma writes it: SDS identity, SDS CA, SAN match.
	c := controlplane.StaticCluster("backend", "127.0.0.1:20002")
	c.TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{
		TypedConfig: controlplane.MustAny(&tlsv3.UpstreamTlsContext{Sni: "backend{mesh=default}", CommonTlsContext: &tlsv3.CommonTlsContext{
			AlpnProtocols:                  []string{"kuma"},
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sds("identity_cert:secret:default")},
			ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext: &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
					SanType: tlsv3.SubjectAltNameMatcher_URI, Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "spiffe://default/backend"}}}}},
				ValidationContextSdsSecretConfig: sds("mesh_ca:secret:default")}},
		}})}}
	out = stage(t, tr, KindCluster, c)
	up := out[PrefixUpstreams+"backend"]
	if got, want := field(t, up, "tls"), `{"sni":"backend{mesh=default}","alpn":["kuma"],"match_subject_alt_names":["spiffe://default/backend"],"secret_name":"identity_cert:secret:default","ca_secret_name":"mesh_ca:secret:default"}`; got != want {
		t.Errorf("tls = %s\nwant  %s", got, want)
	}
	if field(t, up, "scheme") != `"https"` {
		t.Errorf("scheme %s", field(t, up, "scheme"))
	}
	if w := strings.Join(tr.Wanted(KindSecret), ","); w != "identity_cert:secret:default,mesh_ca:secret:default" {
		t.Errorf("wanted secrets %s", w)
	}
}

// TestListenerRBACAndTLS: an inbound listener as Kuma's mTLS mode writes
// it; the rbac plugin it yields compiles with plugins/rbac.
func TestListenerRBACAndTLS(t *testing.T) {
	policy := &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW, Policies: map[string]*rbacv3.Policy{
		"allow-web": {
			Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_Any{Any: true}}},
			Principals: []*rbacv3.Principal{{Identifier: &rbacv3.Principal_Authenticated_{Authenticated: &rbacv3.Principal_Authenticated{
				PrincipalName: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "spiffe://default/web"}}}}}},
		}}}
	hcm := controlplane.HCM("inbound", "", controlplane.RouteConfig("inbound:backend",
		controlplane.VirtualHost("backend", []string{"*"}, controlplane.PrefixRoute("", "/", "localhost:8080"))))
	hcm.HttpFilters = append([]*hcmv3.HttpFilter{{Name: "envoy.filters.http.rbac", ConfigType: &hcmv3.HttpFilter_TypedConfig{
		TypedConfig: controlplane.MustAny(&rbachttp.RBAC{Rules: policy})}}},
		&hcmv3.HttpFilter{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: controlplane.MustAny(&routerv3.Router{})}})
	chain := controlplane.HTTPFilterChain(hcm)
	chain.TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{
		TypedConfig: controlplane.MustAny(&tlsv3.DownstreamTlsContext{RequireClientCertificate: wrapperspb.Bool(true), CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sds("identity_cert:secret:default")},
			ValidationContextType:          &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{ValidationContextSdsSecretConfig: sds("mesh_ca:secret:default")},
		}})}}
	l := &listenerv3.Listener{Name: "inbound:127.0.0.1:20001", Address: controlplane.SocketAddress("127.0.0.1:20001"),
		FilterChains: []*listenerv3.FilterChain{chain}, TrafficDirection: corev3.TrafficDirection_INBOUND}
	out := stage(t, New(nil), KindListener, l)
	obj := out[PrefixListeners+ObjectID(l.Name)]
	var lo struct {
		FilterChains []struct {
			TLS     json.RawMessage            `json:"tls"`
			Plugins map[string]json.RawMessage `json:"plugins"`
		} `json:"filter_chains"`
	}
	if err := json.Unmarshal([]byte(obj), &lo); err != nil || len(lo.FilterChains) != 1 {
		t.Fatalf("%v %s", err, obj)
	}
	if got := string(lo.FilterChains[0].TLS); got != `{"secret_name":"identity_cert:secret:default","ca_secret_name":"mesh_ca:secret:default","require_client_certificate":true}` {
		t.Errorf("tls %s", got)
	}
	raw := lo.FilterChains[0].Plugins["rbac"]
	if !strings.Contains(string(raw), `"stage":"http"`) || !strings.Contains(string(raw), `spiffe://default/web`) {
		t.Errorf("rbac plugin %s", raw)
	}
	if _, err := rbac.Compile(raw); err != nil {
		t.Errorf("the rbac plugin config does not compile: %v\n%s", err, raw)
	}
}

// TestTransportSocketMatches: Istio's auto-mTLS picks TLS for endpoints
// labelled tlsMode=istio and plaintext for the others.
func TestTransportSocketMatches(t *testing.T) {
	istioTLS := &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{
		TypedConfig: controlplane.MustAny(&tlsv3.UpstreamTlsContext{Sni: "outbound_.9080_._.reviews.default.svc.cluster.local", CommonTlsContext: &tlsv3.CommonTlsContext{
			AlpnProtocols: []string{"istio-peer-exchange", "istio"}, TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sds("default")},
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{ValidationContextSdsSecretConfig: sds("ROOTCA")}}})}}
	raw := &corev3.TransportSocket{Name: "envoy.transport_sockets.raw_buffer", ConfigType: &corev3.TransportSocket_TypedConfig{
		TypedConfig: &anypb.Any{TypeUrl: "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"}}}
	mk := func(tlsMode ...string) *clusterv3.Cluster {
		c := controlplane.StaticCluster("outbound|9080||reviews.default.svc.cluster.local")
		var eps []controlplane.Endpoint
		for i := range tlsMode {
			eps = append(eps, controlplane.Endpoint{Addr: "10.0.0." + strconv.Itoa(i+1) + ":9080"})
		}
		c.LoadAssignment = controlplane.Endpoints(c.Name, eps...)
		for i, m := range tlsMode {
			if m == "" {
				continue
			}
			md, _ := structpb.NewStruct(map[string]any{"tlsMode": m})
			c.LoadAssignment.Endpoints[0].LbEndpoints[i].Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"envoy.transport_socket_match": md}}
		}
		match, _ := structpb.NewStruct(map[string]any{"tlsMode": "istio"})
		c.TransportSocketMatches = []*clusterv3.Cluster_TransportSocketMatch{
			{Name: "tlsMode-istio", Match: match, TransportSocket: istioTLS},
			{Name: "tlsMode-disabled", Match: &structpb.Struct{}, TransportSocket: raw},
		}
		return c
	}
	for _, c := range []struct {
		name   string
		modes  []string
		scheme string
		warn   bool
	}{
		{"all sidecars", []string{"istio", "istio"}, `"https"`, false},
		{"no sidecars", []string{"", ""}, ``, false},
		{"mixed, mostly sidecars", []string{"istio", "istio", ""}, `"https"`, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr := New(nil)
			p, err := tr.Stage(KindCluster, []Resource{{Name: "outbound|9080||reviews.default.svc.cluster.local", Msg: mk(c.modes...)}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			up := string(p.Puts[0].Value)
			if got := field(t, up, "scheme"); got != c.scheme {
				t.Errorf("scheme %s, want %s: %s", got, c.scheme, up)
			}
			if c.scheme != "" && !strings.Contains(up, `"alpn":["istio-peer-exchange","istio"]`) {
				t.Errorf("istio TLS not used: %s", up)
			}
			if (len(p.Warnings) > 0) != c.warn {
				t.Errorf("warnings %v", p.Warnings)
			}
		})
	}
}

// TestSDSFromAnotherSource: Istio's clusters name secrets served by
// istio-agent (sds-grpc), not by the ADS stream: they are not subscribed
// (readiness must not wait for them) and a warning says so.
func TestSDSFromAnotherSource(t *testing.T) {
	agent := &tlsv3.SdsSecretConfig{Name: "default", SdsConfig: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_ApiConfigSource{
		ApiConfigSource: &corev3.ApiConfigSource{ApiType: corev3.ApiConfigSource_GRPC, GrpcServices: []*corev3.GrpcService{{
			TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: "sds-grpc"}}}}}}}}
	c := controlplane.StaticCluster("outbound|9080||reviews", "10.0.0.1:9080")
	c.TransportSocket = &corev3.TransportSocket{Name: "tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: controlplane.MustAny(
		&tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{agent}}})}}
	tr := New(nil)
	p, err := tr.Stage(KindCluster, []Resource{{Name: c.Name, Msg: c}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if w := tr.Wanted(KindSecret); len(w) != 0 {
		t.Errorf("subscribes to %v", w)
	}
	if len(p.Warnings) != 1 || !strings.Contains(p.Warnings[0], `"default"`) {
		t.Errorf("warnings %v", p.Warnings)
	}
}
