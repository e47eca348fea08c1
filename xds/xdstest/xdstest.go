// Package xdstest holds the helpers the xDS tests share: a logger that
// stays quiet unless asked, polling for a condition, and test
// certificates (ECDSA P-256, self-signed or issued by a test CA).
//
// It owns test fixtures only; nothing in production code imports it. It
// does not import package xds, so xds's own tests can use it; the xDS
// server fixtures are in xds/controlplane.
package xdstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"math/big"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// LogEnv names the environment variable that, when set to anything, makes
// Logger write debug logs to stderr.
const LogEnv = "XDS_TEST_LOG"

// Logger returns a logger for components under test: it discards
// everything unless LogEnv is set, then it writes debug logs to stderr.
func Logger(testing.TB) *slog.Logger {
	if os.Getenv(LogEnv) != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// Eventually polls cond every 5 ms until it holds, failing t when it
// still does not after 10 s; what names the awaited state in the failure.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Readier is what WaitReady needs of an xDS client (*xds.Client): a
// channel closed once the first complete config is applied, and a status
// to print when it is not.
type Readier[S any] interface {
	ReadyCh() <-chan struct{}
	Status() S
}

// WaitReady waits up to 10 s for r to become ready, failing t with r's
// status when it does not; what qualifies the failure ("sidecar", "over
// TLS"), or is empty.
func WaitReady[S any](t testing.TB, r Readier[S], what string) {
	t.Helper()
	select {
	case <-r.ReadyCh():
	case <-time.After(10 * time.Second):
		if what != "" {
			what = " (" + what + ")"
		}
		t.Fatalf("not ready%s: %+v", what, r.Status())
	}
}

// Cert is a test certificate with its ECDSA P-256 key.
type Cert struct {
	// X509 is the parsed certificate.
	X509 *x509.Certificate
	// DER is the certificate, DER encoded.
	DER []byte
	// Key is the certificate's private key.
	Key *ecdsa.PrivateKey
}

var serial atomic.Int64

// NewCert creates a certificate from tmpl with a fresh key, signed by
// parent (self-signed when parent is nil). Zero fields of tmpl get
// defaults: a serial number unique in the process, NotBefore an hour ago,
// NotAfter a day from now. tmpl is modified. Failures fail t.
func NewCert(t testing.TB, tmpl *x509.Certificate, parent *Cert) *Cert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if tmpl.SerialNumber == nil {
		tmpl.SerialNumber = big.NewInt(serial.Add(1))
	}
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = time.Now().Add(-time.Hour)
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	}
	issuer, signer := tmpl, key
	if parent != nil {
		issuer, signer = parent.X509, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &Cert{X509: c, DER: der, Key: key}
}

// CertPEM returns the certificate, PEM encoded.
func (c *Cert) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.DER})
}

// KeyPEM returns the private key as a PEM "EC PRIVATE KEY" (SEC 1) block.
func (c *Cert) KeyPEM() []byte {
	der, err := x509.MarshalECPrivateKey(c.Key)
	if err != nil {
		panic(err) // a P-256 key generated above always marshals
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

// TLS returns the certificate and key for a tls.Config.
func (c *Cert) TLS() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{c.DER}, PrivateKey: c.Key, Leaf: c.X509}
}
