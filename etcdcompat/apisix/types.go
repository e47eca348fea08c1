// Package apisix is meshagent's model of Apache APISIX configuration objects:
// routes, upstreams, services, ssls, plugin configs, global rules, consumers,
// consumer groups, stream routes, plugin metadata and protos, plus
// meshagent's own listener object (kept outside APISIX's key prefix).
//
// It owns the Go types, strict JSON decoding (unknown fields are an error)
// and validation equal to APISIX's JSON schemas, and the mapping between
// etcd keys (/apisix/<dir>/<id>) and kinds. It does not own storage (see
// package store) nor how the data plane compiles the objects.
//
// Objects are stored as the JSON APISIX itself writes, so a real APISIX can
// read the same store. Decoded values are shared between goroutines and
// must be treated as immutable once decoded.
//
// Entry points: Decode / NewDecoder (the store.Decoder: key -> validated
// object), DecodeKind (one document of a kind), ParseKey / Key / InitDirs
// (the etcd key layout), ParseVars (route vars), LoadStandalone,
// SyncStandalone and WatchStandaloneFile (apisix.yaml), and Marshal (encode
// and validate what a producer is about to write). Decoding fills APISIX's
// schema defaults; an absent field and a zero value are the same thing in
// the Go types, so a zero value encodes as "absent" and means the default.
package apisix

import "encoding/json"

// ID is an object id. APISIX accepts a string (1-64 chars of
// [a-zA-Z0-9-_.]) or a positive integer; both are held as the string form.
type ID string

// Timeout is a set of proxy timeouts in seconds (fractions allowed). All
// three fields are required by APISIX's schema and must be > 0.
type Timeout struct {
	Connect float64 `json:"connect"`
	Send    float64 `json:"send"`
	Read    float64 `json:"read"`
}

// Plugins maps a plugin name to its raw JSON configuration. The raw form is
// kept because each plugin decodes (strictly) and validates its own schema
// when a data-plane snapshot is built.
type Plugins map[string]json.RawMessage

// Labels are free-form key/value labels. meshagent records the provenance
// of translated objects here (see LabelXDSName and LabelXDSVersion).
type Labels map[string]string

// Label keys written by meshagent itself. Values obey APISIX's label rule
// (no whitespace), so a real APISIX accepts the objects unchanged.
const (
	// LabelXDSName is the name of the xDS resource an object came from.
	LabelXDSName = "meshagent.xds.name"
	// LabelXDSVersion is the version_info of the xDS response it came in.
	LabelXDSVersion = "meshagent.xds.version"
	// LabelRouteConfig groups routes into one route table. Routes without it
	// belong to the default table served by the --http-listen listener; a
	// Listener filter chain names the table it serves (FilterChain.RouteConfig).
	LabelRouteConfig = "meshagent.route_config"
	// LabelBindToPort "false" marks a Listener that is not bound (Envoy's
	// bind_to_port: false, Istio's per-service outbound listeners): it only
	// serves connections handed over by a use_original_dst listener.
	LabelBindToPort = "meshagent.bind_to_port"
	// LabelOriginalDstFilter "true" marks a Listener whose filter chains
	// match on each connection's original destination (Envoy's original_dst
	// listener filter, Istio's virtualInbound 15006).
	LabelOriginalDstFilter = "meshagent.original_dst_filter"
)

// Route is an APISIX route (schema_def.lua `route`).
type Route struct {
	ID              ID              `json:"id,omitempty"`
	Name            string          `json:"name,omitempty"`
	Desc            string          `json:"desc,omitempty"`
	Labels          Labels          `json:"labels,omitempty"`
	CreateTime      int64           `json:"create_time,omitempty"`
	UpdateTime      int64           `json:"update_time,omitempty"`
	URI             string          `json:"uri,omitempty"`
	URIs            []string        `json:"uris,omitempty"`
	Priority        int             `json:"priority,omitempty"`
	Methods         []string        `json:"methods,omitempty"`
	Host            string          `json:"host,omitempty"`
	Hosts           []string        `json:"hosts,omitempty"`
	RemoteAddr      string          `json:"remote_addr,omitempty"`
	RemoteAddrs     []string        `json:"remote_addrs,omitempty"`
	Vars            json.RawMessage `json:"vars,omitempty"`
	FilterFunc      string          `json:"filter_func,omitempty"`
	Timeout         *Timeout        `json:"timeout,omitempty"`
	Plugins         Plugins         `json:"plugins,omitempty"`
	PluginConfigID  ID              `json:"plugin_config_id,omitempty"`
	Upstream        *Upstream       `json:"upstream,omitempty"`
	UpstreamID      ID              `json:"upstream_id,omitempty"`
	ServiceID       ID              `json:"service_id,omitempty"`
	EnableWebsocket bool            `json:"enable_websocket,omitempty"`
	// Status is 1 (routed, the default when absent) or 0 (not routed).
	Status   *int   `json:"status,omitempty"`
	Script   string `json:"script,omitempty"`
	ScriptID ID     `json:"script_id,omitempty"`
}

// Node is one upstream endpoint. The map form {"host:port": weight} decodes
// into Nodes too, with Priority 0. IPv6 hosts are always held in brackets
// ("[::1]"). Port 0 means the port was not given (APISIX then uses the
// scheme's default port).
type Node struct {
	Host     string         `json:"host"`
	Port     int            `json:"port,omitempty"`
	Weight   int            `json:"weight"`
	Priority int            `json:"priority,omitempty"`
	Metadata map[string]any `json:"metadata,omitempty"`
}

// Nodes is the node list of an upstream; it decodes from both of APISIX's
// forms (map and array) and encodes as the array form.
type Nodes []Node

// Upstream is an APISIX upstream (schema_def.lua `upstream_schema`).
type Upstream struct {
	ID            ID             `json:"id,omitempty"`
	Name          string         `json:"name,omitempty"`
	Desc          string         `json:"desc,omitempty"`
	Labels        Labels         `json:"labels,omitempty"`
	CreateTime    int64          `json:"create_time,omitempty"`
	UpdateTime    int64          `json:"update_time,omitempty"`
	Nodes         Nodes          `json:"nodes,omitempty"`
	ServiceName   string         `json:"service_name,omitempty"`
	DiscoveryType string         `json:"discovery_type,omitempty"`
	DiscoveryArgs map[string]any `json:"discovery_args,omitempty"`
	// Type is the balancer: roundrobin (default), chash, ewma, least_conn.
	Type string `json:"type,omitempty"`
	// HashOn is vars (default), header, cookie, consumer or vars_combinations.
	HashOn string  `json:"hash_on,omitempty"`
	Key    string  `json:"key,omitempty"`
	Checks *Checks `json:"checks,omitempty"`
	// Retries nil means len(nodes)-1, as in APISIX.
	Retries      *int     `json:"retries,omitempty"`
	RetryTimeout *float64 `json:"retry_timeout,omitempty"`
	Timeout      *Timeout `json:"timeout,omitempty"`
	// Scheme is http (default), https, grpc, grpcs, tcp, tls, udp or kafka.
	Scheme string `json:"scheme,omitempty"`
	// PassHost is pass (default), node or rewrite.
	PassHost      string         `json:"pass_host,omitempty"`
	UpstreamHost  string         `json:"upstream_host,omitempty"`
	TLS           *UpstreamTLS   `json:"tls,omitempty"`
	KeepalivePool *KeepalivePool `json:"keepalive_pool,omitempty"`
}

// UpstreamTLS is the client side TLS of an upstream.
type UpstreamTLS struct {
	ClientCertID ID     `json:"client_cert_id,omitempty"`
	ClientCert   string `json:"client_cert,omitempty"`
	ClientKey    string `json:"client_key,omitempty"`
	Verify       bool   `json:"verify,omitempty"`
	// The fields below are meshagent extensions set by the xDS translation
	// (UpstreamTlsContext); APISIX itself ignores upstreams it cannot read,
	// so they are only written for mesh (xDS) upstreams.
	SNI          string   `json:"sni,omitempty"`
	ALPN         []string `json:"alpn,omitempty"`
	TrustedCA    string   `json:"trusted_ca,omitempty"`
	MatchSANs    []string `json:"match_subject_alt_names,omitempty"`
	SecretName   string   `json:"secret_name,omitempty"`
	CASecretName string   `json:"ca_secret_name,omitempty"`
}

// KeepalivePool bounds idle upstream connections.
type KeepalivePool struct {
	Size        int     `json:"size,omitempty"`
	IdleTimeout float64 `json:"idle_timeout,omitempty"`
	Requests    int     `json:"requests,omitempty"`
}

// Checks are an upstream's health checks. Active is required when Checks is
// present (APISIX schema); Passive needs Active.
type Checks struct {
	Active  *ActiveCheck  `json:"active,omitempty"`
	Passive *PassiveCheck `json:"passive,omitempty"`
}

// ActiveCheck probes nodes periodically.
type ActiveCheck struct {
	Type                   string           `json:"type,omitempty"`
	Timeout                float64          `json:"timeout,omitempty"`
	Concurrency            int              `json:"concurrency,omitempty"`
	Host                   string           `json:"host,omitempty"`
	Port                   int              `json:"port,omitempty"`
	HTTPPath               string           `json:"http_path,omitempty"`
	HTTPMethod             string           `json:"http_method,omitempty"`
	HTTPReqBody            string           `json:"http_req_body,omitempty"`
	HTTPSVerifyCertificate *bool            `json:"https_verify_certificate,omitempty"`
	ReqHeaders             []string         `json:"req_headers,omitempty"`
	Healthy                *ActiveHealthy   `json:"healthy,omitempty"`
	Unhealthy              *ActiveUnhealthy `json:"unhealthy,omitempty"`
}

// ActiveHealthy says when a probed node becomes healthy.
type ActiveHealthy struct {
	Interval     int   `json:"interval,omitempty"`
	HTTPStatuses []int `json:"http_statuses,omitempty"`
	Successes    int   `json:"successes,omitempty"`
}

// ActiveUnhealthy says when a probed node becomes unhealthy.
type ActiveUnhealthy struct {
	Interval     int   `json:"interval,omitempty"`
	HTTPStatuses []int `json:"http_statuses,omitempty"`
	HTTPFailures int   `json:"http_failures,omitempty"`
	TCPFailures  int   `json:"tcp_failures,omitempty"`
	Timeouts     int   `json:"timeouts,omitempty"`
}

// PassiveCheck judges nodes from real traffic.
type PassiveCheck struct {
	Type      string            `json:"type,omitempty"`
	Healthy   *PassiveHealthy   `json:"healthy,omitempty"`
	Unhealthy *PassiveUnhealthy `json:"unhealthy,omitempty"`
}

// PassiveHealthy says when real traffic marks a node healthy.
type PassiveHealthy struct {
	HTTPStatuses []int `json:"http_statuses,omitempty"`
	Successes    int   `json:"successes,omitempty"`
}

// PassiveUnhealthy says when real traffic marks a node unhealthy.
type PassiveUnhealthy struct {
	HTTPStatuses []int `json:"http_statuses,omitempty"`
	TCPFailures  int   `json:"tcp_failures,omitempty"`
	Timeouts     int   `json:"timeouts,omitempty"`
	HTTPFailures int   `json:"http_failures,omitempty"`
}

// Service is an APISIX service: shared upstream, plugins and hosts.
type Service struct {
	ID              ID        `json:"id,omitempty"`
	Name            string    `json:"name,omitempty"`
	Desc            string    `json:"desc,omitempty"`
	Labels          Labels    `json:"labels,omitempty"`
	CreateTime      int64     `json:"create_time,omitempty"`
	UpdateTime      int64     `json:"update_time,omitempty"`
	Plugins         Plugins   `json:"plugins,omitempty"`
	Upstream        *Upstream `json:"upstream,omitempty"`
	UpstreamID      ID        `json:"upstream_id,omitempty"`
	Hosts           []string  `json:"hosts,omitempty"`
	EnableWebsocket bool      `json:"enable_websocket,omitempty"`
	Script          string    `json:"script,omitempty"`
}

// SSL is an APISIX ssl object: a server certificate selected by SNI, or a
// client certificate (Type "client") referenced by upstream.tls.client_cert_id.
type SSL struct {
	ID           ID         `json:"id,omitempty"`
	Desc         string     `json:"desc,omitempty"`
	Labels       Labels     `json:"labels,omitempty"`
	CreateTime   int64      `json:"create_time,omitempty"`
	UpdateTime   int64      `json:"update_time,omitempty"`
	Type         string     `json:"type,omitempty"`
	Cert         string     `json:"cert,omitempty"`
	Key          string     `json:"key,omitempty"`
	Certs        []string   `json:"certs,omitempty"`
	Keys         []string   `json:"keys,omitempty"`
	SNI          string     `json:"sni,omitempty"`
	SNIs         []string   `json:"snis,omitempty"`
	Client       *SSLClient `json:"client,omitempty"`
	Status       *int       `json:"status,omitempty"`
	SSLProtocols []string   `json:"ssl_protocols,omitempty"`
}

// SSLClient configures downstream client-certificate verification.
type SSLClient struct {
	CA               string   `json:"ca"`
	Depth            int      `json:"depth,omitempty"`
	SkipMTLSURIRegex []string `json:"skip_mtls_uri_regex,omitempty"`
}

// PluginConfig is a reusable set of plugins referenced by routes.
type PluginConfig struct {
	ID         ID      `json:"id,omitempty"`
	Name       string  `json:"name,omitempty"`
	Desc       string  `json:"desc,omitempty"`
	Labels     Labels  `json:"labels,omitempty"`
	CreateTime int64   `json:"create_time,omitempty"`
	UpdateTime int64   `json:"update_time,omitempty"`
	Plugins    Plugins `json:"plugins"`
}

// GlobalRule is a set of plugins run for every request.
type GlobalRule struct {
	ID         ID      `json:"id,omitempty"`
	CreateTime int64   `json:"create_time,omitempty"`
	UpdateTime int64   `json:"update_time,omitempty"`
	Plugins    Plugins `json:"plugins"`
}

// Consumer is an API consumer identified by its authentication plugins.
// Its key is <prefix>/consumers/<username>; ID, when set, equals Username.
type Consumer struct {
	ID         ID      `json:"id,omitempty"`
	Username   string  `json:"username"`
	Desc       string  `json:"desc,omitempty"`
	Labels     Labels  `json:"labels,omitempty"`
	CreateTime int64   `json:"create_time,omitempty"`
	UpdateTime int64   `json:"update_time,omitempty"`
	Plugins    Plugins `json:"plugins,omitempty"`
	GroupID    ID      `json:"group_id,omitempty"`
}

// ConsumerGroup is a set of plugins shared by consumers.
type ConsumerGroup struct {
	ID         ID      `json:"id,omitempty"`
	Name       string  `json:"name,omitempty"`
	Desc       string  `json:"desc,omitempty"`
	Labels     Labels  `json:"labels,omitempty"`
	CreateTime int64   `json:"create_time,omitempty"`
	UpdateTime int64   `json:"update_time,omitempty"`
	Plugins    Plugins `json:"plugins"`
}

// StreamRoute is an L4 (TCP/UDP) route.
type StreamRoute struct {
	ID         ID              `json:"id,omitempty"`
	Name       string          `json:"name,omitempty"`
	Desc       string          `json:"desc,omitempty"`
	Labels     Labels          `json:"labels,omitempty"`
	CreateTime int64           `json:"create_time,omitempty"`
	UpdateTime int64           `json:"update_time,omitempty"`
	RemoteAddr string          `json:"remote_addr,omitempty"`
	ServerAddr string          `json:"server_addr,omitempty"`
	ServerPort int             `json:"server_port,omitempty"`
	SNI        string          `json:"sni,omitempty"`
	Upstream   *Upstream       `json:"upstream,omitempty"`
	UpstreamID ID              `json:"upstream_id,omitempty"`
	ServiceID  ID              `json:"service_id,omitempty"`
	Plugins    Plugins         `json:"plugins,omitempty"`
	Protocol   *StreamProtocol `json:"protocol,omitempty"`
}

// StreamProtocol names an xRPC protocol of a stream route.
type StreamProtocol struct {
	Name       string          `json:"name"`
	SuperiorID ID              `json:"superior_id,omitempty"`
	Conf       json.RawMessage `json:"conf,omitempty"`
	Logger     []StreamLogger  `json:"logger,omitempty"`
}

// StreamLogger is one logger of an xRPC protocol: a logging plugin Name
// with its Conf, run when Filter (a lua-resty-expr expression) matches.
type StreamLogger struct {
	Name   string          `json:"name,omitempty"`
	Filter json.RawMessage `json:"filter,omitempty"`
	Conf   json.RawMessage `json:"conf,omitempty"`
}

// Credential is an authentication credential of a consumer (APISIX 3.x),
// stored at <prefix>/consumers/<username>/credentials/<id>. ID holds
// "<username>/credentials/<id>", the form APISIX uses; Plugins holds at
// most one authentication plugin.
type Credential struct {
	ID         ID      `json:"id,omitempty"`
	Name       string  `json:"name,omitempty"`
	Desc       string  `json:"desc,omitempty"`
	Labels     Labels  `json:"labels,omitempty"`
	CreateTime int64   `json:"create_time,omitempty"`
	UpdateTime int64   `json:"update_time,omitempty"`
	Plugins    Plugins `json:"plugins,omitempty"`
}

// PluginMetadata is the per-plugin metadata object, keyed by plugin name.
// Its fields are the plugin's own; they are kept raw.
type PluginMetadata struct {
	ID     ID
	Fields map[string]json.RawMessage
}

// Proto is a protobuf definition used by grpc-transcode.
type Proto struct {
	ID         ID     `json:"id,omitempty"`
	Name       string `json:"name,omitempty"`
	Desc       string `json:"desc,omitempty"`
	Labels     Labels `json:"labels,omitempty"`
	CreateTime int64  `json:"create_time,omitempty"`
	UpdateTime int64  `json:"update_time,omitempty"`
	Content    string `json:"content"`
}

// Listener is meshagent's own object (not APISIX's): a socket the data
// plane listens on, as translated from an xDS Listener. It lives under
// /meshagent/listeners/<id>, outside APISIX's prefix.
type Listener struct {
	ID     ID     `json:"id,omitempty"`
	Labels Labels `json:"labels,omitempty"`
	// Address is host:port to bind.
	Address string `json:"address"`
	// UseOriginalDst makes the listener hand each connection to the
	// listener bound to the connection's original destination (Istio's
	// virtualOutbound 15001 / virtualInbound 15006).
	UseOriginalDst bool `json:"use_original_dst,omitempty"`
	// Transparent binds with IP_TRANSPARENT (TPROXY capture).
	Transparent bool `json:"transparent,omitempty"`
	// Direction is "inbound", "outbound" or empty.
	Direction    string        `json:"direction,omitempty"`
	FilterChains []FilterChain `json:"filter_chains"`
	// DefaultChain is used when no filter chain matches (-1: refuse).
	DefaultChain *FilterChain `json:"default_filter_chain,omitempty"`
}

// FilterChain is one way of handling a listener's connections, chosen by
// Match the way Envoy chooses filter chains.
type FilterChain struct {
	Name  string           `json:"name,omitempty"`
	Match FilterChainMatch `json:"match,omitempty"`
	// TLS terminates TLS on the chain (nil: plaintext).
	TLS *DownstreamTLS `json:"tls,omitempty"`
	// Kind is "http" (routes of RouteConfig) or "tcp" (StreamRouteID).
	Kind          string `json:"kind"`
	RouteConfig   string `json:"route_config,omitempty"`
	StreamRouteID ID     `json:"stream_route_id,omitempty"`
	// Plugins are network-level filters of the chain, e.g. "rbac".
	Plugins Plugins `json:"plugins,omitempty"`
}

// FilterChainMatch is Envoy's filter_chain_match subset meshagent honours.
type FilterChainMatch struct {
	DestinationPort   int      `json:"destination_port,omitempty"`
	PrefixRanges      []string `json:"prefix_ranges,omitempty"`
	SourcePrefixes    []string `json:"source_prefix_ranges,omitempty"`
	ServerNames       []string `json:"server_names,omitempty"`
	TransportProtocol string   `json:"transport_protocol,omitempty"`
	ALPN              []string `json:"application_protocols,omitempty"`
}

// DownstreamTLS terminates TLS with a certificate from an ssl object or an
// SDS secret, optionally requiring client certificates.
type DownstreamTLS struct {
	SSLID             ID       `json:"ssl_id,omitempty"`
	SecretName        string   `json:"secret_name,omitempty"`
	CASecretName      string   `json:"ca_secret_name,omitempty"`
	RequireClientCert bool     `json:"require_client_certificate,omitempty"`
	ALPN              []string `json:"alpn,omitempty"`
	MatchSANs         []string `json:"match_subject_alt_names,omitempty"`
}
