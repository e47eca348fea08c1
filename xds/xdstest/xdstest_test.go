package xdstest

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"testing"
	"time"
)

// TestNewCert: a leaf issued by a test CA verifies against it for its IP
// SAN, its PEM certificate and key form a usable pair, and unset validity
// and serial fields get defaults.
func TestNewCert(t *testing.T) {
	ca := NewCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "ca"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}, nil)
	leaf := NewCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "srv"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, ca)
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(ca.CertPEM()) {
		t.Fatal("CA PEM does not parse")
	}
	if _, err := leaf.X509.Verify(x509.VerifyOptions{Roots: roots, DNSName: "127.0.0.1"}); err != nil {
		t.Fatalf("leaf does not verify against its CA: %v", err)
	}
	if _, err := ca.X509.Verify(x509.VerifyOptions{Roots: x509.NewCertPool()}); err == nil {
		t.Fatal("self-signed CA verified against an empty pool")
	}
	if _, err := tls.X509KeyPair(leaf.CertPEM(), leaf.KeyPEM()); err != nil {
		t.Fatalf("PEM pair: %v", err)
	}
	if ca.X509.SerialNumber.Cmp(leaf.X509.SerialNumber) == 0 {
		t.Fatalf("serial %v reused", ca.X509.SerialNumber)
	}
	now := time.Now()
	if !leaf.X509.NotBefore.Before(now) || !leaf.X509.NotAfter.After(now.Add(time.Hour)) {
		t.Fatalf("validity %v..%v does not cover the test", leaf.X509.NotBefore, leaf.X509.NotAfter)
	}
}

// TestEventually: a condition that turns true ends the wait at once.
func TestEventually(t *testing.T) {
	n := 0
	Eventually(t, "third poll", func() bool { n++; return n == 3 })
	if n != 3 {
		t.Fatalf("polled %d times, want 3", n)
	}
}
