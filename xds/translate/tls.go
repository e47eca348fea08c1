package translate

import (
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/meshagent/meshagent/etcdcompat/apisix"
)

const (
	typeUpstreamTLS   = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
	typeDownstreamTLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
	typeRawBuffer     = "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"
)

// commonTLS is what meshagent keeps of a CommonTlsContext.
type commonTLS struct {
	alpn         []string
	secretName   string
	caSecretName string
	trustedCA    string
	sans         []string
	inlineCert   string
	inlineKey    string
	// adsSecrets are SDS secrets fetched over ADS (the client subscribes
	// to them); otherSecrets name another config source (e.g. Istio's
	// istio-agent over sds-grpc), which meshagent does not fetch.
	adsSecrets, otherSecrets []string
}

// overADS reports whether an SDS secret comes over the ADS stream.
func overADS(c *tlsv3.SdsSecretConfig) bool {
	switch c.GetSdsConfig().GetConfigSourceSpecifier().(type) {
	case *corev3.ConfigSource_Ads, *corev3.ConfigSource_Self:
		return true
	}
	return false
}

func (c *commonTLS) note(s *tlsv3.SdsSecretConfig) string {
	if s == nil || s.GetName() == "" {
		return ""
	}
	if overADS(s) {
		c.adsSecrets = append(c.adsSecrets, s.GetName())
	} else {
		c.otherSecrets = append(c.otherSecrets, s.GetName())
	}
	return s.GetName()
}

func dataSource(d *corev3.DataSource) (string, error) {
	switch d.GetSpecifier().(type) {
	case *corev3.DataSource_InlineBytes:
		return string(d.GetInlineBytes()), nil
	case *corev3.DataSource_InlineString:
		return d.GetInlineString(), nil
	case nil:
		return "", nil
	}
	return "", fmt.Errorf("only inline data sources are supported (filename and environment_variable are not)")
}

func sanMatchers(vc *tlsv3.CertificateValidationContext) ([]string, error) {
	var out []string
	for i, m := range vc.GetMatchTypedSubjectAltNames() {
		s, err := exactOrPrefixSAN(m.GetMatcher())
		if err != nil {
			return nil, fmt.Errorf("match_typed_subject_alt_names[%d]: %v", i, err)
		}
		out = append(out, s)
	}
	for i, m := range vc.GetMatchSubjectAltNames() {
		s, err := exactOrPrefixSAN(m)
		if err != nil {
			return nil, fmt.Errorf("match_subject_alt_names[%d]: %v", i, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// exactOrPrefixSAN encodes a SAN matcher as the literal, or literal+"*"
// for a prefix match (Kuma's spiffe://mesh/* style).
func exactOrPrefixSAN(m *matcherv3.StringMatcher) (string, error) {
	switch m.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		return m.GetExact(), nil
	case *matcherv3.StringMatcher_Prefix:
		return m.GetPrefix() + "*", nil
	}
	return "", fmt.Errorf("only exact and prefix SAN matchers are supported")
}

func parseCommonTLS(c *tlsv3.CommonTlsContext) (*commonTLS, error) {
	out := &commonTLS{alpn: c.GetAlpnProtocols()}
	if s := c.GetTlsCertificateSdsSecretConfigs(); len(s) > 0 {
		out.secretName = out.note(s[0])
	}
	if certs := c.GetTlsCertificates(); len(certs) > 0 {
		var err error
		if out.inlineCert, err = dataSource(certs[0].GetCertificateChain()); err != nil {
			return nil, fmt.Errorf("tls_certificates[0].certificate_chain: %v", err)
		}
		if out.inlineKey, err = dataSource(certs[0].GetPrivateKey()); err != nil {
			return nil, fmt.Errorf("tls_certificates[0].private_key: %v", err)
		}
	}
	var vc *tlsv3.CertificateValidationContext
	switch v := c.GetValidationContextType().(type) {
	case *tlsv3.CommonTlsContext_ValidationContext:
		vc = v.ValidationContext
	case *tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig:
		out.caSecretName = out.note(v.ValidationContextSdsSecretConfig)
	case *tlsv3.CommonTlsContext_CombinedValidationContext:
		vc = v.CombinedValidationContext.GetDefaultValidationContext()
		out.caSecretName = out.note(v.CombinedValidationContext.GetValidationContextSdsSecretConfig())
	case nil:
	default:
		return nil, fmt.Errorf("validation context type %T is not supported", v)
	}
	if vc != nil {
		var err error
		if out.trustedCA, err = dataSource(vc.GetTrustedCa()); err != nil {
			return nil, fmt.Errorf("validation_context.trusted_ca: %v", err)
		}
		if out.sans, err = sanMatchers(vc); err != nil {
			return nil, fmt.Errorf("validation_context.%v", err)
		}
	}
	return out, nil
}

// upstreamTLS translates a cluster transport socket; nil means plaintext.
func upstreamTLS(r *unitResult, ts *corev3.TransportSocket) (*apisix.UpstreamTLS, error) {
	tc := ts.GetTypedConfig()
	switch tc.GetTypeUrl() {
	case "", typeRawBuffer:
		return nil, nil
	case typeUpstreamTLS:
	default:
		return nil, fmt.Errorf("transport socket %q (%s) is not supported", ts.GetName(), tc.GetTypeUrl())
	}
	var u tlsv3.UpstreamTlsContext
	if err := tc.UnmarshalTo(&u); err != nil {
		return nil, fmt.Errorf("typed_config: %v", err)
	}
	c, err := parseCommonTLS(u.GetCommonTlsContext())
	if err != nil {
		return nil, fmt.Errorf("common_tls_context.%v", err)
	}
	r.secrets(c)
	out := &apisix.UpstreamTLS{
		SNI:          u.GetSni(),
		ALPN:         c.alpn,
		TrustedCA:    c.trustedCA,
		MatchSANs:    c.sans,
		SecretName:   c.secretName,
		CASecretName: c.caSecretName,
	}
	if c.inlineCert != "" {
		out.ClientCert, out.ClientKey = c.inlineCert, c.inlineKey
	}
	return out, nil
}

// downstreamTLS translates a filter chain transport socket.
func downstreamTLS(r *unitResult, ts *corev3.TransportSocket) (*apisix.DownstreamTLS, *commonTLS, error) {
	tc := ts.GetTypedConfig()
	switch tc.GetTypeUrl() {
	case "", typeRawBuffer:
		return nil, nil, nil
	case typeDownstreamTLS:
	default:
		return nil, nil, fmt.Errorf("transport socket %q (%s) is not supported", ts.GetName(), tc.GetTypeUrl())
	}
	var d tlsv3.DownstreamTlsContext
	if err := tc.UnmarshalTo(&d); err != nil {
		return nil, nil, fmt.Errorf("typed_config: %v", err)
	}
	c, err := parseCommonTLS(d.GetCommonTlsContext())
	if err != nil {
		return nil, nil, fmt.Errorf("common_tls_context.%v", err)
	}
	r.secrets(c)
	return &apisix.DownstreamTLS{
		SecretName:        c.secretName,
		CASecretName:      c.caSecretName,
		RequireClientCert: d.GetRequireClientCertificate().GetValue(),
		ALPN:              c.alpn,
		MatchSANs:         c.sans,
	}, c, nil
}

// caSecret is the JSON of a validation-context secret under PrefixSecrets.
type caSecret struct {
	Labels    apisix.Labels `json:"labels,omitempty"`
	TrustedCA string        `json:"trusted_ca"`
	MatchSANs []string      `json:"match_subject_alt_names,omitempty"`
}

func (t *Translator) translateSecret(r *unitResult, name string, e *entry) error {
	s := e.msg.(*tlsv3.Secret)
	bad := func(field string, err error) error {
		return fmt.Errorf("%w: secret %q: %s: %v", ErrInvalid, name, field, err)
	}
	if s.GetName() != name {
		return bad("name", fmt.Errorf("resource name %q differs from secret name", s.GetName()))
	}
	switch v := s.GetType().(type) {
	case *tlsv3.Secret_TlsCertificate:
		cert, err := dataSource(v.TlsCertificate.GetCertificateChain())
		if err != nil {
			return bad("tls_certificate.certificate_chain", err)
		}
		key, err := dataSource(v.TlsCertificate.GetPrivateKey())
		if err != nil {
			return bad("tls_certificate.private_key", err)
		}
		if cert == "" || key == "" {
			return bad("tls_certificate", fmt.Errorf("certificate_chain and private_key are required"))
		}
		// A client-type ssl: the data plane presents it to peers (mTLS)
		// and serves it on listeners naming the secret.
		return r.put(PrefixSSLs+ObjectID(name), &apisix.SSL{
			Labels: labels(name, e.version),
			Type:   "client",
			Cert:   cert,
			Key:    key,
		})
	case *tlsv3.Secret_ValidationContext:
		ca, err := dataSource(v.ValidationContext.GetTrustedCa())
		if err != nil {
			return bad("validation_context.trusted_ca", err)
		}
		sans, err := sanMatchers(v.ValidationContext)
		if err != nil {
			return bad("validation_context", err)
		}
		return r.put(PrefixSecrets+ObjectID(name), &caSecret{Labels: labels(name, e.version), TrustedCA: ca, MatchSANs: sans})
	default:
		return bad("type", fmt.Errorf("secret type %T is not supported", v))
	}
}

// secrets records the SDS secrets served over ADS as dependencies (the
// client subscribes to them, and readiness waits for them); secrets from
// another source are not fetched and are reported once per push.
func (r *unitResult) secrets(c *commonTLS) {
	for _, n := range c.adsSecrets {
		r.deps = append(r.deps, resKey{KindSecret, n})
	}
	for _, n := range c.otherSecrets {
		r.warnf("SDS secret %q is served by a source other than ADS; not fetched", n)
	}
}
