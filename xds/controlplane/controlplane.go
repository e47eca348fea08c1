// Package controlplane is a small embedded xDS control plane: go-control-plane's
// real ADS server (state of the world and delta) and snapshot cache served
// over gRPC, plus builders for the resources meshagent's demo and tests
// push. It owns nothing of meshagent's client side.
package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
)

// Resources is one complete configuration for a node.
type Resources struct {
	// Clusters are served over CDS.
	Clusters []*clusterv3.Cluster
	// Endpoints are served over EDS.
	Endpoints []*endpointv3.ClusterLoadAssignment
	// Listeners are served over LDS.
	Listeners []*listenerv3.Listener
	// Routes are served over RDS.
	Routes []*routev3.RouteConfiguration
	// Secrets are served over SDS.
	Secrets []*tlsv3.Secret
}

// Server is a running control plane. Its methods are safe for concurrent use.
type Server struct {
	// Cache is the snapshot cache served; SetSnapshot is a shorthand.
	Cache cache.SnapshotCache
	lis   net.Listener
	gs    *grpc.Server
	done  chan struct{}

	mu   sync.Mutex
	reqs []Request // requests received, in order
	nack []string  // error_detail messages received
}

// Request is what the server recorded of one discovery request.
type Request struct {
	// TypeURL is the type the request is about.
	TypeURL string
	// Names are the resource names requested (SotW) or subscribed (delta).
	Names []string
	// Unsubscribe are the names unsubscribed (delta only).
	Unsubscribe []string
	// Nonce is the response nonce the request answers ("" for a new
	// subscription).
	Nonce string
	// Delta tells a delta request from a state-of-the-world one.
	Delta bool
	// Version is the version_info (SotW) of the request.
	Version string
	// InitialVersions are the initial_resource_versions (delta).
	InitialVersions map[string]string
}

// Start serves a new control plane on addr (e.g. "127.0.0.1:0"); opts
// configure the gRPC server (TLS credentials, interceptors).
func Start(addr string, log *slog.Logger, opts ...grpc.ServerOption) (*Server, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("controlplane: listen %s: %w", addr, err)
	}
	return Serve(lis, log, opts...), nil
}

// Serve serves a new control plane on lis.
func Serve(lis net.Listener, log *slog.Logger, opts ...grpc.ServerOption) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		Cache: cache.NewSnapshotCache(true, cache.IDHash{}, slogAdapter{log}),
		lis:   lis,
		gs:    grpc.NewServer(opts...),
		done:  make(chan struct{}),
	}
	srv := serverv3.NewServer(context.Background(), s.Cache, s.callbacks())
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(s.gs, srv)
	go func() {
		defer close(s.done)
		if err := s.gs.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			log.Error("controlplane: serve", "err", err)
		}
	}()
	return s
}

// Addr is the address served.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// Stop closes every stream and the listener.
func (s *Server) Stop() {
	s.gs.Stop()
	<-s.done
}

// SetSnapshot publishes res as version for node id.
func (s *Server) SetSnapshot(ctx context.Context, node, version string, res Resources) error {
	m := map[resource.Type][]types.Resource{}
	for _, r := range res.Clusters {
		m[resource.ClusterType] = append(m[resource.ClusterType], r)
	}
	for _, r := range res.Endpoints {
		m[resource.EndpointType] = append(m[resource.EndpointType], r)
	}
	for _, r := range res.Listeners {
		m[resource.ListenerType] = append(m[resource.ListenerType], r)
	}
	for _, r := range res.Routes {
		m[resource.RouteType] = append(m[resource.RouteType], r)
	}
	for _, r := range res.Secrets {
		m[resource.SecretType] = append(m[resource.SecretType], r)
	}
	snap, err := cache.NewSnapshot(version, m)
	if err != nil {
		return fmt.Errorf("controlplane: snapshot %s: %w", version, err)
	}
	return s.Cache.SetSnapshot(ctx, node, snap)
}

// NACKs returns the error_detail messages of the NACKs received so far.
func (s *Server) NACKs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.nack...)
}

// Requests returns the requests received so far, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.reqs...)
}

// record keeps r, and nack when the request is a NACK.
func (s *Server) record(r Request, nack string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = append(s.reqs, r)
	if nack != "" {
		s.nack = append(s.nack, nack)
	}
}

// callbacks records every discovery request the server receives.
func (s *Server) callbacks() serverv3.Callbacks {
	return serverv3.CallbackFuncs{
		StreamRequestFunc: func(_ int64, r *discoverygrpc.DiscoveryRequest) error {
			s.record(Request{TypeURL: r.GetTypeUrl(), Names: r.GetResourceNames(), Nonce: r.GetResponseNonce(), Version: r.GetVersionInfo()}, r.GetErrorDetail().GetMessage())
			return nil
		},
		StreamDeltaRequestFunc: func(_ int64, r *discoverygrpc.DeltaDiscoveryRequest) error {
			s.record(Request{TypeURL: r.GetTypeUrl(), Names: r.GetResourceNamesSubscribe(), Unsubscribe: r.GetResourceNamesUnsubscribe(),
				Nonce: r.GetResponseNonce(), Delta: true, InitialVersions: r.GetInitialResourceVersions()}, r.GetErrorDetail().GetMessage())
			return nil
		},
	}
}

// slogAdapter makes a *slog.Logger a go-control-plane logger. The cache
// logs every request at Info: that goes to Debug here.
type slogAdapter struct{ l *slog.Logger }

// Debugf logs at Debug.
func (a slogAdapter) Debugf(f string, args ...any) { a.l.Debug(fmt.Sprintf(f, args...)) }

// Infof logs at Debug (see slogAdapter).
func (a slogAdapter) Infof(f string, args ...any) { a.l.Debug(fmt.Sprintf(f, args...)) }

// Warnf logs at Warn.
func (a slogAdapter) Warnf(f string, args ...any) { a.l.Warn(fmt.Sprintf(f, args...)) }

// Errorf logs at Error.
func (a slogAdapter) Errorf(f string, args ...any) { a.l.Error(fmt.Sprintf(f, args...)) }
