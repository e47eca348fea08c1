package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"

	"github.com/meshagent/meshagent/etcdcompat/apisix"
)

// ClientConfig returns the tls.Config for connections to an upstream
// with tls u (nil: APISIX's default, TLS without verification).
//
// The client certificate is, in order: client_cert/client_key (inline,
// parsed now), client_cert_id (an ssl object, looked up per handshake),
// secret_name (an SDS secret's ssl, looked up per handshake). The server
// is verified against trusted_ca (inline) or ca_secret_name (looked up per
// handshake) and its subject alt names against match_subject_alt_names
// (or the CA secret's own); with neither CA, it is verified against the
// system roots and sni when verify is set, and not at all otherwise (as
// APISIX). SNI is u.SNI; ALPN u.ALPN. The returned Config must not be
// mutated (clone it to set ServerName).
func (m *Manager) ClientConfig(u *apisix.UpstreamTLS) (*tls.Config, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if u == nil {
		conf.InsecureSkipVerify = true //nolint:gosec // APISIX does not verify upstream certs by default.
		return conf, nil
	}
	conf.ServerName = u.SNI
	conf.NextProtos = append([]string(nil), u.ALPN...)
	switch {
	case u.ClientCert != "" || u.ClientKey != "":
		cs, err := parseSSL("upstream.tls", &apisix.SSL{Type: "client", Cert: u.ClientCert, Key: u.ClientKey}, m.keyring)
		if err != nil {
			return nil, fmt.Errorf("%w: field \"tls.client_cert\"/\"tls.client_key\": do not form a key pair", ErrInvalid)
		}
		conf.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return cs.pick(cri.SupportsCertificate), nil
		}
	case u.ClientCertID != "" || u.SecretName != "":
		ref, byID := string(u.ClientCertID), u.ClientCertID != ""
		if !byID {
			ref = u.SecretName
		}
		if byID {
			if _, ok := m.Material().sets[ref]; !ok {
				return nil, fmt.Errorf("%w: field \"tls.client_cert_id\": ssl %q not found", ErrUnknownSecret, ref)
			}
		}
		conf.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
			mat := m.Material()
			cs := mat.certByRef(ref)
			if byID {
				cs = mat.sets[ref]
			}
			if cs == nil {
				m.stats.NoCertificate.Add(1)
				m.log.Warn("mtls: no client certificate for upstream", "ref", ref)
				// An empty certificate: the server decides (and a mesh
				// server refuses, with its own log line).
				return &tls.Certificate{}, nil
			}
			return cs.pick(cri.SupportsCertificate), nil
		}
	}
	sans, err := ParseSANMatchers("tls.match_subject_alt_names", u.MatchSANs)
	if err != nil {
		return nil, err
	}
	if len(sans) == 0 {
		sans = nil
	}
	var inline *caSet
	if u.TrustedCA != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(u.TrustedCA)) {
			return nil, fmt.Errorf("%w: field \"tls.trusted_ca\": must be PEM encoded X.509 certificates", ErrInvalid)
		}
		inline = &caSet{name: "tls.trusted_ca", pool: pool}
	}
	if inline == nil && u.CASecretName == "" {
		if !u.Verify {
			conf.InsecureSkipVerify = true //nolint:gosec // APISIX's default: tls.verify false.
		}
		if len(sans) > 0 {
			return nil, fmt.Errorf("%w: field \"tls.match_subject_alt_names\": needs trusted_ca or ca_secret_name", ErrInvalid)
		}
		return conf, nil
	}
	// The chain and identity are checked here, against the CA in force:
	// SPIFFE certificates carry no DNS name to match the SNI against.
	conf.InsecureSkipVerify = true //nolint:gosec // verified in VerifyConnection.
	caRef := u.CASecretName
	conf.VerifyConnection = func(st tls.ConnectionState) error {
		ca := inline
		if ca == nil {
			if ca = m.Material().caByRef(caRef); ca == nil {
				return m.reject("server", caRef, fmt.Errorf("%w: CA secret %q not found", ErrUnknownSecret, caRef))
			}
		}
		if err := m.verifyChain(st.PeerCertificates, ca, sans); err != nil {
			return m.reject("server", serverRef(u, st), err)
		}
		return nil
	}
	return conf, nil
}

func serverRef(u *apisix.UpstreamTLS, st tls.ConnectionState) string {
	if st.ServerName != "" {
		return st.ServerName
	}
	if u.SNI != "" {
		return u.SNI
	}
	return strings.Join(u.MatchSANs, ",")
}
