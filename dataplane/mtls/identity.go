package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strconv"
	"strings"
)

// MatchKind is how a SANMatcher compares.
type MatchKind int

const (
	// MatchExact compares the whole SAN.
	MatchExact MatchKind = iota
	// MatchPrefix matches SANs starting with the value ("v*").
	MatchPrefix
	// MatchSuffix matches SANs ending with the value ("*v").
	MatchSuffix
	// MatchContains matches SANs containing the value ("*v*").
	MatchContains
)

// String returns the kind's name.
func (k MatchKind) String() string {
	switch k {
	case MatchExact:
		return "exact"
	case MatchPrefix:
		return "prefix"
	case MatchSuffix:
		return "suffix"
	case MatchContains:
		return "contains"
	}
	return "MatchKind(" + strconv.Itoa(int(k)) + ")"
}

// SANMatcher is one compiled match_subject_alt_names entry. The string
// form is the one xds/translate writes for Envoy's StringMatcher: a
// literal is exact, "v*" is prefix v, "*v" suffix v, "*v*" contains v.
type SANMatcher struct {
	// Kind is how Value is compared.
	Kind MatchKind
	// Value is the literal compared (without the "*" markers).
	Value string
}

// ParseSANMatchers compiles match_subject_alt_names; field names the
// config field for errors.
func ParseSANMatchers(field string, in []string) ([]SANMatcher, error) {
	out := make([]SANMatcher, 0, len(in))
	for i, s := range in {
		m := SANMatcher{Kind: MatchExact, Value: s}
		pre, suf := strings.HasPrefix(s, "*"), strings.HasSuffix(s, "*")
		switch {
		case len(s) >= 2 && pre && suf:
			m = SANMatcher{Kind: MatchContains, Value: s[1 : len(s)-1]}
		case suf:
			m = SANMatcher{Kind: MatchPrefix, Value: s[:len(s)-1]}
		case pre:
			m = SANMatcher{Kind: MatchSuffix, Value: s[1:]}
		}
		if m.Value == "" {
			return nil, fmt.Errorf("%w: field %q: item %d: empty matcher", ErrInvalid, field, i)
		}
		out = append(out, m)
	}
	return out, nil
}

// Match reports whether s satisfies m.
func (m SANMatcher) Match(s string) bool {
	switch m.Kind {
	case MatchExact:
		return s == m.Value
	case MatchPrefix:
		return strings.HasPrefix(s, m.Value)
	case MatchSuffix:
		return strings.HasSuffix(s, m.Value)
	case MatchContains:
		return strings.Contains(s, m.Value)
	}
	return false
}

// String returns the matcher in its config form.
func (m SANMatcher) String() string {
	switch m.Kind {
	case MatchPrefix:
		return m.Value + "*"
	case MatchSuffix:
		return "*" + m.Value
	case MatchContains:
		return "*" + m.Value + "*"
	}
	return m.Value
}

// matchAnySAN reports whether one of c's subject alt names (URI, DNS,
// e-mail, IP) satisfies one of ms. An empty ms matches everything.
func matchAnySAN(ms []SANMatcher, c *x509.Certificate) bool {
	if len(ms) == 0 {
		return true
	}
	for _, m := range ms {
		for _, u := range c.URIs {
			if m.Match(u.String()) {
				return true
			}
		}
		for _, d := range c.DNSNames {
			if m.Match(d) {
				return true
			}
		}
		for _, e := range c.EmailAddresses {
			if m.Match(e) {
				return true
			}
		}
		for _, ip := range c.IPAddresses {
			if m.Match(ip.String()) {
				return true
			}
		}
	}
	return false
}

// sanList renders c's URI and DNS SANs for log lines (no key material).
func sanList(c *x509.Certificate) string {
	var b strings.Builder
	for _, u := range c.URIs {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(u.String())
	}
	for _, d := range c.DNSNames {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(d)
	}
	return b.String()
}

// Identity returns the SPIFFE identity (the first spiffe:// URI SAN) of a
// certificate, or "".
func Identity(c *x509.Certificate) string {
	if c == nil {
		return ""
	}
	for _, u := range c.URIs {
		if strings.EqualFold(u.Scheme, "spiffe") {
			return u.String()
		}
	}
	return ""
}

// PeerIdentity returns the SPIFFE identity of the peer of a completed
// handshake (its leaf certificate's first spiffe:// URI SAN), or "" when
// the peer sent no certificate or one without a SPIFFE id.
func PeerIdentity(cs *tls.ConnectionState) string {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return ""
	}
	return Identity(cs.PeerCertificates[0])
}

// Principal is the peer's principal name as Envoy's RBAC sees it: the
// first URI SAN, else the first DNS SAN, else the subject.
func Principal(c *x509.Certificate) string {
	if c == nil {
		return ""
	}
	if len(c.URIs) > 0 {
		return c.URIs[0].String()
	}
	if len(c.DNSNames) > 0 {
		return c.DNSNames[0]
	}
	return c.Subject.String()
}
