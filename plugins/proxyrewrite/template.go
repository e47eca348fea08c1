package proxyrewrite

import (
	"strings"

	"github.com/meshagent/meshagent/plugins"
)

// tmplPart is a literal or a variable reference of a uri template.
type tmplPart struct {
	lit   string
	isVar bool
}

// parseTmpl splits "/a/$uri/${arg_x}b" into literal and variable parts,
// the way APISIX's core.utils.resolve_var reads them.
func parseTmpl(s string) []tmplPart {
	var out []tmplPart
	for len(s) > 0 {
		i := strings.IndexByte(s, '$')
		if i < 0 {
			out = append(out, tmplPart{lit: s})
			break
		}
		if i > 0 {
			out = append(out, tmplPart{lit: s[:i]})
		}
		s = s[i+1:]
		if strings.HasPrefix(s, "{") {
			if j := strings.IndexByte(s, '}'); j > 0 {
				out = append(out, tmplPart{lit: s[1:j], isVar: true})
				s = s[j+1:]
				continue
			}
		}
		j := 0
		for j < len(s) && (s[j] == '_' || s[j] >= 'a' && s[j] <= 'z' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= '0' && s[j] <= '9') {
			j++
		}
		if j == 0 {
			out = append(out, tmplPart{lit: "$"})
			continue
		}
		out = append(out, tmplPart{lit: s[:j], isVar: true})
		s = s[j:]
	}
	return out
}

// expand resolves the template; unset variables expand to "".
func expand(parts []tmplPart, c plugins.Ctx) string {
	var b strings.Builder
	for _, p := range parts {
		if !p.isVar {
			b.WriteString(p.lit)
			continue
		}
		if v, ok := c.Var(p.lit); ok {
			b.WriteString(v)
		}
	}
	return b.String()
}
