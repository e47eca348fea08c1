package translate

import (
	"strconv"
	"strings"

	"github.com/cespare/xxhash/v2"
)

// maxIDLen is APISIX's limit on string ids.
const maxIDLen = 64

// ObjectID returns a stable APISIX id for an xDS resource name: the name
// itself when it only uses APISIX's id charset [a-zA-Z0-9-_.] and fits in
// 64 characters, otherwise the name with other characters replaced by '_',
// cut short, and suffixed with '-' and 8 hex digits of a hash of the full
// name, so distinct names never share an id.
func ObjectID(name string) string {
	if name != "" && len(name) <= maxIDLen && validIDChars(name) {
		return name
	}
	h := strconv.FormatUint(xxhash.Sum64String(name)&0xffffffff, 16)
	for len(h) < 8 {
		h = "0" + h
	}
	var b strings.Builder
	limit := maxIDLen - 1 - len(h)
	for i := 0; i < len(name) && b.Len() < limit; i++ {
		c := name[i]
		if isIDChar(c) {
			b.WriteByte(c)
		} else {
			b.WriteByte('_')
		}
	}
	if b.Len() > 0 {
		b.WriteByte('-')
	}
	b.WriteString(h)
	return b.String()
}

func isIDChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
}

func validIDChars(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isIDChar(s[i]) {
			return false
		}
	}
	return true
}

// labelValue makes s acceptable as an APISIX label value (1..256
// characters, no whitespace).
func labelValue(s string) string {
	if s == "" {
		return "-"
	}
	if len(s) > 256 {
		s = s[:256]
	}
	if strings.IndexFunc(s, isSpace) < 0 {
		return s
	}
	return strings.Map(func(r rune) rune {
		if isSpace(r) {
			return '_'
		}
		return r
	}, s)
}

func isSpace(r rune) bool {
	return r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\v' || r == '\f' || r == 0x85 || r == 0xA0
}

// Store key prefixes of the objects a Translator writes.
const (
	// PrefixRoutes holds HTTP routes (from RDS and inline route configs).
	PrefixRoutes = "/apisix/routes/"
	// PrefixUpstreams holds upstreams (from CDS and EDS).
	PrefixUpstreams = "/apisix/upstreams/"
	// PrefixStreamRoutes holds TCP routes (from tcp_proxy filter chains).
	PrefixStreamRoutes = "/apisix/stream_routes/"
	// PrefixSSLs holds certificates and keys (from SDS TLS certificates).
	PrefixSSLs = "/apisix/ssls/"
	// PrefixListeners holds meshagent's listeners (from LDS).
	PrefixListeners = "/meshagent/listeners/"
	// PrefixSecrets holds SDS validation contexts (trusted CAs), which have
	// no APISIX kind: {"trusted_ca": PEM, "match_subject_alt_names": [...]}.
	PrefixSecrets = "/meshagent/secrets/"
)

// UpstreamID is the id of the upstream translated from cluster name.
func UpstreamID(cluster string) string { return ObjectID(cluster) }
