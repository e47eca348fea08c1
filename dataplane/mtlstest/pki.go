// Package mtlstest provides test certificate authorities issuing SPIFFE
// certificates (crypto/x509, short lifetimes) and holds the end-to-end
// tests of meshagent's mTLS: two data planes on loopback, one originating
// mTLS to the other, which terminates it in front of a plain backend.
//
// It owns test fixtures only; nothing in production code imports it.
package mtlstest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/url"
	"sync/atomic"
	"time"
)

// KeyType is the key algorithm of an issued certificate.
type KeyType int

const (
	// ECDSA is a P-256 key.
	ECDSA KeyType = iota
	// RSA is a 2048-bit RSA key.
	RSA
)

// String names the key type.
func (k KeyType) String() string {
	if k == RSA {
		return "rsa"
	}
	return "ecdsa"
}

var serial atomic.Int64

// CA is a self-signed test certificate authority.
type CA struct {
	// Name is the CA's common name.
	Name string
	// PEM is the CA certificate, PEM encoded.
	PEM  string
	cert *x509.Certificate
	key  crypto.Signer
}

// NewCA creates a CA valid from an hour ago for a day.
func NewCA(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial.Add(1)),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"meshagent-test"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Name: name, PEM: pemOf("CERTIFICATE", der), cert: cert, key: key}, nil
}

// Leaf is an issued certificate and its key, PEM encoded.
type Leaf struct {
	// CertPEM is the certificate.
	CertPEM string
	// KeyPEM is its PKCS#8 private key.
	KeyPEM string
	// Serial is the certificate's serial number.
	Serial *big.Int
}

// Issue signs a workload certificate whose URI SAN is spiffeID (and DNS
// SANs dns), valid in [notBefore, notAfter], with a key of type kt.
func (ca *CA) Issue(spiffeID string, dns []string, notBefore, notAfter time.Time, kt KeyType) (*Leaf, error) {
	var key crypto.Signer
	var err error
	if kt == RSA {
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)),
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     dns,
	}
	if spiffeID != "" {
		u, err := url.Parse(spiffeID)
		if err != nil {
			return nil, fmt.Errorf("mtlstest: spiffe id: %w", err)
		}
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &Leaf{CertPEM: pemOf("CERTIFICATE", der), KeyPEM: pemOf("PRIVATE KEY", kder), Serial: tmpl.SerialNumber}, nil
}

// MustIssue is Issue valid from a minute ago for ttl, panicking on error.
func (ca *CA) MustIssue(spiffeID string, ttl time.Duration, kt KeyType) *Leaf {
	l, err := ca.Issue(spiffeID, nil, time.Now().Add(-time.Minute), time.Now().Add(ttl), kt)
	if err != nil {
		panic(err)
	}
	return l
}

func pemOf(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}
