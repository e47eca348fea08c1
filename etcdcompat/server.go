// Package etcdcompat serves meshagent's revisioned store (package
// etcdcompat/store) as an etcd v3.5 server: the gRPC services KV, Watch,
// Lease, Maintenance, Cluster and Auth with etcd's own protobuf types, and,
// on the same port, etcd's HTTP/JSON gateway (/v3/..., /v3beta/...,
// /v3alpha/...) plus GET /version, so that clientv3, etcdctl and Apache
// APISIX (lua-resty-etcd) can use meshagent as if it were etcd.
//
// The gateway is etcd's own generated grpc-gateway v1 code
// (go.etcd.io/etcd/api/v3/etcdserverpb/gw) connected in-process to the gRPC
// server, with the marshaler options etcd 3.5 uses, so the JSON shapes,
// error bodies and streaming framing are etcd's by construction.
//
// It owns: the wire protocols, etcd's request validation done at its RPC
// layer (empty keys, request size, txn limits), response headers, the
// mapping of store errors to etcd's rpctypes errors (errors.go, the only
// place), and the optional user/password authentication. It does not own
// the data, revisions, leases or watch history (package store) nor the
// APISIX schema (package apisix, plugged into the store as a Decoder).
package etcdcompat

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/soheilhy/cmux"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/meshagent/meshagent/etcdcompat/store"
)

// Versions reported by GET /version and Maintenance.Status: the etcd
// release whose behaviour is emulated and its cluster version.
const (
	ServerVersion  = "3.5.21"
	ClusterVersion = "3.5.0"
)

// Defaults of Options, equal to etcd 3.5's defaults.
const (
	DefaultMaxRequestBytes = 1536 * 1024 // etcd --max-request-bytes
	DefaultMaxTxnOps       = 128         // etcd --max-txn-ops
	DefaultTokenTTL        = 5 * time.Minute
	// DefaultProgressNotifyInterval is etcd's watch progress interval.
	DefaultProgressNotifyInterval = 10 * time.Minute
	defaultClusterID              = 0x6d657368616765 // "meshage"
	defaultMemberID               = 0x1d8e1b9a5c3f2e47
	defaultRaftTerm               = 2 // a single-member cluster after its first election
	grpcOverheadBytes             = 512 * 1024
)

// Sentinel errors of the package.
var (
	// ErrNoStore is returned by New when Options.Store is nil.
	ErrNoStore = errors.New("etcdcompat: Options.Store is required")
	// ErrAuthConfig is returned by New when only one of User and Password
	// is set.
	ErrAuthConfig = errors.New("etcdcompat: User and Password must be set together")
	// ErrServerClosed is returned by Serve after Close.
	ErrServerClosed = errors.New("etcdcompat: server closed")
)

// Options configure New.
type Options struct {
	// Store is the revisioned KV served; required. The server never closes
	// it.
	Store store.Store
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// Name is the member name reported by MemberList ("meshagent" if empty).
	Name string
	// ClusterID and MemberID are reported in every response header; zero
	// selects fixed non-zero defaults.
	ClusterID, MemberID uint64
	// User and Password, when both set, enable authentication: clients must
	// call Authenticate with them and present the token on every request,
	// exactly as with an etcd whose root user has this password.
	User, Password string
	// TokenTTL is how long an unused token stays valid (DefaultTokenTTL if
	// zero); every request carrying it extends it, as etcd's simple tokens.
	TokenTTL time.Duration
	// MaxRequestBytes limits the size of a write request
	// (DefaultMaxRequestBytes if zero); gRPC messages are limited to this
	// plus 512 KiB, as in etcd.
	MaxRequestBytes int
	// MaxTxnOps limits the operations of one txn branch (DefaultMaxTxnOps if
	// zero).
	MaxTxnOps int
	// ProgressNotifyInterval is how often watchers created with
	// progress_notify get a progress notification when no event reached
	// them since the last one (DefaultProgressNotifyInterval if zero, plus
	// up to 10% jitter, as etcd).
	ProgressNotifyInterval time.Duration
	// RangeCacheBytes bounds the cache of encoded large Range replies at
	// the current revision (DefaultRangeCacheBytes if zero; negative
	// disables it).
	RangeCacheBytes int
}

// Server is an etcd v3 server backed by a store.Store. Create it with New,
// run it with Serve, stop it with Close. Its methods are safe for
// concurrent use.
type Server struct {
	opts   Options
	st     store.Store
	log    *slog.Logger
	hdr    header
	rc     *rangeCache
	auth   *authenticator
	grpc   *grpc.Server
	gw     *gateway
	mu     sync.Mutex
	urls   []string
	lis    []net.Listener
	muxes  []cmux.CMux
	https  []*http.Server
	closed bool
}

// header fills response headers as etcd's v3rpc layer does.
type header struct {
	clusterID, memberID uint64
	rev                 func() int64
}

// fill sets cluster and member ids and raft term, and the current revision
// when the store left it zero. A nil header is allocated.
func (h header) fill(rh *pb.ResponseHeader) *pb.ResponseHeader {
	if rh == nil {
		rh = &pb.ResponseHeader{}
	}
	rh.ClusterId = h.clusterID
	rh.MemberId = h.memberID
	rh.RaftTerm = defaultRaftTerm
	if rh.Revision == 0 {
		rh.Revision = h.rev()
	}
	return rh
}

// at returns a header for revision rev (0 stays 0, as etcd's watch does).
func (h header) at(rev int64) *pb.ResponseHeader {
	return &pb.ResponseHeader{ClusterId: h.clusterID, MemberId: h.memberID, RaftTerm: defaultRaftTerm, Revision: rev}
}

// New validates o and builds a server; nothing listens until Serve.
func New(o Options) (*Server, error) {
	if o.Store == nil {
		return nil, ErrNoStore
	}
	if (o.User == "") != (o.Password == "") {
		return nil, ErrAuthConfig
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Name == "" {
		o.Name = "meshagent"
	}
	if o.ClusterID == 0 {
		o.ClusterID = defaultClusterID
	}
	if o.MemberID == 0 {
		o.MemberID = defaultMemberID
	}
	if o.TokenTTL <= 0 {
		o.TokenTTL = DefaultTokenTTL
	}
	if o.MaxRequestBytes <= 0 {
		o.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if o.MaxTxnOps <= 0 {
		o.MaxTxnOps = DefaultMaxTxnOps
	}
	if o.ProgressNotifyInterval <= 0 {
		o.ProgressNotifyInterval = DefaultProgressNotifyInterval
	}
	if o.RangeCacheBytes == 0 {
		o.RangeCacheBytes = DefaultRangeCacheBytes
	}
	s := &Server{opts: o, st: o.Store, log: o.Logger}
	if o.RangeCacheBytes > 0 {
		s.rc = newRangeCache(o.RangeCacheBytes)
	}
	s.hdr = header{clusterID: o.ClusterID, memberID: o.MemberID, rev: o.Store.Rev}
	s.auth = newAuthenticator(o.User, o.Password, o.TokenTTL)

	s.grpc = grpc.NewServer(
		grpc.ForceServerCodec(codec{rc: s.rc}),
		grpc.MaxRecvMsgSize(o.MaxRequestBytes+grpcOverheadBytes),
		grpc.MaxSendMsgSize(math.MaxInt32),
		grpc.MaxConcurrentStreams(math.MaxUint32),
		grpc.ChainUnaryInterceptor(s.auth.unaryInterceptor),
	)
	pb.RegisterKVServer(s.grpc, &kvServer{s: s})
	pb.RegisterWatchServer(s.grpc, &watchServer{s: s})
	pb.RegisterLeaseServer(s.grpc, &leaseServer{s: s})
	pb.RegisterClusterServer(s.grpc, &clusterServer{s: s})
	pb.RegisterMaintenanceServer(s.grpc, &maintenanceServer{s: s})
	pb.RegisterAuthServer(s.grpc, &authServer{s: s})
	hs := health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, hs)

	gw, err := newGateway(s)
	if err != nil {
		s.grpc.Stop()
		return nil, err
	}
	s.gw = gw
	return s, nil
}

// GRPCServer returns the gRPC server holding the etcd services, for callers
// that serve it on a listener of their own.
func (s *Server) GRPCServer() *grpc.Server { return s.grpc }

// Handler returns the HTTP handler of the JSON gateway and /version, for
// callers that serve HTTP/1.1 on a listener of their own.
func (s *Server) Handler() http.Handler { return s.gw.handler }

// Serve accepts gRPC (HTTP/2) and HTTP/1.1 connections on l, as etcd does
// on its client port, until Close. It returns ErrServerClosed after Close.
// Serve may be called for several listeners.
func (s *Server) Serve(l net.Listener) error {
	m := cmux.New(l)
	grpcL := m.Match(cmux.HTTP2())
	httpL := m.Match(cmux.HTTP1())
	hs := &http.Server{Handler: s.gw.handler, ReadHeaderTimeout: 30 * time.Second,
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = l.Close()
		return ErrServerClosed
	}
	s.urls = append(s.urls, "http://"+l.Addr().String())
	s.lis = append(s.lis, l)
	s.muxes = append(s.muxes, m)
	s.https = append(s.https, hs)
	s.mu.Unlock()

	errc := make(chan error, 3)
	go func() { errc <- s.grpc.Serve(grpcL) }()
	go func() { errc <- hs.Serve(httpL) }()
	go func() { errc <- m.Serve() }()
	s.log.Info("etcd emulation serving", "address", l.Addr().String(), "auth", s.auth.enabled())
	err := <-errc
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return ErrServerClosed
	}
	m.Close()
	_ = l.Close() // cmux does not close its root listener
	_ = hs.Close()
	return fmt.Errorf("etcdcompat: serve %s: %w", l.Addr(), err)
}

// clientURLs returns the URLs Serve listens on.
func (s *Server) clientURLs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.urls...)
}

// Close stops serving: listeners are closed and open streams (watches,
// keepalives) end. It does not close the store. Close is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	lis, muxes, https := s.lis, s.muxes, s.https
	s.mu.Unlock()
	for _, m := range muxes {
		m.Close()
	}
	for _, l := range lis {
		_ = l.Close() // cmux does not close its root listener
	}
	for _, h := range https {
		_ = h.Close()
	}
	s.gw.close()
	s.grpc.Stop()
	return nil
}
