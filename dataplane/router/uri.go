package router

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"unsafe"
)

// uriTable is radixtree's per-host URI tree: a hash of exact paths plus a
// prefix trie whose buckets are walked from the longest prefix up.
type uriTable[T any] struct {
	host   string
	exact  map[string][]entry[T]
	prefix trie[[]entry[T]]
}

type entry[T any] struct {
	route   *Route[T]
	pathOrg string
	full    *regexp.Regexp // whole-pattern check for a '*' before the end
	seq     int
}

func newURITable[T any]() *uriTable[T] {
	return &uriTable[T]{exact: map[string][]entry[T]{}}
}

func (t *uriTable[T]) add(rt *Route[T], seq *int) error {
	for j, u := range rt.URIs {
		*seq++
		e := entry[T]{route: rt, pathOrg: u, seq: *seq}
		pos := strings.IndexByte(u, '*')
		if pos < 0 {
			t.exact[u] = append(t.exact[u], e)
			continue
		}
		if pos != len(u)-1 {
			re, err := fullPattern(u)
			if err != nil {
				return fmt.Errorf("%w %q: uris[%d]: %w", ErrInvalidRoute, rt.ID, j, err)
			}
			e.full = re
		}
		b := t.prefix.get(u[:pos], func() *[]entry[T] { return new([]entry[T]) })
		*b = append(*b, e)
	}
	return nil
}

// fullPattern builds the whole-path check of a pattern with a '*' before
// its end, segment by segment as lua-resty-radixtree's fetch_pat does: a
// segment starting with ':' is one path segment, a segment starting with
// '*' is anything (including '/'); other segments are literal.
func fullPattern(p string) (*regexp.Regexp, error) {
	segs := strings.Split(p, "/")
	var b strings.Builder
	b.WriteString(`^(?s:`)
	for i, s := range segs {
		if i > 0 {
			b.WriteString(`/`)
		}
		switch {
		case strings.HasPrefix(s, ":"):
			b.WriteString(`[^/]+`)
		case strings.HasPrefix(s, "*"):
			b.WriteString(`.*`)
		default:
			b.WriteString(regexp.QuoteMeta(s))
		}
	}
	b.WriteString(`)$`)
	return regexp.Compile(b.String())
}

func sortBucket[T any](b []entry[T]) {
	sort.SliceStable(b, func(i, j int) bool {
		x, y := b[i], b[j]
		if x.route.Priority != y.route.Priority {
			return x.route.Priority > y.route.Priority
		}
		if len(x.pathOrg) != len(y.pathOrg) {
			return len(x.pathOrg) > len(y.pathOrg)
		}
		return x.seq < y.seq
	})
}

func (t *uriTable[T]) finish() {
	for _, b := range t.exact {
		sortBucket(b)
	}
	t.prefix.finish()
	var walk func(n *trieNode[[]entry[T]])
	walk = func(n *trieNode[[]entry[T]]) {
		if n.has {
			sortBucket(*n.val)
		}
		for _, c := range n.children {
			walk(c)
		}
	}
	walk(&t.prefix.root)
}

// match runs radixtree's match_route on one URI tree.
func (t *uriTable[T]) match(req *Request) (*entry[T], bool) {
	if b, ok := t.exact[req.Path]; ok {
		for i := range b {
			if b[i].route.conditions(req) {
				return &b[i], true
			}
		}
	}
	for n := t.prefix.longest(req.Path); n != nil; n = n.up {
		b := *n.val
		for i := range b {
			e := &b[i]
			if !e.route.conditions(req) {
				continue
			}
			if e.full != nil && !e.full.MatchString(req.Path) {
				continue
			}
			return e, true
		}
	}
	return nil, false
}

// Match finds the route for a request, or ok=false. It does not allocate
// for hosts up to 255 bytes.
func (r *Router[T]) Match(req *Request) (res Result[T], ok bool) {
	host := req.Host
	var buf [255]byte
	if hasUpper(host) {
		host = lowerInto(buf[:], host)
	}
	if len(r.portExact) > 0 || r.portWild.root.has || len(r.portWild.root.children) > 0 {
		var hbuf [255]byte
		hh := req.HostHeader
		if hasUpper(hh) {
			hh = lowerInto(hbuf[:], hh)
		}
		if t, found := r.portExact[hh]; found {
			if e, ok := t.match(req); ok {
				return Result[T]{Route: e.route, URI: e.pathOrg, Host: t.host}, true
			}
		}
		if res, ok := matchWild(&r.portWild, hh, req); ok {
			return res, true
		}
	}
	if t, found := r.exact[host]; found {
		if e, ok := t.match(req); ok {
			return Result[T]{Route: e.route, URI: e.pathOrg, Host: t.host}, true
		}
	}
	if res, ok := matchWild(&r.wild, host, req); ok {
		return res, true
	}
	if e, ok := r.hostless.match(req); ok {
		return Result[T]{Route: e.route, URI: e.pathOrg}, true
	}
	return Result[T]{}, false
}

func matchWild[T any](tr *trie[hostEntry[T]], host string, req *Request) (Result[T], bool) {
	for n := tr.longest(host); n != nil; n = n.up {
		// A wildcard is the raw suffix after '*' ("*.x.com" does not match
		// the apex "x.com"; "*x.com" does, as in radixtree).
		he := n.val
		if e, ok := he.table.match(req); ok {
			return Result[T]{Route: e.route, URI: e.pathOrg, Host: he.pattern}, true
		}
	}
	return Result[T]{}, false
}

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			return true
		}
	}
	return false
}

// lowerInto lowercases s into buf when it fits, else allocates.
func lowerInto(buf []byte, s string) string {
	if len(s) > len(buf) {
		return strings.ToLower(s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	if len(s) == 0 {
		return ""
	}
	// The bytes are not modified while the string is in use, and the
	// string does not outlive Match, which owns buf.
	return unsafe.String(&buf[0], len(s))
}
