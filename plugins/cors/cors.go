// Package cors is APISIX's cors plugin: it answers preflight requests and
// adds the CORS response headers for allowed origins.
package cors

import (
	"encoding/json"
	"regexp"
	"strconv"
	"strings"

	"github.com/meshagent/meshagent/plugins"
)

// Name and Priority are APISIX's.
const (
	Name     = "cors"
	Priority = 4000
)

const allMethods = "GET,POST,PUT,DELETE,PATCH,HEAD,OPTIONS,CONNECT,TRACE"

// Config is the plugin's schema. "*" means any; "**" forces any even with
// allow_credential (APISIX's escape hatch).
type Config struct {
	AllowOrigins           string   `json:"allow_origins,omitempty"`
	AllowMethods           string   `json:"allow_methods,omitempty"`
	AllowHeaders           string   `json:"allow_headers,omitempty"`
	ExposeHeaders          string   `json:"expose_headers,omitempty"`
	MaxAge                 *int     `json:"max_age,omitempty"`
	AllowCredential        bool     `json:"allow_credential,omitempty"`
	AllowOriginsByRegex    []string `json:"allow_origins_by_regex,omitempty"`
	AllowOriginsByMetadata []string `json:"allow_origins_by_metadata,omitempty"`
}

func init() {
	plugins.Register(plugins.Plugin{Name: Name, Priority: Priority, New: New})
}

type filter struct {
	anyOrigin   bool
	forceOrigin bool
	origins     map[string]bool
	regexes     []*regexp.Regexp
	methods     string
	headers     string
	echoHeaders bool
	expose      string
	maxAge      string
	credential  bool
}

// New validates cfg and builds the filter.
func New(raw json.RawMessage, _ plugins.Builder) (any, error) {
	c := Config{AllowOrigins: "*", AllowMethods: "*", AllowHeaders: "*"}
	if err := plugins.Decode(raw, &c); err != nil {
		return nil, err
	}
	if len(c.AllowOriginsByMetadata) > 0 {
		return nil, plugins.Invalid("allow_origins_by_metadata", "not supported by meshagent (plugin metadata origins)")
	}
	if c.AllowCredential {
		for _, f := range []struct{ name, v string }{{"allow_origins", c.AllowOrigins}, {"allow_methods", c.AllowMethods}, {"allow_headers", c.AllowHeaders}, {"expose_headers", c.ExposeHeaders}} {
			if f.v == "*" {
				return nil, plugins.Invalid(f.name, `"*" is not allowed with allow_credential true; use "**" to force it`)
			}
		}
	}
	f := &filter{methods: c.AllowMethods, headers: c.AllowHeaders, expose: c.ExposeHeaders, maxAge: "5", credential: c.AllowCredential}
	if c.MaxAge != nil {
		f.maxAge = strconv.Itoa(*c.MaxAge)
	}
	switch c.AllowOrigins {
	case "*":
		f.anyOrigin = true
	case "**":
		f.forceOrigin = true
	default:
		f.origins = map[string]bool{}
		for _, o := range strings.Split(c.AllowOrigins, ",") {
			f.origins[strings.TrimSpace(o)] = true
		}
	}
	for i, r := range c.AllowOriginsByRegex {
		re, err := regexp.Compile(r)
		if err != nil {
			return nil, plugins.Invalid("allow_origins_by_regex["+strconv.Itoa(i)+"]", err.Error())
		}
		f.regexes = append(f.regexes, re)
	}
	if f.methods == "*" || f.methods == "**" {
		f.methods = allMethods
	}
	if f.headers == "**" {
		f.echoHeaders = true
	}
	return f, nil
}

// origin returns the Access-Control-Allow-Origin value, or "" when the
// request's origin is not allowed.
func (f *filter) origin(c plugins.Ctx) string {
	o := string(c.Header("Origin"))
	if f.anyOrigin {
		return "*"
	}
	if o == "" {
		return ""
	}
	if f.forceOrigin || f.origins[o] {
		return o
	}
	for _, re := range f.regexes {
		if re.MatchString(o) {
			return o
		}
	}
	return ""
}

func (f *filter) set(c plugins.Ctx) {
	o := f.origin(c)
	if o == "" {
		return
	}
	c.SetResponseHeader("Access-Control-Allow-Origin", o)
	if o != "*" {
		c.SetResponseHeader("Vary", "Origin")
	}
	c.SetResponseHeader("Access-Control-Allow-Methods", f.methods)
	c.SetResponseHeader("Access-Control-Max-Age", f.maxAge)
	h := f.headers
	if f.echoHeaders {
		h = string(c.Header("Access-Control-Request-Headers"))
	}
	c.SetResponseHeader("Access-Control-Allow-Headers", h)
	if f.expose != "" {
		c.SetResponseHeader("Access-Control-Expose-Headers", f.expose)
	}
	if f.credential {
		c.SetResponseHeader("Access-Control-Allow-Credentials", "true")
	}
}

// Rewrite answers preflight (OPTIONS) requests with 200 and the headers.
func (f *filter) Rewrite(c plugins.Ctx) plugins.Status {
	if string(c.Method()) != "OPTIONS" {
		return plugins.Continue
	}
	f.set(c)
	c.Respond(200, nil)
	return plugins.Stop
}

// HeaderFilter adds the headers to proxied responses.
func (f *filter) HeaderFilter(c plugins.Ctx) plugins.Status {
	f.set(c)
	return plugins.Continue
}

var (
	_ plugins.Rewriter     = (*filter)(nil)
	_ plugins.HeaderFilter = (*filter)(nil)
)
