package target

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"text/template"
	"time"

	"github.com/meshagent/meshagent/perf/load"
)

// HAProxy runs haproxy in the foreground with one thread (nbthread 1) as
// an HTTP reverse proxy (keep-alive, connection reuse), an h2c and gRPC
// front end, and a TCP proxy.
type HAProxy struct {
	// Bin is the haproxy binary; empty means "haproxy" on PATH.
	Bin string

	dir  string
	proc *process
}

// Name implements Target.
func (*HAProxy) Name() string { return "haproxy" }

var haproxyConf = template.Must(template.New("haproxy").Parse(`global
	nbthread 1
	maxconn 1000
defaults
	mode http
	timeout connect 5s
	timeout client 120s
	timeout server 120s
	option http-keep-alive
	http-reuse always
frontend fe_http1
	bind {{.E.HTTP1}}
	default_backend be_http
frontend fe_h2
	bind {{.E.H2}} proto h2
	default_backend be_http
frontend fe_grpc
	bind {{.E.GRPC}} proto h2
	default_backend be_grpc
backend be_http
	server s1 {{.B.HTTPAddr}}
backend be_grpc
	server s1 {{.B.GRPCAddr}} proto h2
listen tcp
	mode tcp
	bind {{.E.TCP}}
	server s1 {{.B.TCPAddr}}
`))

// Start implements Target.
func (h *HAProxy) Start(ctx context.Context, b Backend) (Endpoints, error) {
	bin, err := exec.LookPath(orDefault(h.Bin, "haproxy"))
	if err != nil {
		return Endpoints{}, fmt.Errorf("%w: haproxy not installed (%v)", ErrUnavailable, err)
	}
	addrs, err := freeAddrs(4)
	if err != nil {
		return Endpoints{}, err
	}
	e := Endpoints{HTTP1: addrs[0], H2: addrs[1], GRPC: addrs[2], TCP: addrs[3]}
	if h.dir, err = os.MkdirTemp("", "perf-haproxy-"); err != nil {
		return Endpoints{}, fmt.Errorf("target: haproxy temp dir: %w", err)
	}
	conf := filepath.Join(h.dir, "haproxy.cfg")
	f, err := os.Create(conf)
	if err != nil {
		return Endpoints{}, fmt.Errorf("target: haproxy config: %w", err)
	}
	err = haproxyConf.Execute(f, map[string]any{"B": b, "E": e})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Endpoints{}, fmt.Errorf("target: haproxy config: %w", err)
	}
	if h.proc, err = startProcess(bin, []string{"-db", "-f", conf}, nil, h.dir); err != nil {
		return Endpoints{}, err
	}
	if err := h.proc.waitReady(ctx, 5*time.Second, probeProtocol(load.HTTP1, e.HTTP1)); err != nil {
		return Endpoints{}, err
	}
	return e, nil
}

// PID implements Target.
func (h *HAProxy) PID() int {
	if h.proc == nil {
		return 0
	}
	return h.proc.pid()
}

// Stop implements Target.
func (h *HAProxy) Stop() error {
	var err error
	if h.proc != nil {
		err = h.proc.stop()
	}
	if h.dir != "" {
		_ = os.RemoveAll(h.dir)
	}
	return err
}
