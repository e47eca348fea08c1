package dataplane

import (
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"

	"github.com/meshagent/meshagent/dataplane/balancer"
	"github.com/meshagent/meshagent/dataplane/expr"
	"github.com/meshagent/meshagent/dataplane/router"
	"github.com/meshagent/meshagent/plugins"
)

// h2Ctx is the plugins.Ctx of a request served through net/http (HTTP/2,
// h2c, gRPC). The response body is streamed, so ResponseBody is nil,
// unless a filter of the route has a body_filter phase: then it is read
// whole into body (but for event streams and gRPC, bufferForFilter), and
// what the filters leave there (SetResponseBody, Respond) is sent.
type h2Ctx struct {
	w         http.ResponseWriter
	r         *http.Request
	rt        *route
	up        *upstream
	upSet     bool
	hostSet   bool
	responded bool
	tls       bool
	scheme    string
	host      string
	remote    string
	remoteIP  netip.Addr
	status    int
	body      []byte
	resp      *http.Response
	rreq      router.Request
	consumer  *plugins.Consumer
	stash     stash

	// Scratch of forwardHTTP, here to save allocations: the upstream
	// request (and its URL), its body wrapper, the balancer attempt.
	out    http.Request
	outURL url.URL
	obody  onceBody
	att    balancer.Attempt
}

func newH2Ctx(w http.ResponseWriter, r *http.Request, tls bool) *h2Ctx {
	c := &h2Ctx{w: w, r: r, tls: tls}
	var buf [64]byte
	if h := hostNoPort(buf[:0], []byte(r.Host)); len(h) <= len(r.Host) && string(h) == r.Host[:len(h)] {
		c.host = r.Host[:len(h)] // already lower case: no copy
	} else {
		c.host = string(h)
	}
	if s, ok := w.(*h2srvStream); ok && r.RemoteAddr == s.sc.remote {
		c.remoteIP, c.remote = s.sc.remoteIP, s.sc.remoteStr // parsed once per connection
	} else if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		c.remoteIP = ap.Addr().Unmap()
		c.remote = c.remoteIP.String()
	}
	return c
}

// Method implements plugins.Ctx.
func (c *h2Ctx) Method() []byte { return []byte(c.r.Method) }

// SetMethod implements plugins.Ctx.
func (c *h2Ctx) SetMethod(m []byte) { c.r.Method = string(m) }

// Path implements plugins.Ctx.
func (c *h2Ctx) Path() []byte { return []byte(c.r.URL.Path) }

// SetPath implements plugins.Ctx.
func (c *h2Ctx) SetPath(p []byte) { c.r.URL.Path, c.r.URL.RawPath = string(p), "" }

// Query implements plugins.Ctx.
func (c *h2Ctx) Query() []byte { return []byte(c.r.URL.RawQuery) }

// SetQuery implements plugins.Ctx.
func (c *h2Ctx) SetQuery(q []byte) { c.r.URL.RawQuery = string(q) }

// Host implements plugins.Ctx.
func (c *h2Ctx) Host() []byte { return []byte(c.r.Host) }

// SetHost implements plugins.Ctx.
func (c *h2Ctx) SetHost(h []byte) { c.r.Host, c.hostSet = string(h), true }

// Header implements plugins.Ctx.
func (c *h2Ctx) Header(name string) []byte {
	v := c.r.Header.Values(name)
	if len(v) == 0 {
		return nil
	}
	return []byte(v[0])
}

// SetHeader implements plugins.Ctx.
func (c *h2Ctx) SetHeader(name, value string) { c.r.Header.Set(name, value) }

// AddHeader implements plugins.Ctx.
func (c *h2Ctx) AddHeader(name, value string) { c.r.Header.Add(name, value) }

// DelHeader implements plugins.Ctx.
func (c *h2Ctx) DelHeader(name string) { c.r.Header.Del(name) }

// Body implements plugins.Ctx (nil: request bodies are streamed).
func (c *h2Ctx) Body() []byte { return nil }

// Var implements plugins.Ctx.
func (c *h2Ctx) Var(name string) (string, bool) { return (*h2Vars)(c).Var(expr.ParseVar(name)) }

// RouteID implements plugins.Ctx.
func (c *h2Ctx) RouteID() string {
	if c.rt == nil {
		return ""
	}
	return c.rt.id
}

// SetUpstream implements plugins.Ctx.
func (c *h2Ctx) SetUpstream(u plugins.Upstream) {
	if up, ok := u.(*upstream); ok && up != nil {
		c.up, c.upSet = up, true
		return
	}
	c.up, c.upSet = nil, false
}

// SetScheme implements plugins.Ctx.
func (c *h2Ctx) SetScheme(s string) { c.scheme = s }

// Respond implements plugins.Ctx.
func (c *h2Ctx) Respond(status int, body []byte) { c.responded, c.status, c.body = true, status, body }

// Responded implements plugins.Ctx.
func (c *h2Ctx) Responded() bool { return c.responded }

// Status implements plugins.Ctx.
func (c *h2Ctx) Status() int {
	if c.responded {
		return c.status
	}
	if c.resp != nil {
		return c.resp.StatusCode
	}
	return 0
}

// ResponseHeader implements plugins.Ctx.
func (c *h2Ctx) ResponseHeader(name string) []byte {
	if v := c.w.Header().Get(name); v != "" {
		return []byte(v)
	}
	return nil
}

// SetResponseHeader implements plugins.Ctx.
func (c *h2Ctx) SetResponseHeader(name, value string) {
	if value == "" {
		c.w.Header().Del(name)
		return
	}
	c.w.Header().Set(name, value)
}

// ResponseBody implements plugins.Ctx.
func (c *h2Ctx) ResponseBody() []byte { return c.body }

// SetResponseBody implements plugins.Ctx.
func (c *h2Ctx) SetResponseBody(b []byte) { c.body = b }

func (c *h2Ctx) exprVars() expr.Vars { return (*h2Vars)(c) }

// h2Vars is the expr.Vars view of an h2Ctx.
type h2Vars h2Ctx

// Var implements expr.Vars.
func (v *h2Vars) Var(x expr.Var) (string, bool) {
	c := (*h2Ctx)(v)
	r := c.r
	switch x.Kind {
	case expr.KindURI:
		return r.URL.Path, true
	case expr.KindHost:
		return c.host, true
	case expr.KindRequestMethod:
		return r.Method, true
	case expr.KindRemoteAddr:
		return c.remote, true
	case expr.KindScheme:
		if c.tls {
			return "https", true
		}
		return "http", true
	case expr.KindRequestURI:
		return r.RequestURI, true
	case expr.KindQueryString:
		return r.URL.RawQuery, r.URL.RawQuery != ""
	case expr.KindHeader:
		vs := r.Header.Values(x.Name)
		if len(vs) == 0 {
			return "", false
		}
		return vs[0], true
	case expr.KindArg:
		q := r.URL.Query()
		if !q.Has(x.Name) {
			return "", false
		}
		return q.Get(x.Name), true
	case expr.KindCookie:
		k, err := r.Cookie(x.Name)
		if err != nil {
			return "", false
		}
		return k.Value, true
	case expr.KindServerPort:
		if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			if t, ok := a.(*net.TCPAddr); ok {
				return strconv.Itoa(t.Port), true
			}
		}
	case expr.KindOther:
		switch x.Name {
		case "route_id":
			return c.RouteID(), c.rt != nil
		case "http_host":
			return r.Host, true
		case "consumer_name":
			if c.consumer != nil {
				return c.consumer.Username, true
			}
		case "peer_identity": // mTLS peer's SPIFFE id (tls.go)
			return peerIdentityCtx(c.r.Context())
		}
	}
	return "", false
}

var (
	_ plugins.Ctx = (*h2Ctx)(nil)
	_ expr.Vars   = (*h2Vars)(nil)
)
