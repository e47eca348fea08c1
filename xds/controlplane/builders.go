package controlplane

import (
	"fmt"
	"net"
	"strconv"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// ads is a ConfigSource pointing at the ADS stream.
func ads() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

// MustAny packs m into an Any; m is always a valid message here.
func MustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(fmt.Sprintf("controlplane: pack %T: %v", m, err))
	}
	return a
}

// SocketAddress parses host:port into an xDS address.
func SocketAddress(hostport string) *corev3.Address {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		panic(fmt.Sprintf("controlplane: address %q: %v", hostport, err))
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		panic(fmt.Sprintf("controlplane: port %q: %v", port, err))
	}
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(p)},
	}}}
}

// EDSCluster is a round-robin cluster whose endpoints come over ADS.
func EDSCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: ads()},
		ConnectTimeout:       durationpb.New(time.Second),
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
	}
}

// Endpoint is one endpoint of a ClusterLoadAssignment.
type Endpoint struct {
	// Addr is the endpoint's host:port.
	Addr string
	// Priority is the locality priority (0 is the highest).
	Priority uint32
	// Weight is the load-balancing weight; 0 leaves it unset.
	Weight uint32
	// Health is the health status the control plane reports.
	Health corev3.HealthStatus
}

// Endpoints builds the load assignment of cluster: one locality per
// priority level, in the order first seen.
func Endpoints(cluster string, eps ...Endpoint) *endpointv3.ClusterLoadAssignment {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: cluster}
	byPrio := map[uint32]*endpointv3.LocalityLbEndpoints{}
	for _, e := range eps {
		le := byPrio[e.Priority]
		if le == nil {
			le = &endpointv3.LocalityLbEndpoints{Priority: e.Priority, Locality: &corev3.Locality{Zone: "z" + strconv.Itoa(int(e.Priority))}}
			byPrio[e.Priority] = le
			cla.Endpoints = append(cla.Endpoints, le)
		}
		lb := &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: SocketAddress(e.Addr)}},
			HealthStatus:   e.Health,
		}
		if e.Weight > 0 {
			lb.LoadBalancingWeight = wrapperspb.UInt32(e.Weight)
		}
		le.LbEndpoints = append(le.LbEndpoints, lb)
	}
	return cla
}

// StaticCluster is a cluster with inline endpoints.
func StaticCluster(name string, addrs ...string) *clusterv3.Cluster {
	var eps []Endpoint
	for _, a := range addrs {
		eps = append(eps, Endpoint{Addr: a})
	}
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(time.Second),
		LoadAssignment:       Endpoints(name, eps...),
	}
}

// HCM is an HTTP connection manager using route table rds over ADS (or
// the inline table rc when rc is not nil).
func HCM(statPrefix, rds string, rc *routev3.RouteConfiguration) *hcmv3.HttpConnectionManager {
	h := &hcmv3.HttpConnectionManager{
		StatPrefix:  statPrefix,
		HttpFilters: []*hcmv3.HttpFilter{{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: MustAny(&routerv3.Router{})}}},
	}
	if rc != nil {
		h.RouteSpecifier = &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: rc}
	} else {
		h.RouteSpecifier = &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{ConfigSource: ads(), RouteConfigName: rds}}
	}
	return h
}

// HTTPFilterChain is a filter chain holding one HCM.
func HTTPFilterChain(h *hcmv3.HttpConnectionManager) *listenerv3.FilterChain {
	return &listenerv3.FilterChain{Filters: []*listenerv3.Filter{{
		Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: MustAny(h)},
	}}}
}

// TCPFilterChain is a filter chain proxying TCP to cluster.
func TCPFilterChain(statPrefix, cluster string) *listenerv3.FilterChain {
	return &listenerv3.FilterChain{Filters: []*listenerv3.Filter{{
		Name: "envoy.filters.network.tcp_proxy",
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: MustAny(&tcpv3.TcpProxy{
			StatPrefix: statPrefix, ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: cluster},
		})},
	}}}
}

// HTTPListener listens on addr and routes with route table rds (RDS).
func HTTPListener(name, addr, rds string) *listenerv3.Listener {
	return &listenerv3.Listener{
		Name:         name,
		Address:      SocketAddress(addr),
		FilterChains: []*listenerv3.FilterChain{HTTPFilterChain(HCM(name, rds, nil))},
	}
}

// RouteConfig is a route table of virtual hosts.
func RouteConfig(name string, vhs ...*routev3.VirtualHost) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{Name: name, VirtualHosts: vhs}
}

// VirtualHost groups routes under domains.
func VirtualHost(name string, domains []string, routes ...*routev3.Route) *routev3.VirtualHost {
	return &routev3.VirtualHost{Name: name, Domains: domains, Routes: routes}
}

// PrefixRoute sends requests under prefix to cluster.
func PrefixRoute(name, prefix, cluster string) *routev3.Route {
	return &routev3.Route{
		Name:  name,
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: prefix}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster},
		}},
	}
}

// WeightedCluster is one target of a weighted route.
type WeightedCluster struct {
	// Name is the cluster's name.
	Name string
	// Weight is its share of the requests.
	Weight uint32
}

// WeightedRoute splits requests under prefix between clusters by weight.
func WeightedRoute(name, prefix string, wcs ...WeightedCluster) *routev3.Route {
	var cs []*routev3.WeightedCluster_ClusterWeight
	for _, w := range wcs {
		cs = append(cs, &routev3.WeightedCluster_ClusterWeight{Name: w.Name, Weight: wrapperspb.UInt32(w.Weight)})
	}
	return &routev3.Route{
		Name:  name,
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: prefix}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{Clusters: cs}},
		}},
	}
}

// Type aliases so callers need not import every envoy package.
type (
	// Cluster is an envoy Cluster.
	Cluster = clusterv3.Cluster
	// CLA is an envoy ClusterLoadAssignment.
	CLA = endpointv3.ClusterLoadAssignment
	// Listener is an envoy Listener.
	Listener = listenerv3.Listener
	// RouteConfiguration is an envoy RouteConfiguration.
	RouteConfiguration = routev3.RouteConfiguration
	// Secret is an envoy SDS Secret.
	Secret = tlsv3.Secret
)
