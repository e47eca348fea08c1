package balancer

import (
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"

	"github.com/meshagent/meshagent/dataplane/expr"
	"github.com/meshagent/meshagent/etcdcompat/apisix"
)

// NodesFromUpstream converts an APISIX upstream's nodes into balancer
// nodes. A node without a port gets the scheme's default (443 for https
// and grpcs, 80 otherwise), as APISIX does.
func NodesFromUpstream(u *apisix.Upstream) ([]Node, error) {
	if u == nil {
		return nil, fmt.Errorf("%w: upstream is missing", ErrInvalid)
	}
	if len(u.Nodes) == 0 {
		if u.ServiceName != "" {
			return nil, fmt.Errorf("%w: service_name: discovery (%s) is not supported by the native data plane", ErrInvalid, u.DiscoveryType)
		}
		return nil, fmt.Errorf("%w: nodes: at least one node is required", ErrInvalid)
	}
	def := 80
	if u.Scheme == "https" || u.Scheme == "grpcs" {
		def = 443
	}
	out := make([]Node, len(u.Nodes))
	for i, n := range u.Nodes {
		host := strings.TrimSuffix(strings.TrimPrefix(n.Host, "["), "]")
		if host == "" {
			return nil, fmt.Errorf("%w: nodes[%d].host: required", ErrInvalid, i)
		}
		port := n.Port
		if port == 0 {
			port = def
		}
		if port < 1 || port > 65535 {
			return nil, fmt.Errorf("%w: nodes[%d].port: must be 1..65535, got %d", ErrInvalid, i, n.Port)
		}
		if n.Weight < 0 {
			return nil, fmt.Errorf("%w: nodes[%d].weight: must be >= 0, got %d", ErrInvalid, i, n.Weight)
		}
		out[i] = Node{Addr: net.JoinHostPort(host, strconv.Itoa(port)), Weight: n.Weight, Priority: n.Priority}
	}
	return out, nil
}

// Tries returns how many nodes one request may try: 1 + retries, where an
// unset retries means nodes-1 (APISIX), capped at the node count since a
// node is tried at most once per request.
func Tries(u *apisix.Upstream, nodes int) int {
	if nodes <= 0 {
		return 0
	}
	if u == nil || u.Retries == nil {
		return nodes
	}
	return max(1, min(nodes, 1+*u.Retries))
}

// HashOn is where a chash key comes from (APISIX upstream hash_on).
type HashOn int

// Key sources.
const (
	HashOnVars HashOn = iota
	HashOnHeader
	HashOnCookie
	HashOnConsumer
	HashOnVarsCombinations
)

// String returns the APISIX name.
func (h HashOn) String() string {
	switch h {
	case HashOnVars:
		return "vars"
	case HashOnHeader:
		return "header"
	case HashOnCookie:
		return "cookie"
	case HashOnConsumer:
		return "consumer"
	case HashOnVarsCombinations:
		return "vars_combinations"
	}
	return "HashOn(" + strconv.Itoa(int(h)) + ")"
}

var hashVarsKey = regexp.MustCompile(`^((uri|server_name|server_addr|request_uri|remote_port|remote_addr|query_string|host|hostname|mqtt_client_id)|arg_[0-9a-zA-z_-]+)$`)

// KeySpec resolves an upstream's chash key from request variables. It is
// compiled once per upstream; Append does not allocate beyond dst.
type KeySpec struct {
	on    HashOn
	v     expr.Var  // vars, header, cookie, consumer (KindOther "consumer_name")
	parts []keyPart // vars_combinations
}

type keyPart struct {
	lit string
	v   expr.Var
	isV bool
}

var remoteAddr = expr.Var{Kind: expr.KindRemoteAddr}

// NewKeySpec compiles hash_on and key. For "consumer" the key is the
// variable consumer_name, which the proxy must provide.
func NewKeySpec(hashOn, key string) (*KeySpec, error) {
	k := &KeySpec{}
	switch hashOn {
	case "", "vars":
		if key == "" {
			key = "remote_addr"
		}
		if !hashVarsKey.MatchString(key) {
			return nil, fmt.Errorf("%w: key: %q is not allowed with hash_on vars", ErrInvalid, key)
		}
		k.on, k.v = HashOnVars, expr.ParseVar(key)
	case "header":
		if key == "" {
			return nil, fmt.Errorf("%w: key: required with hash_on header", ErrInvalid)
		}
		k.on, k.v = HashOnHeader, expr.ParseVar("http_"+key)
	case "cookie":
		if key == "" {
			return nil, fmt.Errorf("%w: key: required with hash_on cookie", ErrInvalid)
		}
		k.on, k.v = HashOnCookie, expr.Var{Kind: expr.KindCookie, Name: key}
	case "consumer":
		k.on, k.v = HashOnConsumer, expr.Var{Kind: expr.KindOther, Name: "consumer_name"}
	case "vars_combinations":
		if key == "" {
			return nil, fmt.Errorf("%w: key: required with hash_on vars_combinations", ErrInvalid)
		}
		k.on = HashOnVarsCombinations
		k.parts = parseTemplate(key)
	default:
		return nil, fmt.Errorf("%w: hash_on: must be vars, header, cookie, consumer or vars_combinations, got %q", ErrInvalid, hashOn)
	}
	return k, nil
}

// parseTemplate splits "$remote_addr-$uri" into literals and variables
// ($name or ${name}).
func parseTemplate(s string) []keyPart {
	var parts []keyPart
	for len(s) > 0 {
		i := strings.IndexByte(s, '$')
		if i < 0 {
			parts = append(parts, keyPart{lit: s})
			break
		}
		if i > 0 {
			parts = append(parts, keyPart{lit: s[:i]})
		}
		s = s[i+1:]
		var name string
		if strings.HasPrefix(s, "{") {
			if j := strings.IndexByte(s, '}'); j > 0 {
				name, s = s[1:j], s[j+1:]
			}
		} else {
			j := 0
			for j < len(s) && (s[j] == '_' || s[j] >= 'a' && s[j] <= 'z' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= '0' && s[j] <= '9') {
				j++
			}
			name, s = s[:j], s[j:]
		}
		if name == "" {
			parts = append(parts, keyPart{lit: "$"})
			continue
		}
		parts = append(parts, keyPart{v: expr.ParseVar(name), isV: true})
	}
	return parts
}

// HashOn returns the key source.
func (k *KeySpec) HashOn() HashOn { return k.on }

// Append appends the key for a request to dst. As in APISIX, an absent or
// empty key falls back to remote_addr.
func (k *KeySpec) Append(dst []byte, vars expr.Vars) []byte {
	n := len(dst)
	if k.on == HashOnVarsCombinations {
		for _, p := range k.parts {
			if !p.isV {
				dst = append(dst, p.lit...)
			} else if v, ok := vars.Var(p.v); ok {
				dst = append(dst, v...)
			}
		}
	} else if v, ok := vars.Var(k.v); ok {
		dst = append(dst, v...)
	}
	if len(dst) == n {
		v, _ := vars.Var(remoteAddr)
		dst = append(dst, v...)
	}
	return dst
}
