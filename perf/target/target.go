// Package target owns the systems under test of the perf harness: the
// backend reached directly, meshagent, nginx and haproxy. Each target is
// configured by perf (config files in a temporary directory), started on
// loopback in front of the backend, probed until it serves, measured by
// its process id, and stopped. A target whose binary is missing or that
// fails to start reports ErrUnavailable so scenarios can skip it with the
// reason. It does not generate load nor build reports.
package target

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/meshagent/meshagent/perf/load"
)

// ErrUnavailable means a target cannot run here (binary missing, failed to
// start or never became ready); the wrapped text says why.
var ErrUnavailable = errors.New("target: unavailable")

// Backend is where targets forward to.
type Backend struct {
	// HTTPAddr serves HTTP/1.1 and h2c, GRPCAddr the echo service,
	// TCPAddr the TCP echo/bulk modes.
	HTTPAddr, GRPCAddr, TCPAddr string
	// PID is the backend's process when it runs as a child (0: in-process).
	PID int
}

// Endpoints are a started target's front addresses per protocol; an empty
// address means the target does not serve that protocol.
type Endpoints struct {
	HTTP1, H2, GRPC, TCP string
}

// For returns the address serving protocol p ("" when none).
func (e Endpoints) For(p load.Protocol) string {
	switch p {
	case load.HTTP1:
		return e.HTTP1
	case load.H2:
		return e.H2
	case load.GRPC, load.GRPCStream:
		return e.GRPC
	case load.TCP, load.TCPBulk:
		return e.TCP
	}
	return ""
}

// Target is one system under test. Start and Stop are called once each, in
// that order, from one goroutine.
type Target interface {
	// Name is the short name used in reports ("direct", "nginx", ...).
	Name() string
	// Start configures and launches the target in front of b and returns
	// once it serves HTTP/1.1 (or its endpoints otherwise answer). Errors
	// wrapping ErrUnavailable mean "skip this target".
	Start(ctx context.Context, b Backend) (Endpoints, error)
	// PID is the process whose CPU and memory are reported (0: none).
	PID() int
	// Stop terminates the target and removes its temporary files.
	Stop() error
}

// Direct is the backend itself, without a proxy.
type Direct struct{ pid int }

// Name implements Target.
func (*Direct) Name() string { return "direct" }

// Start implements Target; it only records the backend's addresses.
func (d *Direct) Start(_ context.Context, b Backend) (Endpoints, error) {
	d.pid = b.PID
	return Endpoints{HTTP1: b.HTTPAddr, H2: b.HTTPAddr, GRPC: b.GRPCAddr, TCP: b.TCPAddr}, nil
}

// PID implements Target: the backend's process, when it is a child.
func (d *Direct) PID() int { return d.pid }

// Stop implements Target; the backend is stopped by its owner.
func (*Direct) Stop() error { return nil }

func freeAddrs(n int) ([]string, error) {
	// Hold all listeners open until every port is picked so they differ.
	lns := make([]net.Listener, 0, n)
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	out := make([]string, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("target: find a free port: %w", err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	return out, nil
}

var (
	_ Target = (*Direct)(nil)
	_ Target = (*Nginx)(nil)
	_ Target = (*HAProxy)(nil)
	_ Target = (*Meshagent)(nil)
)
