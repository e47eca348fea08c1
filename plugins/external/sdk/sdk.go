// Package sdk makes a meshagent out-of-process plugin a short main:
//
//	func main() {
//		sdk.Serve(sdk.Plugin{
//			Configure:      func(name string, raw []byte) (any, error) { ... },
//			RequestHeaders: func(conf any, r *pluginv1.HTTPRequest) (*pluginv1.Mutation, error) { ... },
//		})
//	}
//
// Serve checks the magic cookie, listens on a unix socket, registers the gRPC
// health service "plugin" as SERVING, prints the handshake line and serves
// until meshagent stops it (SIGTERM) or goes away.
package sdk

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/meshagent/meshagent/plugins/external"
	"github.com/meshagent/meshagent/plugins/external/pluginv1"
)

// Phase is a function run in one phase with the decoded configuration.
type (
	RequestFunc  func(conf any, r *pluginv1.HTTPRequest) (*pluginv1.Mutation, error)
	ResponseFunc func(conf any, r *pluginv1.HTTPResponse) (*pluginv1.Mutation, error)
)

// Plugin is the implementation served. Configure is required; a nil phase
// function answers with an empty Mutation.
type Plugin struct {
	// Configure validates and decodes a configuration; an error is sent to
	// meshagent as INVALID_ARGUMENT with its text.
	Configure       func(name string, raw []byte) (any, error)
	RequestHeaders  RequestFunc
	RequestBody     RequestFunc
	ResponseHeaders ResponseFunc
	ResponseBody    ResponseFunc
}

// Serve runs p; it returns only on a fatal error, after printing it.
func Serve(p Plugin) {
	if err := serve(p); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func serve(p Plugin) error {
	if os.Getenv(external.CookieKey) != external.CookieValue {
		return fmt.Errorf("this binary is a meshagent plugin: meshagent starts it (the %s environment variable is not set)", external.CookieKey)
	}
	if p.Configure == nil {
		return fmt.Errorf("sdk: Plugin.Configure is required")
	}
	dir := os.Getenv("MESHAGENT_PLUGIN_SOCKET_DIR")
	if dir == "" {
		dir = os.TempDir()
	}
	sock := filepath.Join(dir, "plugin-"+strconv.Itoa(os.Getpid())+".sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("sdk: listen: %w", err)
	}
	defer os.Remove(sock)
	gs := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus(external.HealthService, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	pluginv1.RegisterPluginServer(gs, &server{p: p})

	errc := make(chan error, 1)
	go func() { errc <- gs.Serve(ln) }()
	fmt.Println(external.Handshake{Core: external.CoreProtocolVersion, App: external.AppProtocolVersion, Network: "unix", Addr: sock})

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	ppid := os.Getppid()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case err := <-errc:
			return err
		case <-sig:
			gs.GracefulStop()
			return nil
		case <-tick.C:
			if os.Getppid() != ppid { // meshagent went away
				gs.Stop()
				return nil
			}
		}
	}
}

// server adapts Plugin to the generated service.
type server struct {
	pluginv1.UnimplementedPluginServer
	p     Plugin
	next  atomic.Uint64
	confs sync.Map // token -> decoded conf
}

func (s *server) Configure(_ context.Context, r *pluginv1.ConfigureRequest) (*pluginv1.ConfigureResponse, error) {
	c, err := s.p.Configure(r.Name, r.Config)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	tok := s.next.Add(1)
	s.confs.Store(tok, c)
	return &pluginv1.ConfigureResponse{Token: tok}, nil
}

func (s *server) conf(tok uint64) (any, error) {
	c, ok := s.confs.Load(tok)
	if !ok {
		return nil, status.Errorf(codes.NotFound, "unknown configuration token %d", tok)
	}
	return c, nil
}

func (s *server) req(f RequestFunc, r *pluginv1.HTTPRequest) (*pluginv1.Mutation, error) {
	c, err := s.conf(r.Token)
	if err != nil || f == nil {
		return &pluginv1.Mutation{}, err
	}
	return f(c, r)
}

func (s *server) resp(f ResponseFunc, r *pluginv1.HTTPResponse) (*pluginv1.Mutation, error) {
	c, err := s.conf(r.Token)
	if err != nil || f == nil {
		return &pluginv1.Mutation{}, err
	}
	return f(c, r)
}

func (s *server) RequestHeaders(_ context.Context, r *pluginv1.HTTPRequest) (*pluginv1.Mutation, error) {
	return s.req(s.p.RequestHeaders, r)
}

func (s *server) RequestBody(_ context.Context, r *pluginv1.HTTPRequest) (*pluginv1.Mutation, error) {
	return s.req(s.p.RequestBody, r)
}

func (s *server) ResponseHeaders(_ context.Context, r *pluginv1.HTTPResponse) (*pluginv1.Mutation, error) {
	return s.resp(s.p.ResponseHeaders, r)
}

func (s *server) ResponseBody(_ context.Context, r *pluginv1.HTTPResponse) (*pluginv1.Mutation, error) {
	return s.resp(s.p.ResponseBody, r)
}
