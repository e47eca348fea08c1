package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/meshagent/meshagent/etcdcompat/apisix"
)

// CertSet is the parsed form of one ssl object: its certificate/key pairs
// (cert+key first, then certs[i]+keys[i]), its SNIs and, for a server
// ssl with client.ca, the client-certificate policy. It is immutable.
type CertSet struct {
	// ID is the ssl object's id.
	ID string
	// Name is the SDS secret name it was translated from ("" otherwise).
	Name string
	// Client reports type "client" (a workload/client certificate).
	Client bool
	// SNIs are the lowercased names of a server ssl.
	SNIs  []string
	certs []tls.Certificate
	// clientCA verifies downstream client certificates (ssl.client).
	clientCA *caSet
	// minVer, maxVer come from ssl_protocols (0: Go's defaults).
	minVer, maxVer uint16
	src            *apisix.SSL
}

// caSet is a parsed trust anchor with its identity rules.
type caSet struct {
	name  string
	pool  *x509.CertPool
	sans  []SANMatcher
	depth int // max chain length - 1; 0: unlimited
	src   *apisix.Secret
}

// pick returns the first pair the peer supports (ECDSA vs RSA, by the
// ClientHello's or CertificateRequest's signature schemes), else the first.
func (c *CertSet) pick(supports func(*tls.Certificate) error) *tls.Certificate {
	if supports != nil {
		for i := range c.certs {
			if supports(&c.certs[i]) == nil {
				return &c.certs[i]
			}
		}
	}
	return &c.certs[0]
}

// Material is an immutable set of certificates and trust anchors compiled
// from one store snapshot. It is shared by concurrent handshakes.
type Material struct {
	sets    map[string]*CertSet // by ssl id
	byName  map[string]*CertSet // by SDS secret name (label meshagent.xds.name)
	servers []*CertSet          // server ssls, by id, for SNI selection
	cas     map[string]*caSet   // secrets by id and by SDS name
}

// EmptyMaterial is the Material before the first Update.
func EmptyMaterial() *Material {
	return &Material{sets: map[string]*CertSet{}, byName: map[string]*CertSet{}, cas: map[string]*caSet{}}
}

// Inputs are the objects a Material is built from, by id.
type Inputs struct {
	// SSLs are the ssl objects by id (server and client types).
	SSLs map[string]*apisix.SSL
	// Secrets are the validation contexts by id.
	Secrets map[string]*apisix.Secret
	// Keyring decrypts APISIX-encrypted private keys (nil: APISIX's
	// default keyring).
	Keyring []string
}

// BuildMaterial compiles in. An object that fails to compile keeps its
// version from prev (when prev has one) and its error is returned, naming
// the object and field; the others are unaffected. Parsed objects of prev
// whose decoded value is unchanged (the same pointer) are reused.
func BuildMaterial(in Inputs, prev *Material) (*Material, []error) {
	if prev == nil {
		prev = EmptyMaterial()
	}
	kr := in.Keyring
	if kr == nil {
		kr = apisix.DefaultKeyring()
	}
	m := EmptyMaterial()
	var errs []error
	ids := make([]string, 0, len(in.SSLs))
	for id := range in.SSLs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		s := in.SSLs[id]
		cs, ok := prev.sets[id]
		if !ok || cs.src != s {
			var err error
			cs, err = parseSSL(id, s, kr)
			if err != nil {
				errs = append(errs, err)
				if cs, ok = prev.sets[id]; !ok {
					continue
				}
			}
		}
		if cs == nil { // disabled (status 0)
			continue
		}
		m.sets[id] = cs
		if cs.Name != "" {
			m.byName[cs.Name] = cs
		}
		if !cs.Client {
			m.servers = append(m.servers, cs)
		}
	}
	sids := make([]string, 0, len(in.Secrets))
	for id := range in.Secrets {
		sids = append(sids, id)
	}
	sort.Strings(sids)
	for _, id := range sids {
		s := in.Secrets[id]
		ca, ok := prev.cas["id:"+id]
		if !ok || ca.src != s {
			var err error
			ca, err = parseSecret(id, s)
			if err != nil {
				errs = append(errs, err)
				if ca, ok = prev.cas["id:"+id]; !ok {
					continue
				}
			}
		}
		m.cas["id:"+id] = ca
		m.cas["name:"+ca.name] = ca
	}
	return m, errs
}

func parseSSL(id string, s *apisix.SSL, keyring []string) (*CertSet, error) {
	if s.Status != nil && *s.Status == 0 {
		return nil, nil
	}
	bad := func(field string, err error) error {
		return fmt.Errorf("%w: ssl %q: field %q: %w", ErrInvalid, id, field, err)
	}
	cs := &CertSet{ID: id, Name: s.Labels[apisix.LabelXDSName], Client: s.Type == "client", src: s}
	if cs.Name == "" {
		cs.Name = id
	}
	if s.SNI != "" {
		cs.SNIs = append(cs.SNIs, strings.ToLower(s.SNI))
	}
	for _, n := range s.SNIs {
		cs.SNIs = append(cs.SNIs, strings.ToLower(n))
	}
	pair := func(field string, cert, key string) error {
		if !strings.HasPrefix(key, "---") {
			plain, err := apisix.DecryptPrivateKey(key, keyring)
			if err != nil {
				return bad(field, errors.New("private key is neither PEM nor decryptable with the keyring"))
			}
			key = plain
		}
		p, err := tls.X509KeyPair([]byte(cert), []byte(key))
		if err != nil {
			return bad(field, err)
		}
		if p.Leaf == nil {
			if p.Leaf, err = x509.ParseCertificate(p.Certificate[0]); err != nil {
				return bad(field, err)
			}
		}
		cs.certs = append(cs.certs, p)
		return nil
	}
	if err := pair("cert", s.Cert, s.Key); err != nil {
		return nil, err
	}
	if len(s.Certs) != len(s.Keys) {
		return nil, bad("certs", errors.New("certs and keys must have the same length"))
	}
	for i := range s.Certs {
		if err := pair(fmt.Sprintf("certs[%d]", i), s.Certs[i], s.Keys[i]); err != nil {
			return nil, err
		}
	}
	for i, p := range s.SSLProtocols {
		v, ok := tlsVersions[p]
		if !ok {
			return nil, bad(fmt.Sprintf("ssl_protocols[%d]", i), errors.New("one of TLSv1.1, TLSv1.2, TLSv1.3"))
		}
		if cs.minVer == 0 || v < cs.minVer {
			cs.minVer = v
		}
		cs.maxVer = max(cs.maxVer, v)
	}
	if s.Client != nil && len(s.Client.SkipMTLSURIRegex) > 0 {
		// Per-URI exemptions need the request before the handshake's
		// verdict; refusing the object beats silently weakening or
		// strengthening it (real APISIX still reads it from the store).
		return nil, bad("client.skip_mtls_uri_regex", errors.New("is not supported by the native data plane"))
	}
	if s.Client != nil {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(s.Client.CA)) {
			return nil, bad("client.ca", errors.New("must be PEM encoded X.509 certificates"))
		}
		cs.clientCA = &caSet{name: "ssl/" + id, pool: pool, depth: s.Client.Depth}
	}
	return cs, nil
}

func parseSecret(id string, s *apisix.Secret) (*caSet, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(s.TrustedCA)) {
		return nil, fmt.Errorf("%w: secret %q: field \"trusted_ca\": must be PEM encoded X.509 certificates", ErrInvalid, id)
	}
	sans, err := ParseSANMatchers("match_subject_alt_names", s.MatchSANs)
	if err != nil {
		return nil, fmt.Errorf("secret %q: %w", id, err)
	}
	name := s.Labels[apisix.LabelXDSName]
	if name == "" {
		name = id
	}
	return &caSet{name: name, pool: pool, sans: sans, src: s}, nil
}

var tlsVersions = map[string]uint16{"TLSv1.1": tls.VersionTLS11, "TLSv1.2": tls.VersionTLS12, "TLSv1.3": tls.VersionTLS13}

// certByRef finds an ssl object by SDS secret name, then by id.
func (m *Material) certByRef(name string) *CertSet {
	if cs, ok := m.byName[name]; ok {
		return cs
	}
	return m.sets[name]
}

// caByRef finds a validation context by SDS secret name, then by id.
func (m *Material) caByRef(name string) *caSet {
	if ca, ok := m.cas["name:"+name]; ok {
		return ca
	}
	return m.cas["id:"+name]
}

// ServerCertFor returns the server ssl for sni: an exact name first, then
// "*.x.com" matching exactly one extra label, then "*". nil when none.
func (m *Material) ServerCertFor(sni string) *CertSet {
	sni = strings.ToLower(strings.TrimSuffix(sni, "."))
	var wild, any *CertSet
	for _, c := range m.servers {
		for _, n := range c.SNIs {
			switch {
			case n == sni:
				return c
			case n == "*":
				if any == nil {
					any = c
				}
			case wild == nil && strings.HasPrefix(n, "*.") && len(sni) > len(n)-1 && strings.HasSuffix(sni, n[1:]):
				if label := sni[:len(sni)-len(n)+1]; !strings.Contains(label, ".") {
					wild = c
				}
			}
		}
	}
	if wild != nil {
		return wild
	}
	return any
}

// Len is the number of ssl objects in force.
func (m *Material) Len() int { return len(m.sets) }

// HasServerCerts reports whether any server ssl is in force.
func (m *Material) HasServerCerts() bool { return len(m.servers) > 0 }
