// Package router matches HTTP requests to routes with the semantics of
// APISIX's default router, radixtree_host_uri (lua-resty-radixtree 2.9):
//
//   - Paths: no '*' is an exact path; a trailing '*' is a raw-string prefix
//     ("/foo*" matches "/foo", "/foobar", "/foo/x"); a '*' elsewhere
//     ("/a/*/b") is a prefix on the part before the first '*' plus a check
//     of the whole pattern, where a segment starting with '*' matches
//     anything (also '/') and a segment starting with ':' one segment.
//   - Lookup: the exact-path bucket first, then prefixes from the longest
//     to the shortest. Inside one bucket (routes with the same path key)
//     routes are ordered by priority (higher first), then by the length of
//     the original path (longer first), then by insertion order. The first
//     route whose conditions pass wins, so an exact path always beats a
//     prefix and a longer prefix beats a shorter one regardless of priority.
//   - Conditions, in this order: methods, remote_addrs (IPv4/IPv6 CIDR),
//     vars (package expr).
//   - Hosts: routes with hosts are found through their hosts first: the
//     exact host, then wildcard hosts from the longest suffix to the
//     shortest ("*.x.com" is the suffix ".x.com": any depth, not the apex;
//     "*" matches every host). Only when no host-specific route matches do
//     routes without hosts get a chance. Hosts are lowercased.
//   - A host pattern with a port ("api.x.com:8080", "*.x.com:8080") is
//     compared against the Host header including its port (lowercased).
//     Port-qualified patterns are tried before plain ones of the same kind
//     (exact before wildcard). Stock APISIX never matches such hosts in
//     radixtree_host_uri because it compares ngx.var.host, which has no
//     port; meshagent needs them for Envoy virtual-host domains.
//
// The package owns compilation of route entries into an immutable Router
// and the allocation-free Match. It does not own where routes come from
// (see FromAPISIX for APISIX objects), the payload (a type parameter), nor
// how the proxy extracts request variables (expr.Vars). Literal path
// segments after a middle '*' are compared literally, whereas APISIX feeds
// them to PCRE unescaped; Lua filter_func is not supported.
package router

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"

	"github.com/meshagent/meshagent/dataplane/expr"
)

// ErrInvalidRoute is wrapped by every error New and FromAPISIX return; the
// message names the route, the field and the rule broken.
var ErrInvalidRoute = errors.New("router: invalid route")

// Route is one routing entry. URIs, Hosts, Methods and RemoteAddrs are
// inputs; the Router keeps its own copy, which must not be mutated after
// New returns.
type Route[T any] struct {
	// ID names the route in errors and results.
	ID string
	// URIs are the paths (at least one).
	URIs []string
	// Hosts are the effective hosts: the route's own, or its service's when
	// it has none (see FromAPISIX). Empty means any host.
	Hosts []string
	// Methods restricts the HTTP method (GET, POST, PUT, DELETE, PATCH,
	// HEAD, OPTIONS, CONNECT, TRACE, PURGE). Empty means any.
	Methods []string
	// RemoteAddrs restricts the client address (IPs or CIDRs, v4 or v6).
	RemoteAddrs []string
	// Vars is the compiled vars expression; nil matches everything.
	Vars *expr.Expr
	// Priority orders routes that share a path key (higher first).
	Priority int
	// Disabled routes (APISIX status 0) are not routed.
	Disabled bool
	// Value is the caller's payload, returned on a match.
	Value T

	methods uint16
	addrs   []netip.Prefix
}

// Request is what Match needs from a request. It is read only.
type Request struct {
	// Path is nginx's $uri: the normalized path without the query.
	Path string
	// Host is nginx's $host: the Host header without its port. It should
	// be lowercase already; Match lowercases it otherwise.
	Host string
	// HostHeader is nginx's $http_host: the Host header as sent, with its
	// port. Only consulted for host patterns with a port.
	HostHeader string
	// Method is the request method, upper case.
	Method string
	// RemoteAddr is the client address.
	RemoteAddr netip.Addr
	// Vars gives variables to vars expressions; nil means none is present.
	Vars expr.Vars
}

// Result is a successful match.
type Result[T any] struct {
	// Route is the matched route; it is shared and must not be mutated.
	Route *Route[T]
	// URI is the route path pattern that matched.
	URI string
	// Host is the host pattern that matched ("" for host-less routes).
	Host string
}

// Router is an immutable compiled route table, safe for concurrent Match.
type Router[T any] struct {
	routes []*Route[T]

	portExact map[string]*uriTable[T]
	exact     map[string]*uriTable[T]
	portWild  trie[hostEntry[T]]
	wild      trie[hostEntry[T]]
	hostless  *uriTable[T]
}

type hostEntry[T any] struct {
	pattern string
	table   *uriTable[T]
}

// New compiles routes into a Router. Disabled routes are skipped. The order
// of routes is the insertion order used to break ties.
func New[T any](routes []Route[T]) (*Router[T], error) {
	r := &Router[T]{
		portExact: map[string]*uriTable[T]{},
		exact:     map[string]*uriTable[T]{},
		portWild:  trie[hostEntry[T]]{rev: true},
		wild:      trie[hostEntry[T]]{rev: true},
		hostless:  newURITable[T](),
	}
	seq := 0
	for i := range routes {
		if routes[i].Disabled {
			continue
		}
		rt := new(Route[T])
		*rt = routes[i]
		if err := rt.prepare(i); err != nil {
			return nil, err
		}
		r.routes = append(r.routes, rt)
		if len(rt.Hosts) == 0 {
			if err := r.hostless.add(rt, &seq); err != nil {
				return nil, err
			}
			continue
		}
		for _, h := range rt.Hosts {
			t := r.hostTable(h)
			if err := t.add(rt, &seq); err != nil {
				return nil, err
			}
		}
	}
	r.portWild.finish()
	r.wild.finish()
	for _, t := range r.portExact {
		t.finish()
	}
	for _, t := range r.exact {
		t.finish()
	}
	r.hostless.finish()
	finishTrie(&r.portWild.root)
	finishTrie(&r.wild.root)
	return r, nil
}

func finishTrie[T any](n *trieNode[hostEntry[T]]) {
	if n.has {
		n.val.table.finish()
	}
	for _, c := range n.children {
		finishTrie(c)
	}
}

func (r *Router[T]) hostTable(h string) *uriTable[T] {
	port := hasPort(h)
	if strings.HasPrefix(h, "*") {
		suffix := h[1:]
		tr := &r.wild
		if port {
			tr = &r.portWild
		}
		e := tr.get(suffix, func() *hostEntry[T] { return &hostEntry[T]{pattern: h, table: newURITable[T]()} })
		return e.table
	}
	m := r.exact
	if port {
		m = r.portExact
	}
	t := m[h]
	if t == nil {
		t = newURITable[T]()
		t.host = h
		m[h] = t
	}
	return t
}

// hasPort reports whether a host pattern carries a port: a ':' outside an
// IPv6 literal.
func hasPort(h string) bool {
	if i := strings.LastIndexByte(h, ']'); i >= 0 {
		return strings.IndexByte(h[i:], ':') >= 0
	}
	return strings.IndexByte(h, ':') >= 0
}

var hostRE = regexp.MustCompile(`^\*?[0-9a-zA-Z-._\[\]:]+$`)

func (rt *Route[T]) prepare(i int) error {
	name := rt.ID
	if name == "" {
		name = fmt.Sprintf("#%d", i)
	}
	if len(rt.URIs) == 0 {
		return fmt.Errorf("%w %q: uris: at least one uri is required", ErrInvalidRoute, name)
	}
	for j, u := range rt.URIs {
		if u == "" || len(u) > 4096 {
			return fmt.Errorf("%w %q: uris[%d]: must be 1 to 4096 characters", ErrInvalidRoute, name, j)
		}
	}
	rt.URIs = append([]string(nil), rt.URIs...)
	hosts := make([]string, len(rt.Hosts))
	for j, h := range rt.Hosts {
		if h != "*" && !hostRE.MatchString(h) {
			return fmt.Errorf("%w %q: hosts[%d]: %q does not match ^\\*?[0-9a-zA-Z-._\\[\\]:]+$", ErrInvalidRoute, name, j, h)
		}
		hosts[j] = strings.ToLower(h)
	}
	rt.Hosts = hosts
	rt.methods = 0
	for j, m := range rt.Methods {
		b := MethodBit(m)
		if b == 0 {
			return fmt.Errorf("%w %q: methods[%d]: unknown method %q", ErrInvalidRoute, name, j, m)
		}
		rt.methods |= b
	}
	rt.Methods = append([]string(nil), rt.Methods...)
	rt.addrs = nil
	for j, a := range rt.RemoteAddrs {
		p, err := expr.ParsePrefix(a)
		if err != nil {
			return fmt.Errorf("%w %q: remote_addrs[%d]: %w", ErrInvalidRoute, name, j, err)
		}
		rt.addrs = append(rt.addrs, p)
	}
	rt.RemoteAddrs = append([]string(nil), rt.RemoteAddrs...)
	return nil
}

// MethodBit returns the bit of an HTTP method in a route's method mask, or
// 0 for a method APISIX does not know.
func MethodBit(m string) uint16 {
	switch m {
	case "GET":
		return 1 << 0
	case "POST":
		return 1 << 1
	case "PUT":
		return 1 << 2
	case "DELETE":
		return 1 << 3
	case "PATCH":
		return 1 << 4
	case "HEAD":
		return 1 << 5
	case "OPTIONS":
		return 1 << 6
	case "CONNECT":
		return 1 << 7
	case "TRACE":
		return 1 << 8
	case "PURGE":
		return 1 << 9
	}
	return 0
}

// Routes returns the compiled (enabled) routes in insertion order. The
// slice is shared and must not be mutated.
func (r *Router[T]) Routes() []*Route[T] { return r.routes }

// conditions checks methods, then remote addresses, then vars.
func (rt *Route[T]) conditions(req *Request) bool {
	if rt.methods != 0 && rt.methods&MethodBit(req.Method) == 0 {
		return false
	}
	if len(rt.addrs) > 0 {
		a := req.RemoteAddr.Unmap().WithZone("")
		ok := false
		for _, p := range rt.addrs {
			if p.Contains(a) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if rt.Vars != nil {
		if req.Vars == nil {
			return rt.Vars.Match(noVars{})
		}
		return rt.Vars.Match(req.Vars)
	}
	return true
}

type noVars struct{}

func (noVars) Var(expr.Var) (string, bool) { return "", false }
