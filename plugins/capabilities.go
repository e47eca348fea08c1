package plugins

import (
	"encoding/json"
	"sync"
)

// Optional capabilities. A Ctx or Builder implementation may provide these
// extra interfaces; filters discover them by type assertion and must behave
// sensibly (usually: fail closed with a clear error at build time) when
// they are missing.

// Consumer is an APISIX consumer as filters see it. It is built once per
// snapshot and shared: filters must not modify it.
type Consumer struct {
	// Username is the consumer's name (APISIX `username`).
	Username string
	// GroupID is the consumer group, or "".
	GroupID string
	// Plugins are the consumer's plugin configs: the credentials of auth
	// plugins (key-auth's key, basic-auth's username/password, ...) and the
	// plugins APISIX merges into the route once the consumer is known.
	Plugins map[string]json.RawMessage
	// Entries are the consumer's non-authentication plugins (its group's
	// first, overridden by its own), built by the data plane at snapshot
	// time; Chain.WithConsumer merges them into a route's chain.
	Entries []Entry

	ownOnce sync.Once
	own     *Chain
}

// ConsumerSource is a Builder capability: the consumers of the snapshot
// being built, sorted by username.
type ConsumerSource interface {
	Consumers() []*Consumer
}

// ConsumerCtx is a Ctx capability: authentication filters attach the
// consumer they identified; later filters (consumer-restriction, limit-*
// keyed by consumer_name, chash on consumer) read it.
type ConsumerCtx interface {
	Consumer() *Consumer
	SetConsumer(c *Consumer)
}

// ResponseStatusSetter is a Ctx capability: a header_filter changes the
// status of the upstream's response, as APISIX's ngx.status, without
// taking over its body (Respond), which then streams on. Both contexts
// of the data plane implement it.
type ResponseStatusSetter interface {
	SetResponseStatus(code int)
}

// HeaderVisitor is a Ctx capability: visit every request header.
type HeaderVisitor interface {
	VisitHeaders(fn func(name, value []byte))
}

// ResponseHeaderVisitor is a Ctx capability: visit every response header.
type ResponseHeaderVisitor interface {
	VisitResponseHeaders(fn func(name, value []byte))
}

// Stash is a Ctx capability: per-request values a filter keeps between its
// phases (limit-conn remembers that it counted the request, so its log
// phase releases exactly what its access phase took). Keys are the filter
// instances' own; values die with the request.
type Stash interface {
	Stashed(key any) (any, bool)
	Stash(key, value any)
}

// ScopeSource is a Builder capability: a stable name of the object the
// filter is built for ("route/<id>", "service/<id>", "global_rule/<id>",
// "consumer/<name>"). Stateful filters (limit-count, limit-req) key their
// state by it so counters survive snapshot rebuilds and stay per object.
type ScopeSource interface {
	Scope() string
}
