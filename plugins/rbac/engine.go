package rbac

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
)

// Errors of the package.
var (
	// ErrInvalid wraps every config error; the message names the field.
	ErrInvalid = errors.New("rbac: invalid config")
	errEmpty   = errors.New("rbac: not a number")
)

// Action is what a rule set does with a matching request.
type Action int

const (
	// Allow admits only what a policy matches.
	Allow Action = iota
	// Deny refuses what a policy matches.
	Deny
	// Log admits everything (matches are only reported).
	Log
)

// String returns Envoy's name of the action.
func (a Action) String() string {
	switch a {
	case Allow:
		return "ALLOW"
	case Deny:
		return "DENY"
	case Log:
		return "LOG"
	}
	return "Action(" + strconv.Itoa(int(a)) + ")"
}

// Conn are the connection attributes policies read. The data plane fills
// it once per connection.
type Conn struct {
	// Source is the downstream address (remote_ip; with no proxy protocol
	// or XFF handling it equals DirectSource).
	Source netip.AddrPort
	// DirectSource is the peer address of the TCP connection.
	DirectSource netip.AddrPort
	// Dest is the (original) destination address.
	Dest netip.AddrPort
	// Authenticated is true when the peer presented a verified certificate.
	Authenticated bool
	// Principal is the peer's identity: its SPIFFE id (URI SAN), else its
	// first DNS SAN, else its subject; "" when not authenticated.
	Principal string
	// SNI is the requested server name.
	SNI string
}

// Headers gives request headers by lowercase name, including the pseudo
// headers ":method", ":path" (with query), ":authority". Values must not
// be retained. A nil Headers (network stage) has no headers.
type Headers interface {
	Header(name string) (string, bool)
}

// Engine is one compiled RBAC rule set (Envoy's config.rbac.v3.RBAC).
type Engine struct {
	action   Action
	policies []*policy
}

type policy struct {
	name  string
	perms []*rule // any matches
	ids   []*rule // any matches
}

// rule is a compiled permission or principal.
type rule struct {
	kind     ruleKind
	children []*rule
	header   *headerMatcher
	str      stringMatcher
	prefix   netip.Prefix
	lo, hi   uint32
	hasStr   bool
	needAuth bool
}

type ruleKind int

const (
	rAny ruleKind = iota
	rAnd
	rOr
	rNot
	rHeader
	rPath
	rDestIP
	rDestPort
	rDestPortRange
	rSNI
	rAuthenticated
	rDirectRemoteIP
	rRemoteIP
)

// Action is the engine's action.
func (e *Engine) Action() Action { return e.action }

// Match returns the name of the first policy (in name order) matching c
// and h, or "" and false.
func (e *Engine) Match(c *Conn, h Headers) (string, bool) {
	for _, p := range e.policies {
		if anyRule(p.perms, c, h) && anyRule(p.ids, c, h) {
			return p.name, true
		}
	}
	return "", false
}

// Allowed applies the action: ALLOW admits a match and refuses the rest
// (no policy at all refuses everything), DENY refuses a match, LOG admits.
func (e *Engine) Allowed(c *Conn, h Headers) bool {
	if e == nil {
		return true
	}
	_, m := e.Match(c, h)
	switch e.action {
	case Allow:
		return m
	case Deny:
		return !m
	}
	return true
}

func anyRule(rs []*rule, c *Conn, h Headers) bool {
	for _, r := range rs {
		if r.match(c, h) {
			return true
		}
	}
	return false
}

func (r *rule) match(c *Conn, h Headers) bool {
	switch r.kind {
	case rAny:
		return true
	case rAnd:
		for _, ch := range r.children {
			if !ch.match(c, h) {
				return false
			}
		}
		return true
	case rOr:
		return anyRule(r.children, c, h)
	case rNot:
		return !r.children[0].match(c, h)
	case rHeader:
		return r.header.match(h)
	case rPath:
		if h == nil {
			return false
		}
		p, ok := h.Header(":path")
		if !ok {
			return false
		}
		if i := indexQuery(p); i >= 0 {
			p = p[:i]
		}
		return r.str.match(p)
	case rDestIP:
		return r.prefix.Contains(c.Dest.Addr().Unmap())
	case rDestPort:
		return uint32(c.Dest.Port()) == r.lo
	case rDestPortRange:
		p := uint32(c.Dest.Port())
		return p >= r.lo && p < r.hi
	case rSNI:
		return r.str.match(c.SNI)
	case rAuthenticated:
		if !c.Authenticated {
			return false
		}
		return !r.hasStr || r.str.match(c.Principal)
	case rDirectRemoteIP:
		return r.prefix.Contains(c.DirectSource.Addr().Unmap())
	case rRemoteIP:
		return r.prefix.Contains(c.Source.Addr().Unmap())
	}
	return false
}

func indexQuery(p string) int {
	for i := 0; i < len(p); i++ {
		if p[i] == '?' || p[i] == '#' {
			return i
		}
	}
	return -1
}

// rbacJSON is config.rbac.v3.RBAC in protojson.
type rbacJSON struct {
	Action   string                     `json:"action"`
	Policies map[string]json.RawMessage `json:"policies"`
	AuditLog json.RawMessage            `json:"auditLoggingOptions"`
}

type policyJSON struct {
	Permissions []json.RawMessage `json:"permissions"`
	Principals  []json.RawMessage `json:"principals"`
	Condition   json.RawMessage   `json:"condition"`
	CheckedCond json.RawMessage   `json:"checkedCondition"`
	CELConfig   json.RawMessage   `json:"celConfig"`
}

// CompileRules compiles Envoy's config.rbac.v3.RBAC (protojson) at field.
func CompileRules(field string, raw json.RawMessage) (*Engine, error) {
	var j rbacJSON
	if err := strict(raw, &j); err != nil {
		return nil, fmt.Errorf("%w: field %q: %v", ErrInvalid, field, err)
	}
	e := &Engine{}
	switch j.Action {
	case "", "ALLOW":
		e.action = Allow
	case "DENY":
		e.action = Deny
	case "LOG":
		e.action = Log
	default:
		return nil, fmt.Errorf("%w: field %q: one of ALLOW, DENY, LOG", ErrInvalid, field+".action")
	}
	names := make([]string, 0, len(j.Policies))
	for n := range j.Policies {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		pf := field + ".policies." + n
		var pj policyJSON
		if err := strict(j.Policies[n], &pj); err != nil {
			return nil, fmt.Errorf("%w: field %q: %v", ErrInvalid, pf, err)
		}
		if len(pj.Condition) > 0 || len(pj.CheckedCond) > 0 {
			return nil, fmt.Errorf("%w: field %q: CEL conditions are not supported", ErrInvalid, pf+".condition")
		}
		if len(pj.Permissions) == 0 || len(pj.Principals) == 0 {
			return nil, fmt.Errorf("%w: field %q: permissions and principals must have at least 1 item", ErrInvalid, pf)
		}
		p := &policy{name: n}
		for i, r := range pj.Permissions {
			c, err := compilePermission(fmt.Sprintf("%s.permissions[%d]", pf, i), r, 0)
			if err != nil {
				return nil, err
			}
			p.perms = append(p.perms, c)
		}
		for i, r := range pj.Principals {
			c, err := compilePrincipal(fmt.Sprintf("%s.principals[%d]", pf, i), r, 0)
			if err != nil {
				return nil, err
			}
			p.ids = append(p.ids, c)
		}
		e.policies = append(e.policies, p)
	}
	return e, nil
}

// strict decodes raw into v rejecting unknown fields and trailing data.
func strict(raw json.RawMessage, v any) error {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.DisallowUnknownFields()
	d.UseNumber()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("trailing data")
	}
	return nil
}

// maxDepth bounds and_rules/or_rules/not_rule nesting.
const maxDepth = 32
