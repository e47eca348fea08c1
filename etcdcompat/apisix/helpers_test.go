package apisix

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"
)

type testPKI struct {
	cert, key   string // a server pair
	cert2, key2 string // a second pair
}

var (
	pkiOnce sync.Once
	pki     testPKI
)

// testCerts returns freshly generated self-signed ECDSA pairs in PEM.
func testCerts(t testing.TB) testPKI {
	t.Helper()
	pkiOnce.Do(func() {
		pki.cert, pki.key = genPair(t, "a.example.com")
		pki.cert2, pki.key2 = genPair(t, "b.example.com")
	})
	return pki
}

func genPair(t testing.TB, cn string) (string, string) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: cn},
		DNSNames:              []string{cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
}

// expand replaces {{CERT}}, {{KEY}}, {{CERT2}}, {{KEY2}} with JSON string
// contents (no quotes) of the test PEMs.
func expand(t testing.TB, doc string) string {
	if !strings.Contains(doc, "{{") {
		return doc
	}
	p := testCerts(t)
	q := func(s string) string {
		b, _ := json.Marshal(s)
		return string(b[1 : len(b)-1])
	}
	return strings.NewReplacer("{{CERT}}", q(p.cert), "{{KEY}}", q(p.key),
		"{{CERT2}}", q(p.cert2), "{{KEY2}}", q(p.key2)).Replace(doc)
}
