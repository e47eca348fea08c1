// Package demo is the environment of `meshagent demo` (`make run`): an
// embedded xDS control plane (go-control-plane's ADS server) and two HTTP
// backends, all on loopback, plus the xDS configuration that shows
// routing, an 80/20 weighted split and priority failover once a sidecar
// (`meshagent run --xds`) connects. It owns no sidecar logic itself.
package demo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshagent/meshagent/xds/controlplane"
)

// NodeID is the node id the demo configuration is published for.
const NodeID = "demo.sidecar"

// Options configure Start.
type Options struct {
	// Listen is the sidecar's HTTP listener pushed over LDS (default
	// 127.0.0.1:10080).
	Listen string
	// ControlPlane is the ADS address (default 127.0.0.1:0: any port).
	ControlPlane string
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
}

// Env is a running demo environment.
type Env struct {
	// ControlPlane serves the demo configuration for NodeID.
	ControlPlane *controlplane.Server
	// Listen is the sidecar listener the configuration declares.
	Listen string
	// BackendA and BackendB are the backends' addresses; Dead is an
	// address nothing listens on (the failover cluster's first choice).
	BackendA, BackendB, Dead string

	servers []*http.Server
}

// backend answers every request with its name, so curl shows who served.
func backend(name string) (*http.Server, net.Listener, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, fmt.Errorf("demo: backend %s: %w", name, err)
	}
	s := &http.Server{
		ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Backend", name)
			fmt.Fprintf(w, "%s served %s %s\n", name, r.Method, r.URL.Path)
		}),
	}
	go func() { _ = s.Serve(l) }()
	return s, l, nil
}

// deadAddr returns a loopback address with no listener.
func deadAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("demo: %w", err)
	}
	a := l.Addr().String()
	return a, l.Close()
}

// Start starts the backends and the control plane and publishes the
// configuration.
func Start(ctx context.Context, o Options) (*Env, error) {
	if o.Listen == "" {
		o.Listen = "127.0.0.1:10080"
	}
	if o.ControlPlane == "" {
		o.ControlPlane = "127.0.0.1:0"
	}
	e := &Env{Listen: o.Listen}
	for i, name := range []string{"backend-a", "backend-b"} {
		s, l, err := backend(name)
		if err != nil {
			e.Close()
			return nil, err
		}
		e.servers = append(e.servers, s)
		if i == 0 {
			e.BackendA = l.Addr().String()
		} else {
			e.BackendB = l.Addr().String()
		}
	}
	var err error
	if e.Dead, err = deadAddr(); err != nil {
		e.Close()
		return nil, err
	}
	if e.ControlPlane, err = controlplane.Start(o.ControlPlane, o.Logger); err != nil {
		e.Close()
		return nil, err
	}
	if err := e.ControlPlane.SetSnapshot(ctx, NodeID, "demo-1", Config(e.Listen, e.BackendA, e.BackendB, e.Dead)); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// Close stops everything Start started.
func (e *Env) Close() {
	for _, s := range e.servers {
		_ = s.Close()
	}
	if e.ControlPlane != nil {
		e.ControlPlane.Stop()
	}
}

// Config is the demo configuration: listener listen with route table
// "demo" (RDS) over EDS clusters:
//
//	/a         -> backend-a
//	/b         -> backend-b
//	/split     -> backend-a 80%, backend-b 20% (weighted_clusters)
//	/failover  -> priority 0: dead, priority 1: backend-b (retry on connect failure)
func Config(listen, a, b, dead string) controlplane.Resources {
	failover := controlplane.PrefixRoute("failover", "/failover", "failover")
	failover.GetRoute().RetryPolicy = &routev3.RetryPolicy{RetryOn: "connect-failure", NumRetries: wrapperspb.UInt32(2)}
	return controlplane.Resources{
		Clusters: []*controlplane.Cluster{
			controlplane.EDSCluster("backend-a"), controlplane.EDSCluster("backend-b"), controlplane.EDSCluster("failover"),
		},
		Endpoints: []*controlplane.CLA{
			controlplane.Endpoints("backend-a", controlplane.Endpoint{Addr: a}),
			controlplane.Endpoints("backend-b", controlplane.Endpoint{Addr: b}),
			controlplane.Endpoints("failover", controlplane.Endpoint{Addr: dead, Priority: 0}, controlplane.Endpoint{Addr: b, Priority: 1}),
		},
		Listeners: []*controlplane.Listener{controlplane.HTTPListener("demo-http", listen, "demo")},
		Routes: []*controlplane.RouteConfiguration{controlplane.RouteConfig("demo",
			controlplane.VirtualHost("demo", []string{"*"},
				controlplane.PrefixRoute("a", "/a", "backend-a"),
				controlplane.PrefixRoute("b", "/b", "backend-b"),
				controlplane.WeightedRoute("split", "/split",
					controlplane.WeightedCluster{Name: "backend-a", Weight: 80},
					controlplane.WeightedCluster{Name: "backend-b", Weight: 20}),
				failover,
			))},
	}
}

// CurlLines are the commands that show the demo working.
func (e *Env) CurlLines(admin string) []string {
	base := "http://" + e.Listen
	lines := []string{
		"# routing by path",
		"curl -s " + base + "/a",
		"curl -s " + base + "/b",
		"# weighted split 80/20 (count who served 10 requests)",
		"for i in $(seq 10); do curl -s " + base + "/split; done | sort | uniq -c",
		"# failover: the priority-0 endpoint is down, priority 1 answers",
		"curl -s " + base + "/failover",
	}
	if admin != "" {
		lines = append(lines,
			"# admin: readiness, sync status, config dump",
			"curl -s http://"+admin+"/ready",
			"curl -s http://"+admin+"/xds_status",
			"curl -s http://"+admin+"/config_dump",
		)
	}
	return lines
}

// ErrNotReady is returned by WaitHTTP when the sidecar does not serve in time.
var ErrNotReady = errors.New("demo: sidecar did not serve in time")

// WaitHTTP polls url until it answers 200 or timeout passes.
func WaitHTTP(ctx context.Context, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%w: %s", ErrNotReady, url)
}
