package plugins

import "strings"

// Template is a string with nginx-style variables ($var or ${var})
// resolved per request through Ctx.Var; "\$" is a literal dollar. It is
// parsed once, at build time.
type Template struct {
	parts []templatePart
}

type templatePart struct {
	s     string
	isVar bool
}

// ParseTemplate parses s.
func ParseTemplate(s string) Template {
	var t Template
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			t.parts = append(t.parts, templatePart{s: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch == '\\' && i+1 < len(s) && s[i+1] == '$' {
			lit.WriteByte('$')
			i++
			continue
		}
		if ch != '$' || i+1 >= len(s) {
			lit.WriteByte(ch)
			continue
		}
		if s[i+1] == '{' {
			if j := strings.IndexByte(s[i+2:], '}'); j >= 0 {
				flush()
				t.parts = append(t.parts, templatePart{s: s[i+2 : i+2+j], isVar: true})
				i += 2 + j
				continue
			}
		}
		j := i + 1
		for j < len(s) && (s[j] == '_' || s[j] >= '0' && s[j] <= '9' || s[j] >= 'a' && s[j] <= 'z' || s[j] >= 'A' && s[j] <= 'Z') {
			j++
		}
		if j == i+1 {
			lit.WriteByte(ch)
			continue
		}
		flush()
		t.parts = append(t.parts, templatePart{s: s[i+1 : j], isVar: true})
		i = j - 1
	}
	flush()
	return t
}

// HasVars reports whether the template needs a request to be rendered.
func (t Template) HasVars() bool {
	for _, p := range t.parts {
		if p.isVar {
			return true
		}
	}
	return false
}

// Render resolves the template for a request; a missing variable renders
// as "" (as nginx does). Var may be nil when HasVars is false.
func (t Template) Render(v func(string) (string, bool)) string {
	if len(t.parts) == 1 && !t.parts[0].isVar {
		return t.parts[0].s
	}
	var b strings.Builder
	for _, p := range t.parts {
		if !p.isVar {
			b.WriteString(p.s)
			continue
		}
		if s, ok := v(p.s); ok {
			b.WriteString(s)
		}
	}
	return b.String()
}
