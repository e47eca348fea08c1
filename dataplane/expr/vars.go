// Package expr compiles APISIX route `vars` (lua-resty-expr v1 rules) into
// an immutable matcher once, when a data-plane snapshot is built, and
// evaluates it per request without allocating.
//
// It owns the rule grammar ([var, op, value], [var, "!", op, value], nested
// ["AND"|"OR"|"!AND"|"!OR", ...]), the operator semantics (==, ~=, >, >=, <,
// <=, ~~, ~*, in, has, ipmatch) and the classification of variable names
// into kinds (uri, host, http_<header>, arg_<q>, cookie_<c>, ...). It does
// not own where variable values come from: the proxy implements Vars.
//
// Differences from lua-resty-expr, all deliberate:
//   - ~~ and ~* use Go's RE2 (package regexp), not PCRE: no backreferences,
//     no lookaround, no possessive quantifiers, no \K; \d etc. are ASCII
//     only. A pattern RE2 cannot compile is rejected at compile time (PCRE
//     would fail at request time and the route would silently never match).
//   - Operands that lua-resty-expr would only fail on at request time (a
//     non-string regex, a non-array "in" list, a bad ipmatch CIDR) are
//     rejected at compile time with the position of the rule.
package expr

import "strings"

// Kind is the pre-parsed class of a variable name, so the proxy can switch
// on an int instead of comparing strings per request.
type Kind int

// Variable kinds. KindOther carries the full variable name in Var.Name; the
// prefixed kinds (KindHeader, KindArg, KindCookie) carry the part after the
// prefix.
const (
	KindOther         Kind = iota // any other name; Var.Name is the whole name
	KindURI                       // uri: normalized path, no query
	KindHost                      // host: Host without port, lowercased
	KindRequestMethod             // request_method
	KindRemoteAddr                // remote_addr: client IP, no port
	KindRemotePort                // remote_port
	KindServerAddr                // server_addr: local IP the request came to
	KindServerPort                // server_port
	KindScheme                    // scheme: http or https
	KindRequestURI                // request_uri: path with query, as received
	KindQueryString               // query_string (alias args)
	KindHeader                    // http_<name>; Name is the header name, lowercased, '_' -> '-'
	KindArg                       // arg_<name>; Name is the query argument name as written
	KindCookie                    // cookie_<name>; Name is the cookie name as written
)

var kindNames = [...]string{
	KindOther:         "other",
	KindURI:           "uri",
	KindHost:          "host",
	KindRequestMethod: "request_method",
	KindRemoteAddr:    "remote_addr",
	KindRemotePort:    "remote_port",
	KindServerAddr:    "server_addr",
	KindServerPort:    "server_port",
	KindScheme:        "scheme",
	KindRequestURI:    "request_uri",
	KindQueryString:   "query_string",
	KindHeader:        "http_",
	KindArg:           "arg_",
	KindCookie:        "cookie_",
}

// String returns the variable name (or prefix) the kind stands for.
func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// Var is a pre-parsed variable reference. Name is empty for the fixed
// kinds, the suffix for the prefixed kinds and the full name for KindOther.
type Var struct {
	Kind Kind
	Name string
}

// String returns the nginx/APISIX variable name the Var was parsed from.
func (v Var) String() string {
	switch v.Kind {
	case KindOther:
		return v.Name
	case KindHeader:
		return "http_" + strings.ReplaceAll(v.Name, "-", "_")
	case KindArg, KindCookie:
		return v.Kind.String() + v.Name
	}
	return v.Kind.String()
}

// ParseVar classifies an nginx/APISIX variable name. It never fails: names
// it does not know are KindOther and are looked up by name.
func ParseVar(name string) Var {
	switch name {
	case "uri":
		return Var{Kind: KindURI}
	case "host":
		return Var{Kind: KindHost}
	case "request_method":
		return Var{Kind: KindRequestMethod}
	case "remote_addr":
		return Var{Kind: KindRemoteAddr}
	case "remote_port":
		return Var{Kind: KindRemotePort}
	case "server_addr":
		return Var{Kind: KindServerAddr}
	case "server_port":
		return Var{Kind: KindServerPort}
	case "scheme":
		return Var{Kind: KindScheme}
	case "request_uri":
		return Var{Kind: KindRequestURI}
	case "query_string", "args":
		return Var{Kind: KindQueryString}
	}
	switch {
	case strings.HasPrefix(name, "http_") && len(name) > len("http_"):
		return Var{Kind: KindHeader, Name: strings.ReplaceAll(strings.ToLower(name[len("http_"):]), "_", "-")}
	case strings.HasPrefix(name, "arg_") && len(name) > len("arg_"):
		return Var{Kind: KindArg, Name: name[len("arg_"):]}
	case strings.HasPrefix(name, "cookie_") && len(name) > len("cookie_"):
		return Var{Kind: KindCookie, Name: name[len("cookie_"):]}
	}
	return Var{Kind: KindOther, Name: name}
}

// Vars gives the value of a request variable. ok is false when the
// variable is absent (nginx's nil), which is different from present and
// empty. Implementations must not allocate and must be safe to call
// repeatedly during one request; they are called from one goroutine.
type Vars interface {
	Var(v Var) (value string, ok bool)
}

// ListVars is an optional capability of a Vars whose variables can hold
// several values (a repeated header or query argument). The "has" operator
// uses it; without it every variable is a scalar and "has" is false, as in
// lua-resty-expr where "has" needs a table value.
type ListVars interface {
	// VarHas reports whether the multi-valued variable v contains elem.
	VarHas(v Var, elem string) bool
}

// MapVars is a Vars backed by a map from variable name (as written in
// rules, e.g. "http_x_user", "arg_id") to value. It is meant for tests and
// tools, not for the request path (it formats names).
type MapVars map[string]string

// Var implements Vars.
func (m MapVars) Var(v Var) (string, bool) {
	s, ok := m[v.String()]
	return s, ok
}
