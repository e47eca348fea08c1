package dataplane

import (
	"github.com/meshagent/meshagent/plugins"
)

// Optional plugins.Ctx capabilities, implemented by both request contexts.

// stash is a small per-request key/value list (no map allocation).
type stash []stashKV

type stashKV struct{ k, v any }

func (s *stash) get(k any) (any, bool) {
	for _, e := range *s {
		if e.k == k {
			return e.v, true
		}
	}
	return nil, false
}

func (s *stash) put(k, v any) {
	for i := range *s {
		if (*s)[i].k == k {
			(*s)[i].v = v
			return
		}
	}
	*s = append(*s, stashKV{k, v})
}

func (s *stash) reset() {
	clear(*s)
	*s = (*s)[:0]
}

// Consumer implements plugins.ConsumerCtx.
func (c *h1Ctx) Consumer() *plugins.Consumer { return c.consumer }

// SetConsumer implements plugins.ConsumerCtx.
func (c *h1Ctx) SetConsumer(x *plugins.Consumer) { c.consumer = x }

// Stashed implements plugins.Stash.
func (c *h1Ctx) Stashed(k any) (any, bool) { return c.stash.get(k) }

// Stash implements plugins.Stash.
func (c *h1Ctx) Stash(k, v any) { c.stash.put(k, v) }

// VisitHeaders implements plugins.HeaderVisitor.
func (c *h1Ctx) VisitHeaders(fn func(name, value []byte)) {
	for k, v := range c.fc.Request.Header.All() {
		fn(k, v)
	}
}

// VisitResponseHeaders implements plugins.ResponseHeaderVisitor.
func (c *h1Ctx) VisitResponseHeaders(fn func(name, value []byte)) {
	for k, v := range c.fc.Response.Header.All() {
		fn(k, v)
	}
}

// Consumer implements plugins.ConsumerCtx.
func (c *h2Ctx) Consumer() *plugins.Consumer { return c.consumer }

// SetConsumer implements plugins.ConsumerCtx.
func (c *h2Ctx) SetConsumer(x *plugins.Consumer) { c.consumer = x }

// Stashed implements plugins.Stash.
func (c *h2Ctx) Stashed(k any) (any, bool) { return c.stash.get(k) }

// Stash implements plugins.Stash.
func (c *h2Ctx) Stash(k, v any) { c.stash.put(k, v) }

// VisitHeaders implements plugins.HeaderVisitor.
func (c *h2Ctx) VisitHeaders(fn func(name, value []byte)) {
	for k, vs := range c.r.Header {
		for _, v := range vs {
			fn([]byte(k), []byte(v))
		}
	}
}

// VisitResponseHeaders implements plugins.ResponseHeaderVisitor.
func (c *h2Ctx) VisitResponseHeaders(fn func(name, value []byte)) {
	for k, vs := range c.w.Header() {
		for _, v := range vs {
			fn([]byte(k), []byte(v))
		}
	}
}

// SetResponseStatus implements plugins.ResponseStatusSetter: the status
// of the upstream's response (or of the local one).
func (c *h1Ctx) SetResponseStatus(code int) { c.fc.Response.SetStatusCode(code) }

// SetResponseStatus implements plugins.ResponseStatusSetter: the status
// written once the header filters ran (forwardHTTP, forwardHTTPViaH1).
func (c *h2Ctx) SetResponseStatus(code int) {
	if c.responded {
		c.status = code
	}
	if c.resp != nil {
		c.resp.StatusCode = code
	}
}

var (
	_ plugins.ResponseStatusSetter  = (*h1Ctx)(nil)
	_ plugins.ResponseStatusSetter  = (*h2Ctx)(nil)
	_ plugins.ConsumerCtx           = (*h1Ctx)(nil)
	_ plugins.Stash                 = (*h1Ctx)(nil)
	_ plugins.HeaderVisitor         = (*h1Ctx)(nil)
	_ plugins.ResponseHeaderVisitor = (*h1Ctx)(nil)
	_ plugins.ConsumerCtx           = (*h2Ctx)(nil)
	_ plugins.Stash                 = (*h2Ctx)(nil)
	_ plugins.HeaderVisitor         = (*h2Ctx)(nil)
	_ plugins.ResponseHeaderVisitor = (*h2Ctx)(nil)
	_ plugins.ScopeSource           = pluginBuilder{}
	_ plugins.ConsumerSource        = pluginBuilder{}
)
