// Package plugins is meshagent's filter API: the phases a request goes
// through, the Status a filter returns, the protocol-neutral request
// context (Ctx) filters read and write, and the init-only registry that
// maps a plugin name to its factory and priority.
//
// It owns the contracts and the chain runner that enforces them (Stop
// without a response becomes a 500; a panic in a filter becomes a 500,
// logged with the plugin name and counted). It does not own any protocol:
// package dataplane implements Ctx over fasthttp and net/http and calls
// the chain. Built-in plugins live in subpackages (plugins/trafficsplit,
// plugins/proxyrewrite, plugins/faultinjection) and register from init.
//
// Phases and priorities follow Apache APISIX: rewrite, access,
// before_proxy (after the upstream node is chosen), header_filter,
// body_filter, log; within a phase, higher priority runs first and global
// rules run before the route's own plugins.
package plugins

import (
	"encoding/json"
	"errors"
	"strconv"
)

// Status is what a filter returns from a phase.
type Status int

const (
	// Continue passes the request to the next filter.
	Continue Status = iota
	// Stop ends the phase chain. It means the filter has written the
	// response (Ctx.Respond); a Stop without a response is answered with
	// a 500 and logged as a bug of the plugin.
	Stop
)

// String returns the status name.
func (s Status) String() string {
	switch s {
	case Continue:
		return "Continue"
	case Stop:
		return "Stop"
	}
	return "Status(" + strconv.Itoa(int(s)) + ")"
}

// Phase is one step of request processing, in APISIX's order.
type Phase int

const (
	// PhaseRewrite runs after route match, before access control.
	PhaseRewrite Phase = iota
	// PhaseAccess runs after rewrite (authentication, traffic-split).
	PhaseAccess
	// PhaseBeforeProxy runs after the upstream node is chosen.
	PhaseBeforeProxy
	// PhaseHeaderFilter runs on the response headers.
	PhaseHeaderFilter
	// PhaseBodyFilter runs on the (buffered) response body.
	PhaseBodyFilter
	// PhaseLog runs after the response was sent; its status is ignored.
	PhaseLog
	numPhases
)

var phaseNames = [numPhases]string{"rewrite", "access", "before_proxy", "header_filter", "body_filter", "log"}

// String returns APISIX's name of the phase.
func (p Phase) String() string {
	if p >= 0 && p < numPhases {
		return phaseNames[p]
	}
	return "Phase(" + strconv.Itoa(int(p)) + ")"
}

// Errors of the filter API.
var (
	// ErrUnknownPlugin is returned for a plugin name nobody registered.
	ErrUnknownPlugin = errors.New("plugins: unknown plugin")
	// ErrInvalidConfig wraps every schema violation of a plugin config.
	ErrInvalidConfig = errors.New("plugins: invalid config")
)

// Upstream is an upstream compiled by the data plane, opaque to plugins.
// Plugins obtain one from Builder at build time and select it per request
// with Ctx.SetUpstream.
type Upstream interface {
	// UpstreamID is the id of the upstream object ("" for an inline one).
	UpstreamID() string
}

// VarsMatcher is a compiled lua-resty-expr expression (APISIX "vars").
type VarsMatcher interface {
	// Match reports whether the request satisfies the expression.
	Match(c Ctx) bool
}

// Builder is what a Factory may use while building a filter; it is only
// valid during the call.
type Builder interface {
	// Upstream returns the compiled upstream object with id.
	Upstream(id string) (Upstream, error)
	// InlineUpstream compiles an upstream defined inside a plugin config;
	// key identifies it so its runtime state survives rebuilds.
	InlineUpstream(key string, raw json.RawMessage) (Upstream, error)
	// Vars compiles an APISIX vars expression (a JSON array).
	Vars(raw json.RawMessage) (VarsMatcher, error)
}

// Factory decodes and validates one plugin config strictly (unknown fields
// are an error naming the field) and returns a filter instance. It runs
// once per snapshot build, never on the request path. The returned value
// implements one or more of the phase interfaces below.
type Factory func(cfg json.RawMessage, b Builder) (any, error)

// Rewriter runs in the rewrite phase.
type Rewriter interface{ Rewrite(c Ctx) Status }

// Accessor runs in the access phase.
type Accessor interface{ Access(c Ctx) Status }

// BeforeProxier runs after the upstream node was chosen.
type BeforeProxier interface{ BeforeProxy(c Ctx) Status }

// HeaderFilter runs on the response headers.
type HeaderFilter interface{ HeaderFilter(c Ctx) Status }

// BodyFilter runs on the response body.
type BodyFilter interface{ BodyFilter(c Ctx) Status }

// Logger runs after the response; it cannot change it.
type Logger interface{ Log(c Ctx) }

// Closer is implemented by filters that hold resources; Close is called
// once the snapshot holding the filter is no longer used for new requests.
type Closer interface{ Close() error }
