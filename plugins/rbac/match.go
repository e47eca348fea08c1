package rbac

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
)

// stringMatcher is Envoy's type.matcher.v3.StringMatcher.
type stringMatcher struct {
	kind       int // 0 exact, 1 prefix, 2 suffix, 3 contains, 4 regex
	v          string
	re         *regexp.Regexp
	ignoreCase bool
}

const (
	smExact = iota
	smPrefix
	smSuffix
	smContains
	smRegex
)

type stringMatcherJSON struct {
	Exact      *string    `json:"exact"`
	Prefix     *string    `json:"prefix"`
	Suffix     *string    `json:"suffix"`
	Contains   *string    `json:"contains"`
	SafeRegex  *regexJSON `json:"safeRegex"`
	IgnoreCase bool       `json:"ignoreCase"`
}

type regexJSON struct {
	GoogleRe2 json.RawMessage `json:"googleRe2"`
	Regex     string          `json:"regex"`
}

func compileRegex(field string, r *regexJSON) (*regexp.Regexp, error) {
	// Envoy matches the whole string.
	re, err := regexp.Compile("^(?:" + r.Regex + ")$")
	if err != nil {
		return nil, fmt.Errorf("%s.regex: %v", field, err)
	}
	return re, nil
}

func (j *stringMatcherJSON) compile(field string) (stringMatcher, error) {
	var m stringMatcher
	n := 0
	if j.Exact != nil {
		m, n = stringMatcher{kind: smExact, v: *j.Exact}, n+1
	}
	if j.Prefix != nil {
		m, n = stringMatcher{kind: smPrefix, v: *j.Prefix}, n+1
	}
	if j.Suffix != nil {
		m, n = stringMatcher{kind: smSuffix, v: *j.Suffix}, n+1
	}
	if j.Contains != nil {
		m, n = stringMatcher{kind: smContains, v: *j.Contains}, n+1
	}
	if j.SafeRegex != nil {
		re, err := compileRegex(field+".safeRegex", j.SafeRegex)
		if err != nil {
			return m, err
		}
		m, n = stringMatcher{kind: smRegex, re: re}, n+1
	}
	if n != 1 {
		return m, fmt.Errorf("%s: exactly one of exact, prefix, suffix, contains, safeRegex is required", field)
	}
	m.ignoreCase = j.IgnoreCase
	if m.ignoreCase && m.kind != smRegex {
		m.v = strings.ToLower(m.v)
	}
	return m, nil
}

func (m *stringMatcher) match(s string) bool {
	if m.ignoreCase && m.kind != smRegex {
		switch m.kind {
		case smExact:
			return strings.EqualFold(s, m.v)
		case smPrefix:
			return len(s) >= len(m.v) && strings.EqualFold(s[:len(m.v)], m.v)
		case smSuffix:
			return len(s) >= len(m.v) && strings.EqualFold(s[len(s)-len(m.v):], m.v)
		case smContains:
			return containsFold(s, m.v)
		}
	}
	switch m.kind {
	case smExact:
		return s == m.v
	case smPrefix:
		return strings.HasPrefix(s, m.v)
	case smSuffix:
		return strings.HasSuffix(s, m.v)
	case smContains:
		return strings.Contains(s, m.v)
	case smRegex:
		return m.re.MatchString(s)
	}
	return false
}

// containsFold is a case-insensitive strings.Contains without allocating
// (sub is lowercase).
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

// headerMatcher is Envoy's config.route.v3.HeaderMatcher.
type headerMatcher struct {
	name    string // lowercase
	present *bool
	str     *stringMatcher
	rng     *[2]int64
	invert  bool
	missing bool // treat a missing header as ""
}

type headerMatcherJSON struct {
	Name                      string             `json:"name"`
	ExactMatch                *string            `json:"exactMatch"`
	SafeRegexMatch            *regexJSON         `json:"safeRegexMatch"`
	RangeMatch                *rangeJSON         `json:"rangeMatch"`
	PresentMatch              *bool              `json:"presentMatch"`
	PrefixMatch               *string            `json:"prefixMatch"`
	SuffixMatch               *string            `json:"suffixMatch"`
	ContainsMatch             *string            `json:"containsMatch"`
	StringMatch               *stringMatcherJSON `json:"stringMatch"`
	InvertMatch               bool               `json:"invertMatch"`
	TreatMissingHeaderAsEmpty bool               `json:"treatMissingHeaderAsEmpty"`
}

type rangeJSON struct {
	Start json.Number `json:"start"`
	End   json.Number `json:"end"`
}

func (j *headerMatcherJSON) compile(field string) (*headerMatcher, error) {
	if j.Name == "" {
		return nil, fmt.Errorf("%s.name: is required", field)
	}
	h := &headerMatcher{name: strings.ToLower(j.Name), invert: j.InvertMatch, missing: j.TreatMissingHeaderAsEmpty}
	n := 0
	set := func(m stringMatcher) { h.str = &m; n++ }
	if j.ExactMatch != nil {
		set(stringMatcher{kind: smExact, v: *j.ExactMatch})
	}
	if j.PrefixMatch != nil {
		set(stringMatcher{kind: smPrefix, v: *j.PrefixMatch})
	}
	if j.SuffixMatch != nil {
		set(stringMatcher{kind: smSuffix, v: *j.SuffixMatch})
	}
	if j.ContainsMatch != nil {
		set(stringMatcher{kind: smContains, v: *j.ContainsMatch})
	}
	if j.SafeRegexMatch != nil {
		re, err := compileRegex(field+".safeRegexMatch", j.SafeRegexMatch)
		if err != nil {
			return nil, err
		}
		set(stringMatcher{kind: smRegex, re: re})
	}
	if j.StringMatch != nil {
		m, err := j.StringMatch.compile(field + ".stringMatch")
		if err != nil {
			return nil, err
		}
		set(m)
	}
	if j.PresentMatch != nil {
		h.present, n = j.PresentMatch, n+1
	}
	if j.RangeMatch != nil {
		s, err1 := j.RangeMatch.Start.Int64()
		e, err2 := j.RangeMatch.End.Int64()
		if err1 != nil || err2 != nil || s >= e {
			return nil, fmt.Errorf("%s.rangeMatch: start and end must be integers with start < end", field)
		}
		h.rng, n = &[2]int64{s, e}, n+1
	}
	if n > 1 {
		return nil, fmt.Errorf("%s: at most one match specifier", field)
	}
	if n == 0 {
		// Envoy: no specifier means "present".
		t := true
		h.present = &t
	}
	return h, nil
}

func (h *headerMatcher) match(hs Headers) bool {
	v, ok := "", false
	if hs != nil {
		v, ok = hs.Header(h.name)
	}
	if !ok && h.missing {
		v, ok = "", true
	}
	var r bool
	switch {
	case h.present != nil:
		r = ok == *h.present
		return r != h.invert
	case !ok:
		// A missing header never matches, inverted or not (Envoy).
		return false
	case h.str != nil:
		r = h.str.match(v)
	case h.rng != nil:
		n, err := parseInt(v)
		r = err == nil && n >= h.rng[0] && n < h.rng[1]
	}
	return r != h.invert
}

func parseInt(s string) (int64, error) {
	if s == "" {
		return 0, errEmpty
	}
	neg := false
	if s[0] == '-' || s[0] == '+' {
		neg, s = s[0] == '-', s[1:]
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' || n > (1<<62)/10 {
			return 0, errEmpty
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, nil
}

type cidrJSON struct {
	AddressPrefix string       `json:"addressPrefix"`
	PrefixLen     *json.Number `json:"prefixLen"`
}

func (j *cidrJSON) compile(field string) (netip.Prefix, error) {
	a, err := netip.ParseAddr(j.AddressPrefix)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%s.addressPrefix: %v", field, err)
	}
	a = a.Unmap()
	bits := 0 // Envoy: an unset prefix_len is 0
	if j.PrefixLen != nil {
		n, err := j.PrefixLen.Int64()
		if err != nil || n < 0 || int(n) > a.BitLen() {
			return netip.Prefix{}, fmt.Errorf("%s.prefixLen: must be 0..%d", field, a.BitLen())
		}
		bits = int(n)
	}
	return netip.PrefixFrom(a, bits).Masked(), nil
}
