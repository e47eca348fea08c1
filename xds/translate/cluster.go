package translate

import (
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"strconv"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshagent/meshagent/etcdcompat/apisix"
)

// Defaults Envoy applies when a cluster leaves them unset.
const (
	defaultConnectTimeout = 5.0
	// upstreamIOTimeout stands for "no per-cluster read/send timeout":
	// Envoy has none, APISIX requires one. Routes carry the real timeout.
	upstreamIOTimeout = 3600.0
)

// variant is what a route adds to its cluster's upstream: APISIX keeps
// retries and the consistent-hash key on the upstream, Envoy on the route.
type variant struct {
	Retries *int   `json:"r,omitempty"`
	HashOn  string `json:"h,omitempty"`
	Key     string `json:"k,omitempty"`
}

func (v variant) isZero() bool { return v.Retries == nil && v.HashOn == "" }

func (v variant) encode() string {
	b, _ := json.Marshal(v) // a struct of ints and strings always encodes
	return string(b)
}

// VariantUpstreamID is the id of cluster's upstream specialised for a
// route's retry/hash policy (encoded variant).
func variantUpstreamID(cluster string, v variant) string {
	if v.isZero() {
		return UpstreamID(cluster)
	}
	return ObjectID(cluster + "|" + v.encode())
}

func seconds(d *durationpb.Duration) float64 {
	if d == nil {
		return 0
	}
	return float64(d.GetSeconds()) + float64(d.GetNanos())/1e9
}

func edsName(c *clusterv3.Cluster) string {
	if n := c.GetEdsClusterConfig().GetServiceName(); n != "" {
		return n
	}
	return c.GetName()
}

func (t *Translator) translateCluster(r *unitResult, name string, e *entry) error {
	c := e.msg.(*clusterv3.Cluster)
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: cluster %q: %s: %s", ErrInvalid, name, field, fmt.Sprintf(format, args...))
	}
	if c.GetName() != name {
		return bad("name", "resource name %q differs from cluster name", c.GetName())
	}
	up := apisix.Upstream{
		Labels: labels(name, e.version),
		Name:   labelValue(name),
	}
	switch c.GetLbPolicy() {
	case clusterv3.Cluster_ROUND_ROBIN, clusterv3.Cluster_RANDOM:
		up.Type = "roundrobin"
	case clusterv3.Cluster_LEAST_REQUEST:
		up.Type = "least_conn"
	case clusterv3.Cluster_RING_HASH, clusterv3.Cluster_MAGLEV:
		up.Type = "chash"
		up.HashOn, up.Key = "vars", "remote_addr"
	case clusterv3.Cluster_CLUSTER_PROVIDED:
		if c.GetType() != clusterv3.Cluster_ORIGINAL_DST {
			return bad("lb_policy", "CLUSTER_PROVIDED is only supported with type ORIGINAL_DST")
		}
	case clusterv3.Cluster_LOAD_BALANCING_POLICY_CONFIG:
		typ, err := lbFromPolicy(c.GetLoadBalancingPolicy())
		if err != nil {
			return bad("load_balancing_policy", "%v", err)
		}
		up.Type = typ
		if typ == "chash" {
			up.HashOn, up.Key = "vars", "remote_addr"
		}
	default:
		return bad("lb_policy", "unsupported value %v", c.GetLbPolicy())
	}
	ct := seconds(c.GetConnectTimeout())
	if c.GetConnectTimeout() == nil {
		ct = defaultConnectTimeout
	}
	if ct <= 0 {
		return bad("connect_timeout", "must be > 0")
	}
	up.Timeout = &apisix.Timeout{Connect: ct, Send: upstreamIOTimeout, Read: upstreamIOTimeout}
	zero := 0
	up.Retries = &zero

	var cla *endpointv3.ClusterLoadAssignment
	switch ct := c.GetClusterDiscoveryType().(type) {
	case *clusterv3.Cluster_Type:
		switch ct.Type {
		case clusterv3.Cluster_STATIC, clusterv3.Cluster_STRICT_DNS, clusterv3.Cluster_LOGICAL_DNS:
			cla = c.GetLoadAssignment()
			if cla == nil {
				cla = &endpointv3.ClusterLoadAssignment{ClusterName: name}
			}
		case clusterv3.Cluster_EDS:
			en := edsName(c)
			r.deps = append(r.deps, resKey{KindEndpoints, en})
			ee := t.res[KindEndpoints][en]
			if ee == nil {
				// Warming: the cluster waits for its endpoints.
				return nil
			}
			cla = ee.msg.(*endpointv3.ClusterLoadAssignment)
			up.Labels[apisix.LabelXDSVersion] = labelValue(e.version + "/" + ee.version)
		case clusterv3.Cluster_ORIGINAL_DST:
			up.ServiceName = labelValue(name)
			up.DiscoveryType = "original_dst"
			if lb := c.GetOriginalDstLbConfig(); lb.GetUseHttpHeader() {
				up.DiscoveryArgs = map[string]any{"use_http_header": true}
				if n := lb.GetHttpHeaderName(); n != "" {
					up.DiscoveryArgs["http_header_name"] = n
				}
			}
		default:
			return bad("type", "unsupported discovery type %v", ct.Type)
		}
	case *clusterv3.Cluster_ClusterType:
		return bad("cluster_type", "custom cluster type %q is not supported", ct.ClusterType.GetName())
	}
	if cla != nil {
		nodes, err := translateEndpoints(r, cla, c.GetCommonLbConfig().GetLocalityWeightedLbConfig() != nil)
		if err != nil {
			return bad("endpoints", "%v", err)
		}
		up.Nodes = nodes
	}
	if err := translateChecks(r, c, &up); err != nil {
		return bad("health_checks", "%v", err)
	}
	ts := c.GetTransportSocket()
	if len(c.GetTransportSocketMatches()) > 0 {
		ts = matchTransportSocket(r, c, cla)
	}
	h2, err := explicitHTTP2(c)
	if err != nil {
		return bad("typed_extension_protocol_options", "%v", err)
	}
	if h2 {
		up.Scheme = "grpc" // HTTP/2 with prior knowledge (h2c)
	}
	if ts != nil {
		tls, err := upstreamTLS(r, ts)
		if err != nil {
			return bad("transport_socket", "%v", err)
		}
		if tls != nil && h2 {
			up.Scheme = "grpcs"
			up.TLS = tls
		} else if tls != nil {
			up.Scheme = "https"
			up.TLS = tls
		}
	}
	if cb := c.GetCircuitBreakers(); cb != nil && len(cb.GetThresholds()) > 0 {
		r.warnf("cluster %q: circuit_breakers not enforced", name)
	}
	if err := r.putUpstream(PrefixUpstreams+UpstreamID(name), &up); err != nil {
		return err
	}
	for vk := range t.variantRefs[name] {
		var v variant
		if err := json.Unmarshal([]byte(vk), &v); err != nil {
			return fmt.Errorf("translate: variant %q: %w", vk, err)
		}
		vu := up
		if v.Retries != nil {
			vu.Retries = v.Retries
		}
		if v.HashOn != "" && vu.Type == "chash" {
			vu.HashOn, vu.Key = v.HashOn, v.Key
		}
		vu.Labels = make(apisix.Labels, len(up.Labels)+1)
		for k, val := range up.Labels {
			vu.Labels[k] = val
		}
		vu.Labels["meshagent.variant_of"] = UpstreamID(name)
		if err := r.putUpstream(PrefixUpstreams+variantUpstreamID(name, v), &vu); err != nil {
			return err
		}
	}
	return nil
}

// putUpstream encodes an upstream; an upstream without endpoints keeps an
// explicit empty node list (APISIX requires nodes or a discovery service).
func (r *unitResult) putUpstream(key string, up *apisix.Upstream) error {
	b, err := json.Marshal(up)
	if err != nil {
		return fmt.Errorf("translate: encode %s: %w", key, err)
	}
	if len(up.Nodes) == 0 && up.ServiceName == "" {
		b = append([]byte(`{"nodes":[],`), b[1:]...)
	}
	r.objs = append(r.objs, Object{Key: key, Value: b})
	return nil
}

func lbFromPolicy(p *clusterv3.LoadBalancingPolicy) (string, error) {
	for _, pol := range p.GetPolicies() {
		switch pol.GetTypedExtensionConfig().GetTypedConfig().GetTypeUrl() {
		case "type.googleapis.com/envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin",
			"type.googleapis.com/envoy.extensions.load_balancing_policies.random.v3.Random":
			return "roundrobin", nil
		case "type.googleapis.com/envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest":
			return "least_conn", nil
		case "type.googleapis.com/envoy.extensions.load_balancing_policies.ring_hash.v3.RingHash",
			"type.googleapis.com/envoy.extensions.load_balancing_policies.maglev.v3.Maglev":
			return "chash", nil
		}
	}
	return "", fmt.Errorf("no supported policy among %d", len(p.GetPolicies()))
}

// socketAddr returns host and port of an xDS socket address (IPv6 hosts
// bracketed, as APISIX writes them).
func socketAddr(a *corev3.Address) (string, int, error) {
	sa := a.GetSocketAddress()
	if sa == nil {
		return "", 0, fmt.Errorf("only socket_address is supported")
	}
	if sa.GetProtocol() != corev3.SocketAddress_TCP {
		return "", 0, fmt.Errorf("protocol %v is not supported", sa.GetProtocol())
	}
	if sa.GetNamedPort() != "" {
		return "", 0, fmt.Errorf("named_port is not supported")
	}
	host := sa.GetAddress()
	if host == "" {
		return "", 0, fmt.Errorf("address is empty")
	}
	port := int(sa.GetPortValue())
	if port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("port_value %d out of range 1..65535", port)
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.Is6() && !ip.Is4In6() {
		host = "[" + ip.String() + "]"
	}
	return host, port, nil
}

func translateEndpoints(r *unitResult, cla *endpointv3.ClusterLoadAssignment, localityWeighted bool) (apisix.Nodes, error) {
	var nodes apisix.Nodes
	for li, le := range cla.GetEndpoints() {
		lw := 1
		if localityWeighted {
			if le.GetLoadBalancingWeight() == nil {
				continue // Envoy: a locality without weight gets no traffic
			}
			lw = int(le.GetLoadBalancingWeight().GetValue())
		}
		for ei, lb := range le.GetLbEndpoints() {
			switch lb.GetHealthStatus() {
			case corev3.HealthStatus_UNHEALTHY, corev3.HealthStatus_DRAINING, corev3.HealthStatus_TIMEOUT:
				continue
			}
			ep := lb.GetEndpoint()
			if ep == nil {
				return nil, fmt.Errorf("endpoints[%d].lb_endpoints[%d]: endpoint_name is not supported", li, ei)
			}
			host, port, err := socketAddr(ep.GetAddress())
			if err != nil {
				return nil, fmt.Errorf("endpoints[%d].lb_endpoints[%d].endpoint.address: %v", li, ei, err)
			}
			w := 1
			if lb.GetLoadBalancingWeight() != nil {
				w = int(lb.GetLoadBalancingWeight().GetValue())
			}
			if len(ep.GetAdditionalAddresses()) > 0 {
				r.warnf("cluster %q: additional_addresses ignored", cla.GetClusterName())
			}
			nodes = append(nodes, apisix.Node{Host: host, Port: port, Weight: w * lw, Priority: -int(le.GetPriority())})
		}
	}
	return nodes, nil
}

func translateChecks(r *unitResult, c *clusterv3.Cluster, up *apisix.Upstream) error {
	hcs := c.GetHealthChecks()
	od := c.GetOutlierDetection()
	if len(hcs) == 0 && od == nil {
		return nil
	}
	checks := &apisix.Checks{}
	if len(hcs) > 0 {
		if len(hcs) > 1 {
			r.warnf("cluster %q: only the first of %d health_checks is used", c.GetName(), len(hcs))
		}
		hc := hcs[0]
		act := &apisix.ActiveCheck{Timeout: seconds(hc.GetTimeout())}
		interval := int(math.Ceil(seconds(hc.GetInterval())))
		if interval < 1 {
			interval = 1
		}
		healthy := &apisix.ActiveHealthy{Interval: interval, Successes: int(hc.GetHealthyThreshold().GetValue())}
		unhealthy := &apisix.ActiveUnhealthy{Interval: interval}
		if u := hc.GetUnhealthyInterval(); u != nil {
			unhealthy.Interval = max(1, int(math.Ceil(seconds(u))))
		}
		fails := int(hc.GetUnhealthyThreshold().GetValue())
		switch {
		case hc.GetHttpHealthCheck() != nil:
			h := hc.GetHttpHealthCheck()
			act.Type = "http"
			act.HTTPPath = h.GetPath()
			act.Host = h.GetHost()
			for _, rg := range h.GetExpectedStatuses() {
				for s := rg.GetStart(); s < rg.GetEnd() && len(healthy.HTTPStatuses) < 100; s++ {
					if s >= 200 && s <= 599 {
						healthy.HTTPStatuses = append(healthy.HTTPStatuses, int(s))
					}
				}
			}
			if len(healthy.HTTPStatuses) == 0 {
				healthy.HTTPStatuses = []int{200}
			}
			unhealthy.HTTPFailures = fails
			unhealthy.TCPFailures = fails
			if act.HTTPPath == "" {
				return fmt.Errorf("[0].http_health_check.path: required")
			}
		case hc.GetTcpHealthCheck() != nil:
			act.Type = "tcp"
			unhealthy.TCPFailures = fails
			if hc.GetTcpHealthCheck().GetSend() != nil {
				r.warnf("cluster %q: tcp_health_check payloads ignored (connect-only check)", c.GetName())
			}
		default:
			act.Type = "tcp"
			unhealthy.TCPFailures = fails
			r.warnf("cluster %q: health checker %T approximated by a TCP connect check", c.GetName(), hc.GetHealthChecker())
		}
		if p := hc.GetAltPort(); p != nil {
			act.Port = int(p.GetValue())
		}
		act.Healthy, act.Unhealthy = healthy, unhealthy
		checks.Active = act
	}
	if od != nil {
		n5 := 5
		if v := od.GetConsecutive_5Xx(); v != nil {
			n5 = int(v.GetValue())
		}
		ngw := 5
		if v := od.GetConsecutiveGatewayFailure(); v != nil {
			ngw = int(v.GetValue())
		}
		checks.Passive = &apisix.PassiveCheck{
			Type: "http",
			Unhealthy: &apisix.PassiveUnhealthy{
				HTTPStatuses: []int{500, 502, 503, 504},
				HTTPFailures: max(1, n5),
				TCPFailures:  max(1, ngw),
				Timeouts:     max(1, ngw),
			},
		}
		if checks.Active == nil {
			// APISIX re-admits a node that passive checks took out only
			// through an active probe; Envoy re-admits after the ejection
			// time. A TCP probe at that period stands for it.
			bet := seconds(od.GetBaseEjectionTime())
			if od.GetBaseEjectionTime() == nil {
				bet = 30
			}
			iv := max(1, int(math.Ceil(bet)))
			checks.Active = &apisix.ActiveCheck{
				Type:      "tcp",
				Healthy:   &apisix.ActiveHealthy{Interval: iv, Successes: 1},
				Unhealthy: &apisix.ActiveUnhealthy{Interval: iv, TCPFailures: 2},
			}
		}
	}
	up.Checks = checks
	return nil
}

// formatPort is strconv.Itoa, named for readability at call sites.
func formatPort(p int) string { return strconv.Itoa(p) }

// matchTransportSocket picks the transport socket of a cluster with
// transport_socket_matches (Istio's auto-mTLS: tlsMode-istio for
// endpoints labelled tlsMode=istio, plaintext otherwise). An APISIX
// upstream has one TLS setting, so the socket chosen by the most
// endpoints is used for all (a warning when they disagree).
func matchTransportSocket(r *unitResult, c *clusterv3.Cluster, cla *endpointv3.ClusterLoadAssignment) *corev3.TransportSocket {
	choose := func(md *structpb.Struct) int {
		for i, m := range c.GetTransportSocketMatches() {
			ok := true
			for k, want := range m.GetMatch().GetFields() {
				if got, has := md.GetFields()[k]; !has || !proto.Equal(got, want) {
					ok = false
					break
				}
			}
			if ok {
				return i
			}
		}
		return -1 // the cluster's transport_socket
	}
	votes := map[int]int{}
	for _, le := range cla.GetEndpoints() {
		for _, lb := range le.GetLbEndpoints() {
			votes[choose(lb.GetMetadata().GetFilterMetadata()["envoy.transport_socket_match"])]++
		}
	}
	best, bestN := -1, -1
	for i := -1; i < len(c.GetTransportSocketMatches()); i++ {
		if votes[i] > bestN {
			best, bestN = i, votes[i]
		}
	}
	if len(votes) > 1 {
		r.warnf("cluster %q: endpoints need different transport sockets; %q used for all", c.GetName(), socketName(c, best))
	}
	if best < 0 {
		return c.GetTransportSocket()
	}
	return c.GetTransportSocketMatches()[best].GetTransportSocket()
}

func socketName(c *clusterv3.Cluster, i int) string {
	if i < 0 {
		return "transport_socket"
	}
	return c.GetTransportSocketMatches()[i].GetName()
}

const httpProtocolOptions = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// explicitHTTP2 reports whether the cluster speaks HTTP/2 to its
// endpoints without negotiation (explicit_http_config with
// http2_protocol_options, or the deprecated http2_protocol_options).
func explicitHTTP2(c *clusterv3.Cluster) (bool, error) {
	if c.GetHttp2ProtocolOptions() != nil {
		return true, nil
	}
	a, ok := c.GetTypedExtensionProtocolOptions()[httpProtocolOptions]
	if !ok {
		return false, nil
	}
	var o httpv3.HttpProtocolOptions
	if err := a.UnmarshalTo(&o); err != nil {
		return false, fmt.Errorf("%s: %v", httpProtocolOptions, err)
	}
	return o.GetExplicitHttpConfig().GetHttp2ProtocolOptions() != nil, nil
}
