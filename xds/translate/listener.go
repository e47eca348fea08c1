package translate

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbachttp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	rbacnet "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshagent/meshagent/etcdcompat/apisix"
)

// LabelBindToPort is set to "false" on listeners Envoy would not bind
// (bind_to_port: false, Istio's per-service outbound listeners): they only
// receive connections handed over by a use_original_dst listener.
const LabelBindToPort = apisix.LabelBindToPort

// LabelOriginalDstFilter is set to "true" on listeners with Envoy's
// original_dst listener filter (Istio's virtualInbound 15006): their filter
// chains match on the connection's original destination, not on the
// listener's own address.
const LabelOriginalDstFilter = apisix.LabelOriginalDstFilter

const (
	typeHCM       = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
	typeTCPProxy  = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
	typeRBACNet   = "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC"
	typeRBACHTTP  = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
	typeRouter    = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
	typeCORS      = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"
	typeFault     = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
	typeLocalRate = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
	filterHCMName = "envoy.filters.network.http_connection_manager"
	filterTCPName = "envoy.filters.network.tcp_proxy"
)

// securityHTTPFilters change who may pass: ignoring them would open
// access, so a listener naming one is refused (NACK).
var securityHTTPFilters = map[string]bool{
	"type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication": true,
	"type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz":          true,
	"type.googleapis.com/envoy.extensions.filters.http.oauth2.v3.OAuth2":               true,
	"type.googleapis.com/envoy.extensions.filters.http.basic_auth.v3.BasicAuth":        true,
}

var securityNetworkFilters = map[string]bool{
	"type.googleapis.com/envoy.extensions.filters.network.ext_authz.v3.ExtAuthz": true,
}

// rbacEntry is one RBAC filter of a chain, kept as Envoy's own JSON.
type rbacEntry struct {
	Stage  string          `json:"stage"`
	Config json.RawMessage `json:"config"`
}

// canonicalJSON encodes m as protojson with sorted keys and no
// formatting, so equal configs give equal bytes.
func canonicalJSON(m proto.Message) (json.RawMessage, error) {
	b, err := protojson.Marshal(m)
	if err != nil {
		return nil, err
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

func (t *Translator) translateListener(r *unitResult, name string, e *entry) error {
	l := e.msg.(*listenerv3.Listener)
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: listener %q: %s: %s", ErrInvalid, name, field, fmt.Sprintf(format, args...))
	}
	if l.GetName() != name {
		return bad("name", "resource name %q differs from listener name", l.GetName())
	}
	if l.GetApiListener() != nil || l.GetInternalListener() != nil {
		return bad("listener_specifier", "only socket listeners are supported")
	}
	if l.GetFilterChainMatcher() != nil {
		return bad("filter_chain_matcher", "not supported (use filter_chain_match)")
	}
	if l.GetUdpListenerConfig() != nil {
		return bad("udp_listener_config", "UDP listeners are not supported")
	}
	host, port, err := socketAddr(l.GetAddress())
	if err != nil {
		return bad("address", "%v", err)
	}
	out := &apisix.Listener{
		ID:             apisix.ID(ObjectID(name)),
		Labels:         labels(name, e.version),
		Address:        host + ":" + strconv.Itoa(port),
		UseOriginalDst: l.GetUseOriginalDst().GetValue(),
		Transparent:    l.GetTransparent().GetValue(),
		FilterChains:   []apisix.FilterChain{},
	}
	if b := l.GetBindToPort(); b != nil && !b.GetValue() {
		out.Labels[LabelBindToPort] = "false"
	}
	for _, lf := range l.GetListenerFilters() {
		if lf.GetName() == "envoy.filters.listener.original_dst" ||
			lf.GetTypedConfig().GetTypeUrl() == "type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst" {
			out.Labels[LabelOriginalDstFilter] = "true"
		}
	}
	switch l.GetTrafficDirection() {
	case corev3.TrafficDirection_INBOUND:
		out.Direction = "inbound"
	case corev3.TrafficDirection_OUTBOUND:
		out.Direction = "outbound"
	}
	// Translate into a scratch result: a listener waiting for its RDS
	// route tables yields nothing, but its dependencies are kept.
	var scratch unitResult
	waiting := false
	for i, fc := range l.GetFilterChains() {
		chain, w, err := t.translateChain(&scratch, l, fc, "filter_chains["+strconv.Itoa(i)+"]", e.version)
		if err != nil {
			return bad(fmt.Sprintf("filter_chains[%d]", i), "%v", err)
		}
		waiting = waiting || w
		out.FilterChains = append(out.FilterChains, *chain)
	}
	if dfc := l.GetDefaultFilterChain(); dfc != nil {
		chain, w, err := t.translateChain(&scratch, l, dfc, "default_filter_chain", e.version)
		if err != nil {
			return bad("default_filter_chain", "%v", err)
		}
		waiting = waiting || w
		out.DefaultChain = chain
	}
	r.deps = append(r.deps, scratch.deps...)
	r.warn = append(r.warn, scratch.warn...)
	if waiting {
		return nil
	}
	r.objs = append(r.objs, scratch.objs...)
	r.variants = append(r.variants, scratch.variants...)
	return r.put(PrefixListeners+ObjectID(name), out)
}

func chainMatch(m *listenerv3.FilterChainMatch) (apisix.FilterChainMatch, error) {
	var out apisix.FilterChainMatch
	if m == nil {
		return out, nil
	}
	if p := m.GetDestinationPort(); p != nil {
		out.DestinationPort = int(p.GetValue())
	}
	cidrs := func(field string, rs []*corev3.CidrRange) ([]string, error) {
		var s []string
		for i, c := range rs {
			a, err := netip.ParseAddr(c.GetAddressPrefix())
			if err != nil {
				return nil, fmt.Errorf("%s[%d]: %v", field, i, err)
			}
			bits := a.BitLen()
			if c.GetPrefixLen() != nil {
				bits = int(c.GetPrefixLen().GetValue())
			}
			p, err := a.Prefix(bits)
			if err != nil {
				return nil, fmt.Errorf("%s[%d]: %v", field, i, err)
			}
			s = append(s, p.String())
		}
		return s, nil
	}
	var err error
	if out.PrefixRanges, err = cidrs("prefix_ranges", m.GetPrefixRanges()); err != nil {
		return out, err
	}
	if out.SourcePrefixes, err = cidrs("source_prefix_ranges", m.GetSourcePrefixRanges()); err != nil {
		return out, err
	}
	out.ServerNames = m.GetServerNames()
	out.TransportProtocol = m.GetTransportProtocol()
	out.ALPN = m.GetApplicationProtocols()
	switch {
	case len(m.GetDirectSourcePrefixRanges()) > 0:
		return out, fmt.Errorf("direct_source_prefix_ranges is not supported")
	case len(m.GetSourcePorts()) > 0:
		return out, fmt.Errorf("source_ports is not supported")
	case m.GetSourceType() != listenerv3.FilterChainMatch_ANY:
		return out, fmt.Errorf("source_type is not supported")
	case m.GetAddressSuffix() != "" || m.GetSuffixLen() != nil:
		return out, fmt.Errorf("address_suffix is not supported")
	}
	return out, nil
}

// translateChain translates one filter chain. waiting reports an RDS
// route table that has not arrived yet.
func (t *Translator) translateChain(r *unitResult, l *listenerv3.Listener, fc *listenerv3.FilterChain, path, version string) (*apisix.FilterChain, bool, error) {
	m, err := chainMatch(fc.GetFilterChainMatch())
	if err != nil {
		return nil, false, fmt.Errorf("filter_chain_match.%v", err)
	}
	chain := &apisix.FilterChain{Name: fc.GetName(), Match: m}
	if ts := fc.GetTransportSocket(); ts != nil {
		tls, _, err := downstreamTLS(r, ts)
		if err != nil {
			return nil, false, fmt.Errorf("transport_socket: %v", err)
		}
		chain.TLS = tls
	}
	var rbac []rbacEntry
	terminal := false
	waiting := false
	for i, f := range fc.GetFilters() {
		if terminal {
			return nil, false, fmt.Errorf("filters[%d] (%s): follows the terminal filter", i, f.GetName())
		}
		tc := f.GetTypedConfig()
		typ := tc.GetTypeUrl()
		switch {
		case typ == typeHCM || (typ == "" && f.GetName() == filterHCMName):
			terminal = true
			w, err := t.translateHCM(r, l, chain, tc, path, version, &rbac)
			if err != nil {
				return nil, false, fmt.Errorf("filters[%d] (%s): %v", i, f.GetName(), err)
			}
			waiting = w
		case typ == typeTCPProxy || (typ == "" && f.GetName() == filterTCPName):
			terminal = true
			if err := t.translateTCPProxy(r, l, chain, tc, path, version); err != nil {
				return nil, false, fmt.Errorf("filters[%d] (%s): %v", i, f.GetName(), err)
			}
		case typ == typeRBACNet:
			var cfg rbacnet.RBAC
			if err := tc.UnmarshalTo(&cfg); err != nil {
				return nil, false, fmt.Errorf("filters[%d] (%s): %v", i, f.GetName(), err)
			}
			j, err := canonicalJSON(&cfg)
			if err != nil {
				return nil, false, fmt.Errorf("filters[%d] (%s): %v", i, f.GetName(), err)
			}
			rbac = append(rbac, rbacEntry{Stage: "network", Config: j})
		case securityNetworkFilters[typ]:
			return nil, false, fmt.Errorf("filters[%d] (%s): %s is not supported", i, f.GetName(), typ)
		default:
			r.warnf("listener %q: %s: network filter %q (%s) ignored", l.GetName(), path, f.GetName(), typ)
		}
	}
	if !terminal {
		return nil, false, fmt.Errorf("filters: no http_connection_manager or tcp_proxy")
	}
	if len(rbac) > 0 {
		chain.Plugins = apisix.Plugins{"rbac": rawPlugin(map[string]any{"filters": rbac})}
	}
	return chain, waiting, nil
}

func (t *Translator) translateHCM(r *unitResult, l *listenerv3.Listener, chain *apisix.FilterChain, tc *anypb.Any, path, version string, rbac *[]rbacEntry) (bool, error) {
	var h hcmv3.HttpConnectionManager
	if tc != nil {
		if err := tc.UnmarshalTo(&h); err != nil {
			return false, fmt.Errorf("typed_config: %v", err)
		}
	}
	chain.Kind = "http"
	for i, f := range h.GetHttpFilters() {
		typ := f.GetTypedConfig().GetTypeUrl()
		switch {
		case typ == typeRouter || f.GetName() == "envoy.filters.http.router":
		case typ == typeRBACHTTP:
			var cfg rbachttp.RBAC
			if err := f.GetTypedConfig().UnmarshalTo(&cfg); err != nil {
				return false, fmt.Errorf("http_filters[%d] (%s): %v", i, f.GetName(), err)
			}
			j, err := canonicalJSON(&cfg)
			if err != nil {
				return false, fmt.Errorf("http_filters[%d] (%s): %v", i, f.GetName(), err)
			}
			*rbac = append(*rbac, rbacEntry{Stage: "http", Config: j})
		case securityHTTPFilters[typ]:
			if f.GetDisabled() {
				continue
			}
			return false, fmt.Errorf("http_filters[%d] (%s): %s is not supported", i, f.GetName(), typ)
		case typ == typeCORS || f.GetName() == corsFilter:
			// Policies are per route (typed_per_filter_config / cors).
		case typ == typeFault, typ == typeLocalRate:
			// Per-route configs are honoured; a filter-level fault or
			// bucket applying to every route is not.
			if len(f.GetTypedConfig().GetValue()) > 0 && !emptyFilterLevel(f.GetTypedConfig()) {
				r.warnf("listener %q: %s: http filter %q: filter-level config ignored (per-route configs apply)", l.GetName(), path, f.GetName())
			}
		default:
			r.warnf("listener %q: %s: http filter %q ignored", l.GetName(), path, f.GetName())
		}
	}
	switch rs := h.GetRouteSpecifier().(type) {
	case *hcmv3.HttpConnectionManager_Rds:
		name := rs.Rds.GetRouteConfigName()
		if name == "" {
			return false, fmt.Errorf("rds.route_config_name: empty")
		}
		chain.RouteConfig = name
		r.deps = append(r.deps, resKey{KindRouteConfig, name})
		return !t.Has(KindRouteConfig, name), nil
	case *hcmv3.HttpConnectionManager_RouteConfig:
		table := l.GetName() + "/" + path + "/" + rs.RouteConfig.GetName()
		chain.RouteConfig = table
		if err := t.translateRoutes(r, rs.RouteConfig, table, l.GetName(), version); err != nil {
			return false, fmt.Errorf("route_config: %v", err)
		}
		return false, nil
	default:
		return false, fmt.Errorf("route specifier %T is not supported", rs)
	}
}

func (t *Translator) translateTCPProxy(r *unitResult, l *listenerv3.Listener, chain *apisix.FilterChain, tc *anypb.Any, path, version string) error {
	var p tcpv3.TcpProxy
	if tc != nil {
		if err := tc.UnmarshalTo(&p); err != nil {
			return fmt.Errorf("typed_config: %v", err)
		}
	}
	cluster := p.GetCluster()
	if wc := p.GetWeightedClusters(); wc != nil {
		if len(wc.GetClusters()) == 0 {
			return fmt.Errorf("weighted_clusters: empty")
		}
		cluster = wc.GetClusters()[0].GetName()
		if len(wc.GetClusters()) > 1 {
			return fmt.Errorf("weighted_clusters: more than one cluster is not supported for TCP")
		}
	}
	if cluster == "" {
		return fmt.Errorf("cluster: required")
	}
	id := ObjectID(l.GetName() + "/" + path)
	chain.Kind = "tcp"
	chain.StreamRouteID = apisix.ID(id)
	sr := &apisix.StreamRoute{
		Labels:     labels(l.GetName(), version),
		UpstreamID: apisix.ID(UpstreamID(cluster)),
	}
	if strings.TrimSpace(p.GetStatPrefix()) != "" {
		sr.Desc = p.GetStatPrefix()
	}
	return r.put(PrefixStreamRoutes+id, sr)
}
