// Package responserewrite is APISIX's response-rewrite plugin: it changes
// the status, headers and body of the upstream's response, optionally only
// when a vars expression matches, and can rewrite the body with regex
// filters.
//
// As in APISIX, the status and headers change in the header_filter phase
// and the body in the body_filter phase. A config without body or
// filters builds a filter with no body_filter phase, so the data plane
// streams the response body instead of buffering it.
package responserewrite

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/meshagent/meshagent/plugins"
)

// Name and Priority are APISIX's.
const (
	Name     = "response-rewrite"
	Priority = 899
)

// Config is the plugin's schema.
type Config struct {
	StatusCode *int            `json:"status_code,omitempty"`
	Body       *string         `json:"body,omitempty"`
	BodyBase64 bool            `json:"body_base64,omitempty"`
	Headers    json.RawMessage `json:"headers,omitempty"`
	Vars       json.RawMessage `json:"vars,omitempty"`
	Filters    []Filter        `json:"filters,omitempty"`
}

// Headers is the structured headers form; the legacy form is a plain map
// (an empty value removes the header).
type Headers struct {
	Add    []string          `json:"add,omitempty"`
	Set    map[string]string `json:"set,omitempty"`
	Remove []string          `json:"remove,omitempty"`
}

// Filter is one regex replacement over the response body.
type Filter struct {
	Regex   string `json:"regex"`
	Scope   string `json:"scope,omitempty"`
	Replace string `json:"replace"`
	Options string `json:"options,omitempty"`
}

func init() {
	plugins.Register(plugins.Plugin{Name: Name, Priority: Priority, New: New})
}

type headerOp struct {
	name  string
	value plugins.Template
	op    int // 0 set, 1 add, 2 remove
}

type regexFilter struct {
	re     *regexp.Regexp
	global bool
	repl   string
}

type filter struct {
	status  int
	body    []byte
	hasBody bool
	headers []headerOp
	vars    plugins.VarsMatcher
	filters []regexFilter
}

// bodyRewrite is a filter that rewrites the body too: it has a
// body_filter phase, for which the data plane buffers the body.
type bodyRewrite struct{ *filter }

// New validates cfg and builds the filter.
func New(raw json.RawMessage, b plugins.Builder) (any, error) {
	var c Config
	if err := plugins.Decode(raw, &c); err != nil {
		return nil, err
	}
	f := &filter{}
	if c.StatusCode != nil {
		if *c.StatusCode < 200 || *c.StatusCode > 598 {
			return nil, plugins.Invalid("status_code", "must be an integer from 200 to 598")
		}
		f.status = *c.StatusCode
	}
	if c.Body != nil && len(c.Filters) > 0 {
		return nil, plugins.Invalid("body|filters", "body and filters are mutually exclusive")
	}
	if c.Body != nil {
		f.hasBody, f.body = true, []byte(*c.Body)
		if c.BodyBase64 {
			d, err := base64.StdEncoding.DecodeString(*c.Body)
			if err != nil {
				return nil, plugins.Invalid("body", "body_base64 is true but body is not base64")
			}
			f.body = d
		}
	}
	if err := f.parseHeaders(c.Headers); err != nil {
		return nil, err
	}
	if len(c.Vars) > 0 {
		m, err := b.Vars(c.Vars)
		if err != nil {
			return nil, plugins.Invalid("vars", err.Error())
		}
		f.vars = m
	}
	for i, fl := range c.Filters {
		field := fmt.Sprintf("filters[%d]", i)
		if fl.Regex == "" {
			return nil, plugins.Invalid(field+".regex", "required")
		}
		pat := fl.Regex
		if strings.Contains(fl.Options, "i") {
			pat = "(?i)" + pat
		}
		re, err := regexp.Compile(pat)
		if err != nil {
			return nil, plugins.Invalid(field+".regex", err.Error())
		}
		switch fl.Scope {
		case "", "once", "global":
		default:
			return nil, plugins.Invalid(field+".scope", `must be "once" or "global"`)
		}
		f.filters = append(f.filters, regexFilter{re: re, global: fl.Scope == "global", repl: fl.Replace})
	}
	if f.status == 0 && !f.hasBody && len(f.headers) == 0 && len(f.filters) == 0 {
		return nil, plugins.Invalid("status_code|body|headers|filters", "at least one is required")
	}
	if f.hasBody || len(f.filters) > 0 {
		return bodyRewrite{f}, nil
	}
	return f, nil // no body_filter: the body streams
}

func (f *filter) parseHeaders(raw json.RawMessage) error {
	if len(raw) == 0 {
		return nil
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(raw, &probe); err != nil {
		return plugins.Invalid("headers", "must be an object")
	}
	_, a := probe["add"]
	_, s := probe["set"]
	_, r := probe["remove"]
	if a || s || r {
		var h Headers
		if err := plugins.Decode(raw, &h); err != nil {
			return fmt.Errorf("headers: %w", err)
		}
		for i, kv := range h.Add {
			k, v, ok := strings.Cut(kv, ":")
			if !ok || strings.TrimSpace(k) == "" {
				return plugins.Invalid(fmt.Sprintf("headers.add[%d]", i), `must be "Name: value"`)
			}
			f.headers = append(f.headers, headerOp{name: strings.TrimSpace(k), value: plugins.ParseTemplate(strings.TrimSpace(v)), op: 1})
		}
		for k, v := range h.Set {
			f.headers = append(f.headers, headerOp{name: k, value: plugins.ParseTemplate(v), op: 0})
		}
		for _, k := range h.Remove {
			f.headers = append(f.headers, headerOp{name: k, op: 2})
		}
		return nil
	}
	var legacy map[string]string
	if err := json.Unmarshal(raw, &legacy); err != nil {
		return plugins.Invalid("headers", "values must be strings")
	}
	for k, v := range legacy {
		op := 0
		if v == "" {
			op = 2
		}
		f.headers = append(f.headers, headerOp{name: k, value: plugins.ParseTemplate(v), op: op})
	}
	return nil
}

func (f *filter) applies(c plugins.Ctx) bool { return f.vars == nil || f.vars.Match(c) }

// HeaderFilter rewrites the status and headers.
func (f *filter) HeaderFilter(c plugins.Ctx) plugins.Status {
	if !f.applies(c) {
		return plugins.Continue
	}
	if f.status != 0 {
		if s, ok := c.(plugins.ResponseStatusSetter); ok {
			s.SetResponseStatus(f.status)
		}
	}
	for _, h := range f.headers {
		switch h.op {
		case 0:
			c.SetResponseHeader(h.name, h.value.Render(c.Var))
		case 1:
			if old := c.ResponseHeader(h.name); len(old) > 0 {
				c.SetResponseHeader(h.name, string(old)+", "+h.value.Render(c.Var))
			} else {
				c.SetResponseHeader(h.name, h.value.Render(c.Var))
			}
		case 2:
			c.SetResponseHeader(h.name, "")
		}
	}
	return plugins.Continue
}

// BodyFilter rewrites the body; the status is the header filter's.
func (f bodyRewrite) BodyFilter(c plugins.Ctx) plugins.Status {
	if !f.applies(c) {
		return plugins.Continue
	}
	status := c.Status()
	if f.status != 0 {
		status = f.status
	}
	body := c.ResponseBody()
	if f.hasBody {
		body = f.body
	} else if len(f.filters) > 0 {
		s := string(body)
		for _, bf := range f.filters {
			if bf.global {
				s = bf.re.ReplaceAllString(s, bf.repl)
			} else if loc := bf.re.FindStringSubmatchIndex(s); loc != nil {
				s = s[:loc[0]] + string(bf.re.ExpandString(nil, bf.repl, s, loc)) + s[loc[1]:]
			}
		}
		body = []byte(s)
	}
	c.Respond(status, body)
	return plugins.Continue
}

var (
	_ plugins.HeaderFilter = (*filter)(nil)
	_ plugins.HeaderFilter = bodyRewrite{}
	_ plugins.BodyFilter   = bodyRewrite{}
)
