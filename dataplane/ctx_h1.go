package dataplane

import (
	"net"
	"net/netip"
	"strconv"
	"sync"
	"unsafe"

	"github.com/valyala/fasthttp"

	"github.com/meshagent/meshagent/dataplane/balancer"
	"github.com/meshagent/meshagent/dataplane/expr"
	"github.com/meshagent/meshagent/dataplane/router"
	"github.com/meshagent/meshagent/plugins"
)

// b2s returns a string sharing b's memory; valid while b is unchanged.
func b2s(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// h1Ctx is the plugins.Ctx of an HTTP/1.1 request over fasthttp. It is
// pooled; every field is reset by reset().
type h1Ctx struct {
	fc        *fasthttp.RequestCtx
	rt        *route
	up        *upstream // set by SetUpstream (nil: the route's)
	upSet     bool
	hostSet   bool
	tls       bool
	responded bool
	scheme    string
	host      []byte // $host: Host without port, lowercased
	remote    []byte // $remote_addr text
	remoteIP  netip.Addr
	buf       []byte // scratch for X-Forwarded-For
	rreq      router.Request
	att       balancer.Attempt
	key       []byte // chash key
	consumer  *plugins.Consumer
	stash     stash
	// pending are response headers set before the upstream answered;
	// they are applied on top of the upstream's response.
	pending []hdrKV
	proxied bool
	stream  bool // relay the response body as it arrives (SSE)
}

var h1Pool = sync.Pool{New: func() any { return &h1Ctx{} }}

func acquireH1(fc *fasthttp.RequestCtx, tls bool) *h1Ctx {
	c := h1Pool.Get().(*h1Ctx)
	c.fc, c.tls = fc, tls
	c.host = hostNoPort(c.host[:0], fc.Request.Header.Host())
	c.remoteIP = addrOf(fc.RemoteAddr())
	c.remote = c.remoteIP.AppendTo(c.remote[:0])
	return c
}

func releaseH1(c *h1Ctx) {
	c.fc, c.rt, c.up, c.upSet, c.hostSet, c.responded, c.scheme, c.consumer = nil, nil, nil, false, false, false, "", nil
	c.stash.reset()
	clear(c.pending)
	c.pending, c.proxied, c.stream = c.pending[:0], false, false
	h1Pool.Put(c)
}

// resetAttempt prepares node picking for up: the chash key, if any, and
// the health filter.
func (c *h1Ctx) resetAttempt(up *upstream) {
	if up.keySpec != nil {
		c.key = up.keySpec.Append(c.key[:0], c.exprVars())
		c.att.ResetBytes(c.key, up.hf)
		return
	}
	c.att.Reset("", up.hf)
}

type hdrKV struct{ k, v string }

// applyPending re-applies response headers plugins set before the
// upstream response replaced fc.Response.
func (c *h1Ctx) applyPending() {
	c.proxied = true
	for _, h := range c.pending {
		if h.v == "" {
			c.fc.Response.Header.Del(h.k)
		} else {
			c.fc.Response.Header.Set(h.k, h.v)
		}
	}
}

// hostNoPort appends h without its port, lowercased, to dst.
func hostNoPort(dst, h []byte) []byte {
	end := len(h)
	if len(h) > 0 && h[0] == '[' {
		for i := range h {
			if h[i] == ']' {
				end = i + 1
				break
			}
		}
	} else {
		for i := len(h) - 1; i >= 0; i-- {
			if h[i] == ':' {
				end = i
				break
			}
			if h[i] < '0' || h[i] > '9' {
				break
			}
		}
	}
	for _, b := range h[:end] {
		if b >= 'A' && b <= 'Z' {
			b += 'a' - 'A'
		}
		dst = append(dst, b)
	}
	return dst
}

func addrOf(a net.Addr) netip.Addr {
	switch t := a.(type) {
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(t.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}

// Method implements plugins.Ctx.
func (c *h1Ctx) Method() []byte { return c.fc.Request.Header.Method() }

// SetMethod implements plugins.Ctx.
func (c *h1Ctx) SetMethod(m []byte) { c.fc.Request.Header.SetMethodBytes(m) }

// Path implements plugins.Ctx.
func (c *h1Ctx) Path() []byte { return c.fc.Request.URI().Path() }

// SetPath implements plugins.Ctx.
func (c *h1Ctx) SetPath(p []byte) { c.fc.Request.URI().SetPathBytes(p) }

// Query implements plugins.Ctx.
func (c *h1Ctx) Query() []byte { return c.fc.Request.URI().QueryString() }

// SetQuery implements plugins.Ctx.
func (c *h1Ctx) SetQuery(q []byte) { c.fc.Request.URI().SetQueryStringBytes(q) }

// Host implements plugins.Ctx.
func (c *h1Ctx) Host() []byte { return c.fc.Request.Header.Host() }

// SetHost implements plugins.Ctx.
func (c *h1Ctx) SetHost(h []byte) { c.fc.Request.Header.SetHostBytes(h); c.hostSet = true }

// Header implements plugins.Ctx.
func (c *h1Ctx) Header(name string) []byte { return c.fc.Request.Header.Peek(name) }

// SetHeader implements plugins.Ctx.
func (c *h1Ctx) SetHeader(name, value string) { c.fc.Request.Header.Set(name, value) }

// AddHeader implements plugins.Ctx.
func (c *h1Ctx) AddHeader(name, value string) { c.fc.Request.Header.Add(name, value) }

// DelHeader implements plugins.Ctx.
func (c *h1Ctx) DelHeader(name string) { c.fc.Request.Header.Del(name) }

// Body implements plugins.Ctx.
func (c *h1Ctx) Body() []byte { return c.fc.Request.Body() }

// Var implements plugins.Ctx.
func (c *h1Ctx) Var(name string) (string, bool) { return (*h1Vars)(c).Var(expr.ParseVar(name)) }

// RouteID implements plugins.Ctx.
func (c *h1Ctx) RouteID() string {
	if c.rt == nil {
		return ""
	}
	return c.rt.id
}

// SetUpstream implements plugins.Ctx.
func (c *h1Ctx) SetUpstream(u plugins.Upstream) {
	if u == nil {
		c.up, c.upSet = nil, false
		return
	}
	if up, ok := u.(*upstream); ok {
		c.up, c.upSet = up, true
	}
}

// SetScheme implements plugins.Ctx.
func (c *h1Ctx) SetScheme(s string) { c.scheme = s }

// Respond implements plugins.Ctx; headers set before are kept.
func (c *h1Ctx) Respond(status int, body []byte) {
	c.responded = true
	c.fc.Response.SetStatusCode(status)
	c.fc.Response.SetBodyRaw(body)
}

// Responded implements plugins.Ctx.
func (c *h1Ctx) Responded() bool { return c.responded }

// Status implements plugins.Ctx.
func (c *h1Ctx) Status() int { return c.fc.Response.StatusCode() }

// ResponseHeader implements plugins.Ctx.
func (c *h1Ctx) ResponseHeader(name string) []byte { return c.fc.Response.Header.Peek(name) }

// SetResponseHeader implements plugins.Ctx.
func (c *h1Ctx) SetResponseHeader(name, value string) {
	if !c.proxied {
		c.pending = append(c.pending, hdrKV{name, value})
	}
	if value == "" {
		c.fc.Response.Header.Del(name)
		return
	}
	c.fc.Response.Header.Set(name, value)
}

// ResponseBody implements plugins.Ctx.
func (c *h1Ctx) ResponseBody() []byte { return c.fc.Response.Body() }

// SetResponseBody implements plugins.Ctx.
func (c *h1Ctx) SetResponseBody(b []byte) { c.fc.Response.SetBody(b) }

// exprVars gives the expr.Vars view of the request.
func (c *h1Ctx) exprVars() expr.Vars { return (*h1Vars)(c) }

// h1Vars is the expr.Vars view of an h1Ctx (a distinct method set, since
// plugins.Ctx already has a Var method).
type h1Vars h1Ctx

// Var implements expr.Vars without allocating.
func (v *h1Vars) Var(x expr.Var) (string, bool) {
	c := (*h1Ctx)(v)
	r := &c.fc.Request
	switch x.Kind {
	case expr.KindURI:
		return b2s(r.URI().Path()), true
	case expr.KindHost:
		return b2s(c.host), true
	case expr.KindRequestMethod:
		return b2s(r.Header.Method()), true
	case expr.KindRemoteAddr:
		return b2s(c.remote), true
	case expr.KindScheme:
		if c.tls {
			return "https", true
		}
		return "http", true
	case expr.KindRequestURI:
		return b2s(r.Header.RequestURI()), true
	case expr.KindQueryString:
		q := r.URI().QueryString()
		return b2s(q), len(q) > 0
	case expr.KindHeader:
		h := r.Header.Peek(x.Name)
		return b2s(h), h != nil
	case expr.KindArg:
		a := r.URI().QueryArgs().Peek(x.Name)
		return b2s(a), a != nil
	case expr.KindCookie:
		k := r.Header.Cookie(x.Name)
		return b2s(k), k != nil
	case expr.KindServerPort:
		if a, ok := c.fc.LocalAddr().(*net.TCPAddr); ok {
			return strconv.Itoa(a.Port), true
		}
	case expr.KindServerAddr:
		return addrOf(c.fc.LocalAddr()).String(), true
	case expr.KindRemotePort:
		if a, ok := c.fc.RemoteAddr().(*net.TCPAddr); ok {
			return strconv.Itoa(a.Port), true
		}
	case expr.KindOther:
		switch x.Name {
		case "route_id":
			return c.RouteID(), c.rt != nil
		case "http_host":
			return b2s(r.Header.Host()), true
		case "consumer_name":
			if c.consumer != nil {
				return c.consumer.Username, true
			}
		case "peer_identity": // mTLS peer's SPIFFE id (tls.go)
			return peerIdentity(c.fc.Conn())
		}
	}
	return "", false
}

var (
	_ plugins.Ctx = (*h1Ctx)(nil)
	_ expr.Vars   = (*h1Vars)(nil)
)
