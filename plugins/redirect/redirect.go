// Package redirect is APISIX's redirect plugin: it answers with a redirect
// to a URI built from variables, to a regex rewrite of the request URI, or
// from http to https.
package redirect

import (
	"encoding/json"
	"net/url"
	"regexp"
	"strings"

	"github.com/meshagent/meshagent/plugins"
)

// Name and Priority are APISIX's.
const (
	Name     = "redirect"
	Priority = 900
)

// Config is the plugin's schema: exactly one of HTTPToHTTPS, URI and
// RegexURI.
type Config struct {
	HTTPToHTTPS       bool     `json:"http_to_https,omitempty"`
	URI               string   `json:"uri,omitempty"`
	RegexURI          []string `json:"regex_uri,omitempty"`
	RetCode           *int     `json:"ret_code,omitempty"`
	EncodeURI         bool     `json:"encode_uri,omitempty"`
	AppendQueryString bool     `json:"append_query_string,omitempty"`
}

func init() {
	plugins.Register(plugins.Plugin{Name: Name, Priority: Priority, New: New})
}

type filter struct {
	toHTTPS  bool
	uri      plugins.Template
	re       *regexp.Regexp
	repl     string
	code     int
	encode   bool
	appendQS bool
}

// New validates cfg and builds the filter.
func New(raw json.RawMessage, _ plugins.Builder) (any, error) {
	var c Config
	if err := plugins.Decode(raw, &c); err != nil {
		return nil, err
	}
	n := 0
	for _, set := range []bool{c.HTTPToHTTPS, c.URI != "", len(c.RegexURI) > 0} {
		if set {
			n++
		}
	}
	if n != 1 {
		return nil, plugins.Invalid("http_to_https|uri|regex_uri", "exactly one is required")
	}
	f := &filter{toHTTPS: c.HTTPToHTTPS, code: 302, encode: c.EncodeURI, appendQS: c.AppendQueryString}
	if c.HTTPToHTTPS {
		f.code = 301
		if c.AppendQueryString {
			return nil, plugins.Invalid("append_query_string", "cannot be used with http_to_https")
		}
	}
	if c.RetCode != nil {
		if *c.RetCode < 200 {
			return nil, plugins.Invalid("ret_code", "must be >= 200")
		}
		f.code = *c.RetCode
	}
	if c.URI != "" {
		f.uri = plugins.ParseTemplate(c.URI)
	}
	if len(c.RegexURI) > 0 {
		if len(c.RegexURI) != 2 {
			return nil, plugins.Invalid("regex_uri", "must be [regex, replacement]")
		}
		re, err := regexp.Compile(c.RegexURI[0])
		if err != nil {
			return nil, plugins.Invalid("regex_uri[0]", err.Error())
		}
		f.re, f.repl = re, c.RegexURI[1] // $1 references: the same syntax in Go and APISIX
	}
	return f, nil
}

// Rewrite answers with the redirect.
func (f *filter) Rewrite(c plugins.Ctx) plugins.Status {
	var loc string
	switch {
	case f.toHTTPS:
		if s, _ := c.Var("scheme"); s == "https" {
			return plugins.Continue
		}
		host := string(c.Host())
		if h, _, ok := strings.Cut(host, ":"); ok && !strings.HasPrefix(host, "[") {
			host = h
		}
		ru, _ := c.Var("request_uri")
		loc = "https://" + host + ru
	case f.re != nil:
		uri, _ := c.Var("uri")
		m := f.re.FindStringSubmatchIndex(uri)
		if m == nil {
			return plugins.Continue
		}
		loc = string(f.re.ExpandString(nil, f.repl, uri, m))
	default:
		loc = f.uri.Render(c.Var)
	}
	if f.encode {
		loc = (&url.URL{Path: loc}).EscapedPath()
	}
	if f.appendQS {
		if q := c.Query(); len(q) > 0 {
			if strings.Contains(loc, "?") {
				loc += "&" + string(q)
			} else {
				loc += "?" + string(q)
			}
		}
	}
	c.SetResponseHeader("Location", loc)
	c.Respond(f.code, nil)
	return plugins.Stop
}

var _ plugins.Rewriter = (*filter)(nil)
