package target

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/meshagent/meshagent/etcdcompat/apisix"
	"github.com/meshagent/meshagent/perf/load"
	"gopkg.in/yaml.v3"
)

// Meshagent runs `meshagent run --apisix-yaml FILE --http-listen ADDR
// --stream-listen ADDR --admin-listen ADDR [--etcd-listen ADDR]` with
// GOMAXPROCS=1 (unless set otherwise), from a standalone file perf
// generates. HTTP/1.1, h2c and gRPC share the HTTP listener; TCP goes to
// the stream listener.
type Meshagent struct {
	// Bin is the meshagent binary (default ./bin/meshagent).
	Bin string
	// Config is the standalone configuration; nil means DefaultConfig.
	Config *StandaloneConfig
	// Etcd also serves the etcd v3 emulation (see EtcdAddr).
	Etcd bool
	// Args are extra arguments appended to `meshagent run`.
	Args []string
	// GOMAXPROCS for the child (default 1).
	GOMAXPROCS int
	// ProbePath is requested over HTTP/1.1 until it answers 200 before
	// Start returns; empty means "/" when Config is nil, and a TCP connect
	// to the HTTP listener otherwise.
	ProbePath string
	// ReadyTimeout bounds the wait for readiness (default 10 s).
	ReadyTimeout time.Duration

	dir      string
	proc     *process
	etcdAddr string
	httpAddr string
}

// Name implements Target.
func (*Meshagent) Name() string { return "meshagent" }

// HTTPAddr is the HTTP listener's address once started.
func (m *Meshagent) HTTPAddr() string { return m.httpAddr }

// EtcdAddr is the etcd emulation's address once started with Etcd.
func (m *Meshagent) EtcdAddr() string { return m.etcdAddr }

// StandaloneConfig is the content of an apisix.yaml standalone file.
type StandaloneConfig struct {
	Routes       []apisix.Route
	Upstreams    []apisix.Upstream
	StreamRoutes []apisix.StreamRoute
}

// Route ids perf uses for its default configuration.
const (
	RouteHTTP = "perf-http"
	RouteGRPC = "perf-grpc"
	RouteTCP  = "perf-tcp"
)

// NodeOf returns the upstream node list for one host:port address.
func NodeOf(addr string) (apisix.Nodes, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("target: node address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return nil, fmt.Errorf("target: node port %q: %w", p, err)
	}
	return apisix.Nodes{{Host: h, Port: port, Weight: 1}}, nil
}

// DefaultConfig routes /perf.Echo/* (gRPC) and /* (HTTP) to the backend
// and one stream route to its TCP port.
func DefaultConfig(b Backend) (*StandaloneConfig, error) {
	hn, err1 := NodeOf(b.HTTPAddr)
	gn, err2 := NodeOf(b.GRPCAddr)
	tn, err3 := NodeOf(b.TCPAddr)
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, err
	}
	return &StandaloneConfig{
		Routes: []apisix.Route{
			{ID: RouteGRPC, URI: "/perf.Echo/*", Priority: 10, UpstreamID: RouteGRPC},
			{ID: RouteHTTP, URI: "/*", UpstreamID: RouteHTTP},
		},
		Upstreams: []apisix.Upstream{
			{ID: RouteHTTP, Type: "roundrobin", Nodes: hn},
			{ID: RouteGRPC, Type: "roundrobin", Scheme: "grpc", Nodes: gn},
			{ID: RouteTCP, Type: "roundrobin", Nodes: tn},
		},
		StreamRoutes: []apisix.StreamRoute{{ID: RouteTCP, UpstreamID: RouteTCP}},
	}, nil
}

// YAML renders c as an APISIX standalone file ending in the "#END" marker
// APISIX requires. Objects go through their JSON encoding, so the file has
// exactly the field names APISIX uses.
func (c *StandaloneConfig) YAML() ([]byte, error) {
	doc := map[string]any{}
	add := func(key string, v any, n int) error {
		if n == 0 {
			return nil
		}
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("target: encode %s: %w", key, err)
		}
		var generic []any
		if err := json.Unmarshal(b, &generic); err != nil {
			return fmt.Errorf("target: re-decode %s: %w", key, err)
		}
		doc[key] = generic
		return nil
	}
	if err := errors.Join(add("routes", c.Routes, len(c.Routes)), add("upstreams", c.Upstreams, len(c.Upstreams)),
		add("stream_routes", c.StreamRoutes, len(c.StreamRoutes))); err != nil {
		return nil, err
	}
	if len(doc) == 0 {
		return []byte("routes: []\n#END\n"), nil
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("target: encode yaml: %w", err)
	}
	return append(out, "#END\n"...), nil
}

// Start implements Target.
func (m *Meshagent) Start(ctx context.Context, b Backend) (Endpoints, error) {
	bin := orDefault(m.Bin, "./bin/meshagent")
	if st, err := os.Stat(bin); err != nil || st.IsDir() {
		return Endpoints{}, fmt.Errorf("%w: meshagent binary %s not found (build it with `make build` or pass --meshagent)", ErrUnavailable, bin)
	}
	cfg := m.Config
	probePath := m.ProbePath
	if cfg == nil {
		var err error
		if cfg, err = DefaultConfig(b); err != nil {
			return Endpoints{}, err
		}
		if probePath == "" {
			probePath = "/"
		}
	}
	y, err := cfg.YAML()
	if err != nil {
		return Endpoints{}, err
	}
	if m.dir, err = os.MkdirTemp("", "perf-meshagent-"); err != nil {
		return Endpoints{}, fmt.Errorf("target: meshagent temp dir: %w", err)
	}
	file := filepath.Join(m.dir, "apisix.yaml")
	if err := os.WriteFile(file, y, 0o600); err != nil {
		return Endpoints{}, fmt.Errorf("target: write %s: %w", file, err)
	}
	addrs, err := freeAddrs(4)
	if err != nil {
		return Endpoints{}, err
	}
	m.httpAddr = addrs[0]
	e := Endpoints{HTTP1: addrs[0], H2: addrs[0], GRPC: addrs[0], TCP: addrs[1]}
	args := []string{"run", "--apisix-yaml", file, "--http-listen", addrs[0], "--stream-listen", addrs[1], "--admin-listen", addrs[2]}
	if m.Etcd {
		m.etcdAddr = addrs[3]
		args = append(args, "--etcd-listen", addrs[3])
	}
	args = append(args, m.Args...)
	procs := m.GOMAXPROCS
	if procs <= 0 {
		procs = 1
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		return Endpoints{}, fmt.Errorf("target: meshagent path: %w", err)
	}
	if m.proc, err = startProcess(abs, args, []string{"GOMAXPROCS=" + strconv.Itoa(procs)}, m.dir); err != nil {
		return Endpoints{}, err
	}
	probe := func() error {
		c, err := net.DialTimeout("tcp", addrs[0], time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	}
	if probePath != "" {
		f, err := load.NewFactory(load.HTTP1, load.ClientConfig{Addr: addrs[0], Path: probePath, Timeout: time.Second})
		if err != nil {
			return Endpoints{}, err
		}
		probe = func() error {
			c := f.NewClient()
			defer c.Close()
			return c.Do(ctx)
		}
	}
	timeout := m.ReadyTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	if err := m.proc.waitReady(ctx, timeout, probe); err != nil {
		return Endpoints{}, err
	}
	if m.Etcd {
		if err := m.proc.waitReady(ctx, timeout, func() error {
			c, err := net.DialTimeout("tcp", m.etcdAddr, time.Second)
			if err != nil {
				return err
			}
			return c.Close()
		}); err != nil {
			return Endpoints{}, err
		}
	}
	return e, nil
}

// PID implements Target.
func (m *Meshagent) PID() int {
	if m.proc == nil {
		return 0
	}
	return m.proc.pid()
}

// Stop implements Target.
func (m *Meshagent) Stop() error {
	var err error
	if m.proc != nil {
		err = m.proc.stop()
	}
	if m.dir != "" {
		_ = os.RemoveAll(m.dir)
	}
	return err
}
