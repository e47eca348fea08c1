package plugins

// Ctx is the protocol-neutral request context a filter sees. The data
// plane implements it over fasthttp (HTTP/1.1) and net/http (HTTP/2, gRPC)
// without allocating per request on the HTTP/1.1 path.
//
// A Ctx is used by one goroutine at a time and is recycled when the
// request ends: filters must not keep it, nor byte slices or strings it
// returned, past the phase call.
type Ctx interface {
	// Method is the request method (GET, POST, ...).
	Method() []byte
	// SetMethod replaces the method sent upstream.
	SetMethod(m []byte)
	// Path is the request path without the query string.
	Path() []byte
	// SetPath replaces the path sent upstream.
	SetPath(p []byte)
	// Query is the raw query string (no leading '?').
	Query() []byte
	// SetQuery replaces the raw query string.
	SetQuery(q []byte)
	// Host is the request host (Host header or :authority).
	Host() []byte
	// SetHost replaces the Host header sent upstream.
	SetHost(h []byte)
	// Header returns a request header value (nil when absent).
	Header(name string) []byte
	// SetHeader sets a request header; AddHeader appends one; DelHeader
	// removes all values of one.
	SetHeader(name, value string)
	AddHeader(name, value string)
	DelHeader(name string)
	// Body returns the request body (may be nil for streamed bodies).
	Body() []byte
	// Var looks up an APISIX/nginx variable (uri, host, request_method,
	// remote_addr, server_port, scheme, args, http_<h>, arg_<a>,
	// cookie_<c>, route_id, ...). ok is false when it is not set.
	Var(name string) (value string, ok bool)
	// RouteID is the id of the matched route ("" for stream/no route).
	RouteID() string
	// SetUpstream makes the request go to u instead of the route's own
	// upstream (traffic-split). nil restores the route's upstream.
	SetUpstream(u Upstream)
	// SetScheme sets the scheme used towards the upstream (http/https).
	SetScheme(s string)

	// Respond writes a complete response; the filter then returns Stop.
	// In header/body filter phases it replaces the upstream's response.
	Respond(status int, body []byte)
	// Responded reports whether Respond was called.
	Responded() bool
	// Status is the response status (0 before a response exists).
	Status() int
	// ResponseHeader returns a response header value.
	ResponseHeader(name string) []byte
	// SetResponseHeader sets (value != "") or removes a response header.
	SetResponseHeader(name, value string)
	// ResponseBody returns the buffered response body.
	ResponseBody() []byte
	// SetResponseBody replaces the response body.
	SetResponseBody(b []byte)
}
