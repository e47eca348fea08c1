// Package proxyrewrite is APISIX's proxy-rewrite plugin: in the rewrite
// phase it changes what is sent upstream — uri (with $var interpolation),
// regex_uri, host, method, scheme and request headers (add/set/remove).
// It owns its config schema and the filter only.
package proxyrewrite

import (
	"encoding/json"
	"regexp"
	"strings"

	"github.com/meshagent/meshagent/plugins"
)

// Name and Priority are APISIX's.
const (
	Name     = "proxy-rewrite"
	Priority = 1008
)

// Config is the plugin config (APISIX schema; unknown fields rejected).
type Config struct {
	// URI replaces the upstream path (+query); $var and ${var} expand.
	URI string `json:"uri,omitempty"`
	// Method replaces the request method.
	Method string `json:"method,omitempty"`
	// RegexURI is [regex, template, ...] pairs; the first matching regex
	// rewrites the path ($1.. expand). Ignored when URI is set.
	RegexURI []string `json:"regex_uri,omitempty"`
	// Host replaces the Host header sent upstream.
	Host string `json:"host,omitempty"`
	// Scheme is http or https towards the upstream.
	Scheme string `json:"scheme,omitempty"`
	// Headers is {add:{}, set:{}, remove:[]} or the legacy {name: value}
	// (set; an empty value removes).
	Headers json.RawMessage `json:"headers,omitempty"`
	// UseRealRequestURIUnsafe is accepted for compatibility.
	UseRealRequestURIUnsafe bool `json:"use_real_request_uri_unsafe,omitempty"`
}

type headerOps struct {
	Add    map[string]string `json:"add,omitempty"`
	Set    map[string]string `json:"set,omitempty"`
	Remove []string          `json:"remove,omitempty"`
}

var methods = map[string]bool{"GET": true, "POST": true, "PUT": true, "HEAD": true, "DELETE": true,
	"OPTIONS": true, "MKCOL": true, "COPY": true, "MOVE": true, "PROPFIND": true, "LOCK": true,
	"UNLOCK": true, "PATCH": true, "TRACE": true}

var headerName = regexp.MustCompile(`^[^:\s]+$`)

func init() {
	plugins.Register(plugins.Plugin{Name: Name, Priority: Priority, New: New})
}

type regexRule struct {
	re   *regexp.Regexp
	tmpl string
}

type kv struct{ k, v string }

type filter struct {
	uri    plugins.Template
	hasURI bool
	regex  []regexRule
	host   []byte
	method []byte
	scheme string
	add    []kv
	set    []kv
	remove []string
}

// New validates cfg and builds the filter.
func New(cfg json.RawMessage, _ plugins.Builder) (any, error) {
	var c Config
	if err := plugins.Decode(cfg, &c); err != nil {
		return nil, err
	}
	f := &filter{}
	if c.URI != "" {
		if !strings.HasPrefix(c.URI, "/") && !strings.HasPrefix(c.URI, "$") {
			return nil, plugins.Invalid("uri", "must start with / (or a $variable)")
		}
		f.uri, f.hasURI = plugins.ParseTemplate(c.URI), true
	}
	if len(c.RegexURI) > 0 {
		if len(c.RegexURI)%2 != 0 {
			return nil, plugins.Invalid("regex_uri", "pairs of [regex, replacement] (even number of items, at least 2)")
		}
		for i := 0; i < len(c.RegexURI); i += 2 {
			re, err := regexp.Compile(c.RegexURI[i])
			if err != nil {
				return nil, plugins.Invalid("regex_uri", "bad regex "+c.RegexURI[i]+": "+err.Error())
			}
			f.regex = append(f.regex, regexRule{re, c.RegexURI[i+1]})
		}
	}
	if c.Method != "" {
		if !methods[c.Method] {
			return nil, plugins.Invalid("method", "one of GET, POST, PUT, HEAD, DELETE, OPTIONS, MKCOL, COPY, MOVE, PROPFIND, LOCK, UNLOCK, PATCH, TRACE")
		}
		f.method = []byte(c.Method)
	}
	if c.Host != "" {
		if strings.ContainsAny(c.Host, " \t\r\n/") {
			return nil, plugins.Invalid("host", "a host name or host:port")
		}
		f.host = []byte(c.Host)
	}
	switch c.Scheme {
	case "", "http", "https":
		f.scheme = c.Scheme
	default:
		return nil, plugins.Invalid("scheme", "one of http, https")
	}
	if len(c.Headers) > 0 {
		if err := f.headers(c.Headers); err != nil {
			return nil, err
		}
	}
	return f, nil
}

func (f *filter) headers(raw json.RawMessage) error {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(raw, &probe); err != nil {
		return plugins.Invalid("headers", "an object")
	}
	_, a := probe["add"]
	_, s := probe["set"]
	_, r := probe["remove"]
	if a || s || r {
		var ops headerOps
		if err := plugins.Decode(raw, &ops); err != nil {
			return err
		}
		for k, v := range ops.Add {
			if !headerName.MatchString(k) {
				return plugins.Invalid("headers.add", "bad header name "+k)
			}
			f.add = append(f.add, kv{k, v})
		}
		for k, v := range ops.Set {
			if !headerName.MatchString(k) {
				return plugins.Invalid("headers.set", "bad header name "+k)
			}
			f.set = append(f.set, kv{k, v})
		}
		for _, k := range ops.Remove {
			if !headerName.MatchString(k) {
				return plugins.Invalid("headers.remove", "bad header name "+k)
			}
			f.remove = append(f.remove, k)
		}
		return nil
	}
	var legacy map[string]string
	if err := json.Unmarshal(raw, &legacy); err != nil {
		return plugins.Invalid("headers", "values must be strings")
	}
	for k, v := range legacy {
		if !headerName.MatchString(k) {
			return plugins.Invalid("headers", "bad header name "+k)
		}
		if v == "" {
			f.remove = append(f.remove, k)
		} else {
			f.set = append(f.set, kv{k, v})
		}
	}
	return nil
}

// Rewrite applies the rewrite to the request sent upstream.
func (f *filter) Rewrite(c plugins.Ctx) plugins.Status {
	if f.hasURI {
		u := f.uri.Render(c.Var)
		if i := strings.IndexByte(u, '?'); i >= 0 {
			c.SetPath([]byte(u[:i]))
			c.SetQuery([]byte(u[i+1:]))
		} else {
			c.SetPath([]byte(u))
		}
	} else if len(f.regex) > 0 {
		p := string(c.Path())
		for _, r := range f.regex {
			if m := r.re.FindStringSubmatchIndex(p); m != nil {
				out := r.re.ExpandString(nil, r.tmpl, p, m)
				np := string(out)
				if i := strings.IndexByte(np, '?'); i >= 0 {
					c.SetPath([]byte(np[:i]))
					c.SetQuery([]byte(np[i+1:]))
				} else {
					c.SetPath(out)
				}
				break
			}
		}
	}
	if f.method != nil {
		c.SetMethod(f.method)
	}
	if f.host != nil {
		c.SetHost(f.host)
	}
	if f.scheme != "" {
		c.SetScheme(f.scheme)
	}
	for _, h := range f.add {
		c.AddHeader(h.k, h.v)
	}
	for _, h := range f.set {
		c.SetHeader(h.k, h.v)
	}
	for _, h := range f.remove {
		c.DelHeader(h)
	}
	return plugins.Continue
}

var _ plugins.Rewriter = (*filter)(nil)
