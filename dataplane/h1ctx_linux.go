//go:build linux

package dataplane

import (
	"github.com/meshagent/meshagent/dataplane/expr"
	"github.com/meshagent/meshagent/plugins"
)

// The event loops run the plugins of loopPlugins themselves: filters of
// the access phase that only read the request and choose its upstream.
// A route with any other plugin goes to the fasthttp engine. Should a
// listed plugin still do something evCtx cannot (change the request,
// answer it), the exchange is marked slow and the connection is handed to
// fasthttp, which runs the chain again from the start.
var loopPlugins = map[string]bool{"traffic-split": true}

// loopChain reports whether the event loops can run chain ch.
func loopChain(ch *plugins.Chain) bool {
	for _, n := range ch.Names() {
		if !loopPlugins[n] {
			return false
		}
	}
	return !ch.Has(plugins.PhaseRewrite) && !ch.Has(plugins.PhaseBeforeProxy) && !ch.Has(plugins.PhaseHeaderFilter) &&
		!ch.Has(plugins.PhaseBodyFilter) && !ch.Has(plugins.PhaseLog)
}

// evCtx is the plugins.Ctx of an exchange.
type evCtx exchange

var (
	_ plugins.Ctx = (*evCtx)(nil)
	_ exprVarser  = (*evCtx)(nil)
)

func (c *evCtx) exprVars() expr.Vars { return (*evVars)(c) }

// Method implements plugins.Ctx.
func (c *evCtx) Method() []byte { return c.head.method }

// Path implements plugins.Ctx.
func (c *evCtx) Path() []byte { return c.head.path }

// Query implements plugins.Ctx.
func (c *evCtx) Query() []byte { return c.head.query }

// Host implements plugins.Ctx.
func (c *evCtx) Host() []byte { return c.head.host }

// Header implements plugins.Ctx.
func (c *evCtx) Header(name string) []byte {
	v, _ := c.head.header(name)
	return v
}

// Body implements plugins.Ctx: bodies are streamed, never held.
func (c *evCtx) Body() []byte { c.slow = true; return nil }

// Var implements plugins.Ctx.
func (c *evCtx) Var(name string) (string, bool) {
	if name == "route_id" {
		return c.RouteID(), c.rt != nil
	}
	return (*evVars)(c).Var(expr.ParseVar(name))
}

// RouteID implements plugins.Ctx.
func (c *evCtx) RouteID() string {
	if c.rt == nil {
		return ""
	}
	return c.rt.id
}

// SetUpstream implements plugins.Ctx.
func (c *evCtx) SetUpstream(u plugins.Upstream) {
	if u == nil {
		c.over = nil
		return
	}
	if up, ok := u.(*upstream); ok {
		c.over = up
	}
}

// What the event loop does not do: the request goes to fasthttp.

func (c *evCtx) SetMethod([]byte)                 { c.slow = true }
func (c *evCtx) SetPath([]byte)                   { c.slow = true }
func (c *evCtx) SetQuery([]byte)                  { c.slow = true }
func (c *evCtx) SetHost([]byte)                   { c.slow = true }
func (c *evCtx) SetHeader(string, string)         { c.slow = true }
func (c *evCtx) AddHeader(string, string)         { c.slow = true }
func (c *evCtx) DelHeader(string)                 { c.slow = true }
func (c *evCtx) SetScheme(string)                 { c.slow = true }
func (c *evCtx) Respond(int, []byte)              { c.slow, c.answered = true, true }
func (c *evCtx) Responded() bool                  { return c.answered }
func (c *evCtx) Status() int                      { return 0 }
func (c *evCtx) ResponseHeader(string) []byte     { return nil }
func (c *evCtx) SetResponseHeader(string, string) { c.slow = true }
func (c *evCtx) ResponseBody() []byte             { return nil }
func (c *evCtx) SetResponseBody([]byte)           { c.slow = true }
