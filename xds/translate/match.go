package translate

import (
	"fmt"
	"regexp"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// expr is one lua-resty-expr expression: [var, op, value],
// [var, "!", op, value] or ["OR"|"AND", expr...].
type expr = []any

// match is what a RouteMatch becomes on an APISIX route.
type match struct {
	uris    []string
	methods []string
	vars    []expr
	prefix  string // the literal prefix matched (for prefix_rewrite)
	kind    string // "prefix", "path", "regex", "separated"
	caseIns bool
}

// headerVar maps an HTTP header name to the APISIX variable holding it.
func headerVar(name string) string {
	switch strings.ToLower(name) {
	case ":authority", "host":
		return "host"
	case ":method":
		return "request_method"
	case ":path":
		return "request_uri"
	case ":scheme":
		return "scheme"
	}
	return "http_" + strings.ReplaceAll(strings.ToLower(name), "-", "_")
}

// presentExpr is true when v exists (a missing variable makes ~~ false).
func presentExpr(v string) expr { return expr{v, "~~", "^"} }

// absentExpr is true when v is missing.
func absentExpr(v string) expr { return expr{v, "!", "~~", "^"} }

// anchoredRegex turns an RE2 full-match pattern into an equivalent
// unanchored-search pattern, after checking that it compiles.
func anchoredRegex(re string) (string, error) {
	if _, err := regexp.Compile(re); err != nil {
		return "", fmt.Errorf("regex %q does not compile: %v", re, err)
	}
	p := "^(?:" + re + ")$"
	if _, err := regexp.Compile(p); err != nil {
		return "", fmt.Errorf("regex %q cannot be anchored: %v", re, err)
	}
	return p, nil
}

// stringMatch translates a StringMatcher into an operator and operand, and
// a Go function evaluating it (for treat-missing-as-empty semantics).
func stringMatch(m *matcherv3.StringMatcher) (op, val string, eval func(string) bool, err error) {
	ic := m.GetIgnoreCase()
	reOp := "~~"
	flags := ""
	if ic {
		reOp, flags = "~*", "(?i)"
	}
	re := func(p string) (string, string, func(string) bool, error) {
		rx := regexp.MustCompile(flags + p)
		return reOp, p, rx.MatchString, nil
	}
	switch m.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		if !ic {
			x := m.GetExact()
			return "==", x, func(s string) bool { return s == x }, nil
		}
		return re("^" + regexp.QuoteMeta(m.GetExact()) + "$")
	case *matcherv3.StringMatcher_Prefix:
		return re("^" + regexp.QuoteMeta(m.GetPrefix()))
	case *matcherv3.StringMatcher_Suffix:
		return re(regexp.QuoteMeta(m.GetSuffix()) + "$")
	case *matcherv3.StringMatcher_Contains:
		return re(regexp.QuoteMeta(m.GetContains()))
	case *matcherv3.StringMatcher_SafeRegex:
		p, err := anchoredRegex(m.GetSafeRegex().GetRegex())
		if err != nil {
			return "", "", nil, fmt.Errorf("safe_regex: %v", err)
		}
		rx := regexp.MustCompile(p)
		return "~~", p, rx.MatchString, nil
	}
	return "", "", nil, fmt.Errorf("string matcher %T is not supported", m.GetMatchPattern())
}

// valueExprs builds the expressions for "v matches (op,val)", honouring
// invert and what a missing value yields.
func valueExprs(v, op string, val any, invert, missingResult bool) []expr {
	c := expr{v, op, val}
	if invert {
		c = expr{v, "!", op, val}
	}
	if missingResult {
		return []expr{{"OR", absentExpr(v), c}}
	}
	return []expr{presentExpr(v), c}
}

func headerMatch(h *routev3.HeaderMatcher) ([]expr, error) {
	v := headerVar(h.GetName())
	inv := h.GetInvertMatch()
	var sm *matcherv3.StringMatcher
	switch s := h.GetHeaderMatchSpecifier().(type) {
	case *routev3.HeaderMatcher_PresentMatch:
		if s.PresentMatch != inv {
			return []expr{presentExpr(v)}, nil
		}
		return []expr{absentExpr(v)}, nil
	case *routev3.HeaderMatcher_RangeMatch:
		r := expr{"AND", expr{v, ">=", s.RangeMatch.GetStart()}, expr{v, "<", s.RangeMatch.GetEnd()}}
		if inv {
			r[0] = "!AND"
		}
		return []expr{presentExpr(v), r}, nil
	case *routev3.HeaderMatcher_ExactMatch:
		sm = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s.ExactMatch}}
	case *routev3.HeaderMatcher_PrefixMatch:
		sm = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: s.PrefixMatch}}
	case *routev3.HeaderMatcher_SuffixMatch:
		sm = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: s.SuffixMatch}}
	case *routev3.HeaderMatcher_ContainsMatch:
		sm = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Contains{Contains: s.ContainsMatch}}
	case *routev3.HeaderMatcher_SafeRegexMatch:
		sm = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: s.SafeRegexMatch}}
	case *routev3.HeaderMatcher_StringMatch:
		sm = s.StringMatch
	case nil:
		// No specifier: Envoy matches on presence.
		if inv {
			return []expr{absentExpr(v)}, nil
		}
		return []expr{presentExpr(v)}, nil
	default:
		return nil, fmt.Errorf("header matcher %T is not supported", s)
	}
	op, val, eval, err := stringMatch(sm)
	if err != nil {
		return nil, err
	}
	missing := false
	if h.GetTreatMissingHeaderAsEmpty() {
		missing = eval("") != inv
	}
	return valueExprs(v, op, val, inv, missing), nil
}

func queryMatch(q *routev3.QueryParameterMatcher) ([]expr, error) {
	v := "arg_" + q.GetName()
	switch s := q.GetQueryParameterMatchSpecifier().(type) {
	case *routev3.QueryParameterMatcher_PresentMatch:
		if s.PresentMatch {
			return []expr{presentExpr(v)}, nil
		}
		return []expr{absentExpr(v)}, nil
	case *routev3.QueryParameterMatcher_StringMatch:
		op, val, _, err := stringMatch(s.StringMatch)
		if err != nil {
			return nil, err
		}
		return valueExprs(v, op, val, false, false), nil
	case nil:
		return []expr{presentExpr(v)}, nil
	}
	return nil, fmt.Errorf("query matcher is not supported")
}

func translateMatch(m *routev3.RouteMatch) (*match, error) {
	out := &match{}
	cs := m.GetCaseSensitive()
	out.caseIns = cs != nil && !cs.GetValue()
	switch p := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		out.kind, out.prefix = "prefix", p.Prefix
		if out.caseIns && p.Prefix != "" && p.Prefix != "/" {
			out.uris = []string{"/*"}
			out.vars = append(out.vars, expr{"uri", "~*", "^" + regexp.QuoteMeta(p.Prefix)})
		} else if p.Prefix == "" {
			out.uris = []string{"/*"}
		} else {
			out.uris = []string{p.Prefix + "*"}
		}
	case *routev3.RouteMatch_Path:
		out.kind = "path"
		if out.caseIns {
			out.uris = []string{"/*"}
			out.vars = append(out.vars, expr{"uri", "~*", "^" + regexp.QuoteMeta(p.Path) + "$"})
		} else {
			out.uris = []string{p.Path}
		}
	case *routev3.RouteMatch_SafeRegex:
		out.kind = "regex"
		re, err := anchoredRegex(p.SafeRegex.GetRegex())
		if err != nil {
			return nil, fmt.Errorf("match.safe_regex: %v", err)
		}
		out.uris = []string{"/*"}
		out.vars = append(out.vars, expr{"uri", "~~", re})
	case *routev3.RouteMatch_PathSeparatedPrefix:
		out.kind, out.prefix = "separated", p.PathSeparatedPrefix
		pre := strings.TrimSuffix(p.PathSeparatedPrefix, "/")
		if out.caseIns {
			out.uris = []string{"/*"}
			out.vars = append(out.vars, expr{"uri", "~*", "^" + regexp.QuoteMeta(pre) + "(/|$)"})
		} else {
			out.uris = []string{pre, pre + "/*"}
		}
	default:
		return nil, fmt.Errorf("match: path specifier %T is not supported", p)
	}
	for i, h := range m.GetHeaders() {
		if h.GetName() == ":method" && !h.GetInvertMatch() && h.GetExactMatch() != "" {
			out.methods = append(out.methods, strings.ToUpper(h.GetExactMatch()))
			continue
		}
		if sm := h.GetStringMatch(); h.GetName() == ":method" && !h.GetInvertMatch() && sm.GetExact() != "" && !sm.GetIgnoreCase() {
			out.methods = append(out.methods, sm.GetExact())
			continue
		}
		e, err := headerMatch(h)
		if err != nil {
			return nil, fmt.Errorf("match.headers[%d] (%s): %v", i, h.GetName(), err)
		}
		out.vars = append(out.vars, e...)
	}
	if len(out.methods) > 1 {
		return nil, fmt.Errorf("match.headers: more than one :method condition")
	}
	for i, q := range m.GetQueryParameters() {
		e, err := queryMatch(q)
		if err != nil {
			return nil, fmt.Errorf("match.query_parameters[%d] (%s): %v", i, q.GetName(), err)
		}
		out.vars = append(out.vars, e...)
	}
	if m.GetGrpc() != nil {
		out.vars = append(out.vars, expr{"http_content_type", "~~", "^application/grpc"})
	}
	switch {
	case m.GetRuntimeFraction() != nil:
		return nil, fmt.Errorf("match.runtime_fraction is not supported")
	case len(m.GetCookies()) > 0:
		return nil, fmt.Errorf("match.cookies is not supported")
	case len(m.GetDynamicMetadata()) > 0:
		return nil, fmt.Errorf("match.dynamic_metadata is not supported")
	case len(m.GetFilterState()) > 0:
		return nil, fmt.Errorf("match.filter_state is not supported")
	case m.GetTlsContext() != nil:
		return nil, fmt.Errorf("match.tls_context is not supported")
	}
	return out, nil
}

// hostsOf translates virtual host domains: ports stripped, "*" means any
// host (nil), "*.x.com" kept (suffix wildcard in both), "x.*" refused.
func hostsOf(domains []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for i, d := range domains {
		if d == "*" {
			return nil, nil
		}
		h := d
		if strings.HasPrefix(h, "[") {
			if j := strings.Index(h, "]"); j > 0 {
				h = h[:j+1]
			}
		} else if j := strings.LastIndexByte(h, ':'); j >= 0 && strings.Count(h, ":") == 1 {
			h = h[:j]
		}
		h = strings.ToLower(h)
		if strings.HasSuffix(h, "*") {
			return nil, fmt.Errorf("domains[%d] %q: suffix wildcards are not supported", i, d)
		}
		if strings.Contains(h[1:], "*") {
			return nil, fmt.Errorf("domains[%d] %q: a wildcard is only allowed as the first character", i, d)
		}
		if h == "" {
			return nil, fmt.Errorf("domains[%d]: empty", i)
		}
		if !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	return out, nil
}

// uriKey is one path pattern of a route as APISIX's router sees it: an
// exact path, or a prefix (the part before a trailing '*').
type uriKey struct {
	exact bool
	s     string
}

func (m *match) keys() []uriKey {
	var out []uriKey
	for _, u := range m.uris {
		if strings.HasSuffix(u, "*") {
			out = append(out, uriKey{s: strings.TrimSuffix(u, "*")})
		} else {
			out = append(out, uriKey{exact: true, s: u})
		}
	}
	return out
}

// beats reports whether APISIX's router tries a before b for a path both
// can match: an exact path before a prefix, a longer prefix before a
// shorter one. Equal patterns are ordered by priority (Envoy's order).
func (a uriKey) beats(b uriKey) bool {
	switch {
	case a.exact && b.exact:
		return false
	case a.exact:
		return strings.HasPrefix(a.s, b.s)
	case b.exact:
		return false
	}
	return len(a.s) > len(b.s) && strings.HasPrefix(a.s, b.s)
}

// reordered reports whether APISIX would try some route before an earlier
// one of the same virtual host, where Envoy takes the first match.
func reordered(ms []*match) bool {
	for i := range ms {
		ki := ms[i].keys()
		for j := i + 1; j < len(ms); j++ {
			for _, b := range ms[j].keys() {
				for _, a := range ki {
					if b.beats(a) {
						return true
					}
				}
			}
		}
	}
	return false
}

// ordered rewrites m so every route of its virtual host shares the path
// pattern "/*" (then priority alone keeps Envoy's order) and the path
// condition moves into vars.
func (m *match) ordered() {
	if len(m.uris) == 1 && m.uris[0] == "/*" {
		return // already a vars condition (regex, case-insensitive, "/")
	}
	var cond expr
	switch m.kind {
	case "path":
		cond = expr{"uri", "==", m.uris[0]}
	case "prefix":
		cond = expr{"uri", "~~", "^" + regexp.QuoteMeta(m.prefix)}
	case "separated":
		cond = expr{"uri", "~~", "^" + regexp.QuoteMeta(strings.TrimSuffix(m.prefix, "/")) + "(/|$)"}
	}
	m.uris = []string{"/*"}
	m.vars = append([]expr{cond}, m.vars...)
}
