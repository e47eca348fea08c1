package mtls_test

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/meshagent/meshagent/dataplane/mtls"
	"github.com/meshagent/meshagent/dataplane/mtlstest"
	"github.com/meshagent/meshagent/etcdcompat/apisix"
)

func newCA(t testing.TB) *mtlstest.CA {
	t.Helper()
	ca, err := mtlstest.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func issue(t testing.TB, ca *mtlstest.CA, dns string, kt mtlstest.KeyType) *mtlstest.Leaf {
	t.Helper()
	l, err := ca.Issue("", []string{dns}, time.Now().Add(-time.Minute), time.Now().Add(time.Hour), kt)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func serverSSL(l *mtlstest.Leaf, snis ...string) *apisix.SSL {
	return &apisix.SSL{Type: "server", Cert: l.CertPEM, Key: l.KeyPEM, SNIs: snis}
}

func TestServerCertForSNI(t *testing.T) {
	ca := newCA(t)
	m := mtls.NewManager(nil)
	errs := m.Update(map[string]*apisix.SSL{
		"exact": serverSSL(issue(t, ca, "api.example.com", mtlstest.ECDSA), "api.example.com"),
		"wild":  serverSSL(issue(t, ca, "w.example.com", mtlstest.ECDSA), "*.example.com"),
		"all":   serverSSL(issue(t, ca, "any", mtlstest.ECDSA), "*"),
	}, nil)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	cases := []struct{ sni, want string }{
		{"api.example.com", "exact"},
		{"API.Example.COM", "exact"},
		{"web.example.com", "wild"},
		{"a.b.example.com", "all"}, // "*.x" matches exactly one label
		{"example.com", "all"},
		{".example.com", "all"},
		{"", "all"},
	}
	for _, tc := range cases {
		cs := m.Material().ServerCertFor(tc.sni)
		if cs == nil || cs.ID != tc.want {
			t.Errorf("ServerCertFor(%q) = %v, want %s", tc.sni, cs, tc.want)
		}
	}
}

// handshake runs a TLS handshake of client against server over a pipe.
func handshake(t *testing.T, server, client *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	b, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	a, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	_ = a.SetDeadline(time.Now().Add(5 * time.Second))
	_ = b.SetDeadline(time.Now().Add(5 * time.Second))
	errc := make(chan error, 1)
	go func() {
		s := tls.Server(a, server)
		errc <- s.Handshake()
		s.Close()
	}()
	c := tls.Client(b, client)
	err = c.Handshake()
	st := c.ConnectionState()
	if serr := <-errc; err == nil {
		err = serr
	}
	return st, err
}

// An ssl with an ECDSA and an RSA pair serves what the client supports.
func TestRSAOrECDSAByClientHello(t *testing.T) {
	ca := newCA(t)
	ec, rs := issue(t, ca, "dual.example.com", mtlstest.ECDSA), issue(t, ca, "dual.example.com", mtlstest.RSA)
	m := mtls.NewManager(nil)
	m.Update(map[string]*apisix.SSL{"dual": {Cert: ec.CertPEM, Key: ec.KeyPEM, Certs: []string{rs.CertPEM}, Keys: []string{rs.KeyPEM}, SNI: "dual.example.com"}}, nil)
	cases := []struct {
		name  string
		suite uint16
		rsa   bool
	}{
		{"ecdsa client", tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, false},
		{"rsa-only client", tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st, err := handshake(t, m.SNIConfig(nil), &tls.Config{
				ServerName: "dual.example.com", InsecureSkipVerify: true, //nolint:gosec // inspects the served cert
				MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tc.suite},
			})
			if err != nil {
				t.Fatal(err)
			}
			_, isRSA := st.PeerCertificates[0].PublicKey.(*rsa.PublicKey)
			_, isEC := st.PeerCertificates[0].PublicKey.(*ecdsa.PublicKey)
			if isRSA != tc.rsa || isEC == tc.rsa {
				t.Fatalf("served %T", st.PeerCertificates[0].PublicKey)
			}
		})
	}
}

func TestSANMatchers(t *testing.T) {
	ms, err := mtls.ParseSANMatchers("f", []string{"spiffe://a/b", "spiffe://mesh/*", "*.svc", "*ns/x*"})
	if err != nil {
		t.Fatal(err)
	}
	kinds := []mtls.MatchKind{mtls.MatchExact, mtls.MatchPrefix, mtls.MatchSuffix, mtls.MatchContains}
	for i, m := range ms {
		if m.Kind != kinds[i] {
			t.Fatalf("matcher %d: %v, want %v", i, m.Kind, kinds[i])
		}
	}
	cases := []struct {
		i    int
		s    string
		want bool
	}{
		{0, "spiffe://a/b", true}, {0, "spiffe://a/bc", false},
		{1, "spiffe://mesh/web", true}, {1, "spiffe://mesh2/web", false},
		{2, "db.svc", true}, {2, "db.svc.x", false},
		{3, "spiffe://c/ns/x/sa/y", true}, {3, "spiffe://c/ns/y", false},
	}
	for _, tc := range cases {
		if got := ms[tc.i].Match(tc.s); got != tc.want {
			t.Errorf("%s.Match(%q) = %v", ms[tc.i], tc.s, got)
		}
	}
	if _, err := mtls.ParseSANMatchers("f", []string{"*"}); err == nil {
		t.Fatal(`"*" accepted`)
	}
}

// A bad update of an ssl keeps its previous version in force, and the
// error names the object and field without quoting key material.
func TestUpdateKeepsLastGood(t *testing.T) {
	ca := newCA(t)
	good := issue(t, ca, "a.example.com", mtlstest.ECDSA)
	other := issue(t, ca, "a.example.com", mtlstest.ECDSA)
	m := mtls.NewManager(nil)
	if errs := m.Update(map[string]*apisix.SSL{"a": serverSSL(good, "a.example.com")}, nil); len(errs) > 0 {
		t.Fatal(errs)
	}
	bad := &apisix.SSL{Cert: good.CertPEM, Key: other.KeyPEM, SNI: "a.example.com"}
	errs := m.Update(map[string]*apisix.SSL{"a": bad}, nil)
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), `ssl "a"`) || !strings.Contains(errs[0].Error(), `"cert"`) {
		t.Fatalf("errors %v: want one naming ssl a and field cert", errs)
	}
	if strings.Contains(errs[0].Error(), "PRIVATE") || strings.Contains(errs[0].Error(), other.KeyPEM[30:60]) {
		t.Fatalf("error leaks key material: %v", errs[0])
	}
	if m.Stats().Rejected.Load() != 1 {
		t.Fatal("rejection not counted")
	}
	st, err := handshake(t, m.SNIConfig(nil), &tls.Config{ServerName: "a.example.com", InsecureSkipVerify: true}) //nolint:gosec // inspects the served cert
	if err != nil {
		t.Fatal(err)
	}
	if st.PeerCertificates[0].SerialNumber.Cmp(good.Serial) != 0 {
		t.Fatal("previous certificate not in force")
	}
}

// Downstream mTLS from an ssl object's client.ca (APISIX's ssl.client).
func TestSSLClientCA(t *testing.T) {
	ca, rogue := newCA(t), newCA(t)
	srv := issue(t, ca, "m.example.com", mtlstest.ECDSA)
	m := mtls.NewManager(nil)
	s := serverSSL(srv, "m.example.com")
	s.Client = &apisix.SSLClient{CA: ca.PEM, Depth: 1}
	m.Update(map[string]*apisix.SSL{"m": s}, nil)
	for _, tc := range []struct {
		name string
		ca   *mtlstest.CA
		ok   bool
	}{{"trusted", ca, true}, {"rogue", rogue, false}} {
		l := tc.ca.MustIssue("spiffe://x/client", time.Hour, mtlstest.ECDSA)
		cert, _ := tls.X509KeyPair([]byte(l.CertPEM), []byte(l.KeyPEM))
		st, err := handshake(t, m.SNIConfig(nil), &tls.Config{ServerName: "m.example.com", InsecureSkipVerify: true, Certificates: []tls.Certificate{cert}}) //nolint:gosec // test
		if (err == nil) != tc.ok {
			t.Errorf("%s: handshake err %v, want ok=%v", tc.name, err, tc.ok)
		}
		_ = st
	}
}

func TestProtocolOfAndMeshALPN(t *testing.T) {
	for alpn, want := range map[string]mtls.AppProtocol{
		"h2": mtls.AppH2, "istio-h2": mtls.AppH2, "http/1.1": mtls.AppHTTP1, "istio-http/1.1": mtls.AppHTTP1,
		"istio-http/1.0": mtls.AppHTTP1, "kuma": mtls.AppSniff, "istio": mtls.AppSniff, "istio-peer-exchange": mtls.AppSniff, "": mtls.AppSniff,
	} {
		if got := mtls.ProtocolOf(alpn); got != want {
			t.Errorf("ProtocolOf(%q) = %v, want %v", alpn, got, want)
		}
	}
	ca := newCA(t)
	l := ca.MustIssue("spiffe://default/backend", time.Hour, mtlstest.ECDSA)
	m := mtls.NewManager(nil)
	m.Update(map[string]*apisix.SSL{"id": {Type: "client", Cert: l.CertPEM, Key: l.KeyPEM}}, nil)
	conf, err := m.ServerConfig(&apisix.DownstreamTLS{SSLID: "id"})
	if err != nil {
		t.Fatal(err)
	}
	for _, offer := range [][]string{{"kuma"}, {"istio-peer-exchange", "istio-http/1.1"}, {"h2", "http/1.1"}} {
		st, err := handshake(t, conf, &tls.Config{InsecureSkipVerify: true, NextProtos: offer}) //nolint:gosec // test
		if err != nil {
			t.Fatalf("ALPN %v: %v", offer, err)
		}
		if st.NegotiatedProtocol == "" {
			t.Fatalf("ALPN %v: nothing negotiated", offer)
		}
	}
	if _, err := m.ServerConfig(&apisix.DownstreamTLS{SSLID: "missing"}); err == nil {
		t.Fatal("unknown ssl_id accepted")
	}
}

// ssl_protocols bounds the versions served; skip_mtls_uri_regex is
// refused rather than ignored.
func TestSSLProtocolsAndUnsupported(t *testing.T) {
	ca := newCA(t)
	l := issue(t, ca, "v.example.com", mtlstest.ECDSA)
	m := mtls.NewManager(nil)
	s := serverSSL(l, "v.example.com")
	s.SSLProtocols = []string{"TLSv1.2"}
	if errs := m.Update(map[string]*apisix.SSL{"v": s}, nil); len(errs) > 0 {
		t.Fatal(errs)
	}
	st, err := handshake(t, m.SNIConfig(nil), &tls.Config{ServerName: "v.example.com", InsecureSkipVerify: true}) //nolint:gosec // test
	if err != nil || st.Version != tls.VersionTLS12 {
		t.Fatalf("version %x, err %v: want TLS 1.2", st.Version, err)
	}
	if _, err := handshake(t, m.SNIConfig(nil), &tls.Config{ServerName: "v.example.com", InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}); err == nil { //nolint:gosec // test
		t.Fatal("TLS 1.3-only client served by a TLSv1.2-only ssl")
	}
	skip := serverSSL(l, "w.example.com")
	skip.Client = &apisix.SSLClient{CA: ca.PEM, Depth: 1, SkipMTLSURIRegex: []string{"^/health"}}
	errs := m.Update(map[string]*apisix.SSL{"w": skip}, nil)
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "skip_mtls_uri_regex") {
		t.Fatalf("errors %v: want skip_mtls_uri_regex refused", errs)
	}
}
