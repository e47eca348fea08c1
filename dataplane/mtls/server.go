package mtls

import (
	"crypto/tls"
	"fmt"

	"github.com/meshagent/meshagent/etcdcompat/apisix"
)

// ServerConfig returns the tls.Config of a listener filter chain that
// terminates TLS with t. The certificate (ssl_id, or secret_name: an SDS
// secret's ssl), the client CA (ca_secret_name, or the ssl's client.ca)
// and the subject-alt-name rules are looked up per handshake in the
// Material in force. Client certificates are required when
// require_client_certificate is set, else requested and verified when a
// CA is configured. NextProtos are t.ALPN (default h2, http/1.1) plus the
// mesh values (MeshALPN). The returned Config must not be mutated.
func (m *Manager) ServerConfig(t *apisix.DownstreamTLS) (*tls.Config, error) {
	if t == nil {
		return nil, fmt.Errorf("%w: tls: missing", ErrInvalid)
	}
	ref := string(t.SSLID)
	byID := ref != ""
	if !byID {
		ref = t.SecretName
	}
	if ref == "" {
		return nil, fmt.Errorf("%w: field \"tls.ssl_id\": one of ssl_id or secret_name is required", ErrInvalid)
	}
	if byID {
		// An ssl object named by id is configuration, not SDS (which may
		// arrive after the listener): it must exist.
		if _, ok := m.Material().sets[ref]; !ok {
			return nil, fmt.Errorf("%w: field \"tls.ssl_id\": ssl %q not found", ErrUnknownSecret, ref)
		}
	}
	sans, err := ParseSANMatchers("tls.match_subject_alt_names", t.MatchSANs)
	if err != nil {
		return nil, err
	}
	if len(sans) == 0 {
		sans = nil // use the CA secret's own matchers
	}
	lookup := func(mat *Material) *CertSet {
		if byID {
			return mat.sets[ref]
		}
		return mat.certByRef(ref)
	}
	conf := &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: serverALPN(t.ALPN),
		GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
			cs := lookup(m.Material())
			if cs == nil {
				m.stats.NoCertificate.Add(1)
				m.log.Warn("mtls: no server certificate", "ref", ref, "sni", h.ServerName)
				return nil, fmt.Errorf("%w: secret %q", ErrNoCertificate, ref)
			}
			return cs.pick(h.SupportsCertificate), nil
		},
	}
	hasCA := t.CASecretName != ""
	if byID {
		if cs := m.Material().sets[ref]; cs != nil && cs.clientCA != nil {
			hasCA = true
		}
	}
	switch {
	case t.RequireClientCert:
		conf.ClientAuth = tls.RequireAnyClientCert
	case hasCA:
		conf.ClientAuth = tls.RequestClientCert
	}
	if conf.ClientAuth != tls.NoClientCert {
		conf.VerifyConnection = func(st tls.ConnectionState) error {
			if len(st.PeerCertificates) == 0 && !t.RequireClientCert {
				return nil
			}
			mat := m.Material()
			var ca *caSet
			if t.CASecretName != "" {
				ca = mat.caByRef(t.CASecretName)
				if ca == nil {
					return m.reject("client", ref, fmt.Errorf("%w: CA secret %q not found", ErrUnknownSecret, t.CASecretName))
				}
			} else if cs := lookup(mat); cs != nil && cs.clientCA != nil {
				ca = cs.clientCA
			}
			if ca == nil {
				return m.reject("client", ref, fmt.Errorf("%w: %w", ErrPeerCertificate, errNoCA))
			}
			if err := m.verifyChain(st.PeerCertificates, ca, sans); err != nil {
				return m.reject("client", ref, err)
			}
			return nil
		}
	}
	return conf, nil
}

// SNIConfig returns the tls.Config of a listener serving every server ssl
// by SNI (the static HTTP listener): certificate by ServerCertFor, client
// certificates verified against the chosen ssl's client.ca and depth when
// it has one. alpn defaults to h2, http/1.1 (plus MeshALPN).
func (m *Manager) SNIConfig(alpn []string) *tls.Config {
	base := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: serverALPN(alpn)}
	base.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		cs := m.Material().ServerCertFor(h.ServerName)
		if cs == nil {
			m.stats.NoCertificate.Add(1)
			return nil, fmt.Errorf("%w for SNI %q", ErrNoCertificate, h.ServerName)
		}
		cert := cs.pick(h.SupportsCertificate)
		c := &tls.Config{
			MinVersion:   tls.VersionTLS12,
			NextProtos:   base.NextProtos,
			Certificates: []tls.Certificate{*cert},
		}
		if cs.minVer != 0 { // ssl_protocols
			c.MinVersion, c.MaxVersion = cs.minVer, cs.maxVer
		}
		if ca := cs.clientCA; ca != nil {
			c.ClientAuth = tls.RequireAnyClientCert
			c.VerifyConnection = func(st tls.ConnectionState) error {
				if err := m.verifyChain(st.PeerCertificates, ca, nil); err != nil {
					return m.reject("client", "ssl/"+cs.ID, err)
				}
				return nil
			}
		}
		return c, nil
	}
	return base
}
