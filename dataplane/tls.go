package dataplane

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"

	"github.com/meshagent/meshagent/etcdcompat/apisix"
)

// sslCert is a parsed server certificate of an ssl object.
type sslCert struct {
	id    string
	snis  []string
	certs []tls.Certificate
}

// parseSSL parses an ssl object's PEM pairs.
func parseSSL(id string, s *apisix.SSL) (*sslCert, error) {
	if s.Type == "client" {
		return nil, nil
	}
	if s.Status != nil && *s.Status == 0 {
		return nil, nil
	}
	c := &sslCert{id: id}
	if s.SNI != "" {
		c.snis = append(c.snis, strings.ToLower(s.SNI))
	}
	for _, n := range s.SNIs {
		c.snis = append(c.snis, strings.ToLower(n))
	}
	pair, err := tls.X509KeyPair([]byte(s.Cert), []byte(s.Key))
	if err != nil {
		return nil, fmt.Errorf("field \"cert\"/\"key\": %w", err)
	}
	c.certs = append(c.certs, pair)
	if len(s.Certs) != len(s.Keys) {
		return nil, errors.New("field \"certs\": certs and keys must have the same length")
	}
	for i := range s.Certs {
		p, err := tls.X509KeyPair([]byte(s.Certs[i]), []byte(s.Keys[i]))
		if err != nil {
			return nil, fmt.Errorf("field \"certs[%d]\": %w", i, err)
		}
		c.certs = append(c.certs, p)
	}
	return c, nil
}

// certFor picks the certificate for sni: exact first, then the wildcard
// "*.x.com" (exactly one more label), then "*".
func (s *snapshot) certFor(sni string) *tls.Certificate {
	sni = strings.ToLower(sni)
	var wild, any *tls.Certificate
	for _, c := range s.certs {
		for _, n := range c.snis {
			switch {
			case n == sni:
				return &c.certs[0]
			case n == "*":
				any = &c.certs[0]
			case strings.HasPrefix(n, "*.") && strings.HasSuffix(sni, n[1:]):
				label := sni[:len(sni)-len(n)+1]
				if label != "" && !strings.Contains(label, ".") && wild == nil {
					wild = &c.certs[0]
				}
			}
		}
	}
	if wild != nil {
		return wild
	}
	return any
}

// tlsConfig is the server TLS config of the static HTTP listener: the
// snapshot's ssl objects by SNI, ALPN h2 and http/1.1.
func (s *snapshot) tlsConfig() *tls.Config {
	return &tls.Config{
		NextProtos: []string{"h2", "http/1.1"},
		GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c := s.certFor(h.ServerName); c != nil {
				return c, nil
			}
			return nil, fmt.Errorf("%w %q", errNoCert, h.ServerName)
		},
	}
}

// chainTLS builds the TLS config of a listener filter chain.
func (s *snapshot) chainTLS(t *apisix.DownstreamTLS) (*tls.Config, error) {
	if t.SSLID == "" {
		return nil, errors.New("ssl_id is required (SDS secrets are not served by the native data plane)")
	}
	var cert *sslCert
	for _, c := range s.certs {
		if c.id == string(t.SSLID) {
			cert = c
		}
	}
	if cert == nil {
		return nil, fmt.Errorf("ssl %q not found", t.SSLID)
	}
	alpn := t.ALPN
	if len(alpn) == 0 {
		alpn = []string{"h2", "http/1.1"}
	}
	conf := &tls.Config{Certificates: cert.certs, NextProtos: alpn}
	if t.RequireClientCert {
		conf.ClientAuth = tls.RequireAnyClientCert
	}
	return conf, nil
}
