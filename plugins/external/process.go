package external

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/meshagent/meshagent/plugins/external/pluginv1"
)

// ErrUnavailable is returned by calls while the child is not serving
// (starting, restarting, unhealthy or stopped).
var ErrUnavailable = errors.New("external: plugin not serving")

// State is the supervisor's view of a child.
type State int32

// States of a plugin child.
const (
	StateStarting State = iota
	StateServing
	StateBackoff
	StateStopped
)

func (s State) String() string {
	switch s {
	case StateStarting:
		return "starting"
	case StateServing:
		return "serving"
	case StateBackoff:
		return "backoff"
	case StateStopped:
		return "stopped"
	}
	return fmt.Sprintf("State(%d)", int32(s))
}

// Config says how to run one plugin process.
type Config struct {
	// Name identifies the plugin in logs, metrics and errors.
	Name string
	// Path is the executable; Args and Env are added to its command line and
	// to meshagent's environment.
	Path string
	Args []string
	Env  []string
	// StartTimeout bounds the wait for the handshake line (default 10s).
	StartTimeout time.Duration
	// HealthInterval is the period of gRPC health checks (default 1s); a
	// child failing 3 checks in a row is killed and restarted.
	HealthInterval time.Duration
	// MinBackoff and MaxBackoff bound the restart delay, which doubles after
	// each failed start and resets after a child served for 10s (defaults
	// 100ms and 10s).
	MinBackoff, MaxBackoff time.Duration
	// Logger receives the supervisor's logs and the child's stderr.
	Logger *slog.Logger
}

// conn is one running, handshaken child.
type conn struct {
	gen    uint64
	client pluginv1.PluginClient
	health healthpb.HealthClient
	cc     *grpc.ClientConn
	cmd    *exec.Cmd
	exited chan struct{}
}

// Process supervises one plugin child. Its methods are safe for concurrent
// use. Calls made while the child is down fail fast with ErrUnavailable.
type Process struct {
	cfg      Config
	log      *slog.Logger
	cur      atomic.Pointer[conn]
	state    atomic.Int32
	restarts atomic.Int64
	lastErr  atomic.Pointer[string]
	cancel   context.CancelFunc
	done     chan struct{}
	started  chan error
	gen      uint64
}

// Start launches the child and its supervisor. It waits for the first start
// attempt and returns its error (the supervisor keeps retrying in the
// background either way, until Close).
func Start(cfg Config) (*Process, error) {
	if cfg.Name == "" || cfg.Path == "" {
		return nil, errors.New("external: plugin needs a name and a path")
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 10 * time.Second
	}
	if cfg.HealthInterval <= 0 {
		cfg.HealthInterval = time.Second
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = 10 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Process{cfg: cfg, log: log.With("plugin", cfg.Name), cancel: cancel,
		done: make(chan struct{}), started: make(chan error, 1)}
	go p.supervise(ctx)
	return p, <-p.started
}

// State reports the child's current state.
func (p *Process) State() State { return State(p.state.Load()) }

// PID is the running child's process id, or 0 while none runs.
func (p *Process) PID() int {
	if c := p.cur.Load(); c != nil {
		return c.cmd.Process.Pid
	}
	return 0
}

// Restarts counts the child's restarts after the first start.
func (p *Process) Restarts() int64 { return p.restarts.Load() }

// LastError is the last start or health error, or "".
func (p *Process) LastError() string {
	if s := p.lastErr.Load(); s != nil {
		return *s
	}
	return ""
}

// Close stops the child (SIGTERM, then SIGKILL after 2s) and the supervisor.
func (p *Process) Close() error {
	p.cancel()
	<-p.done
	return nil
}

func (p *Process) supervise(ctx context.Context) {
	defer close(p.done)
	defer p.state.Store(int32(StateStopped))
	backoff := p.cfg.MinBackoff
	first := true
	for {
		p.state.Store(int32(StateStarting))
		c, err := p.launch(ctx)
		if first {
			p.started <- err
			first = false
		}
		if err == nil {
			since := time.Now()
			err = p.serve(ctx, c)
			if time.Since(since) > 10*time.Second {
				backoff = p.cfg.MinBackoff
			}
		}
		if ctx.Err() != nil {
			return
		}
		msg := err.Error()
		p.lastErr.Store(&msg)
		p.log.Error("plugin down, restarting", "err", err, "backoff", backoff)
		p.state.Store(int32(StateBackoff))
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		p.restarts.Add(1)
		backoff = min(backoff*2, p.cfg.MaxBackoff)
	}
}

// launch starts the child and completes the handshake and first health
// check; on error the child is gone.
func (p *Process) launch(ctx context.Context) (*conn, error) {
	dir, err := os.MkdirTemp("", "meshagent-plugin-")
	if err != nil {
		return nil, fmt.Errorf("plugin %s: socket dir: %w", p.cfg.Name, err)
	}
	cmd := exec.Command(p.cfg.Path, p.cfg.Args...)
	cmd.Env = append(append(os.Environ(), p.cfg.Env...),
		CookieKey+"="+CookieValue, "MESHAGENT_PLUGIN_SOCKET_DIR="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("plugin %s: start %s: %w", p.cfg.Name, p.cfg.Path, err)
	}
	tail := &tailBuffer{}
	exited := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); p.forwardStderr(stderr, tail) }()
	go func() {
		wg.Wait() // stderr fully read before Wait closes the pipe
		_ = cmd.Wait()
		os.RemoveAll(dir)
		close(exited)
	}()
	fail := func(err error) (*conn, error) {
		stopChild(cmd, exited)
		if t := tail.String(); t != "" {
			err = fmt.Errorf("%w (stderr: %s)", err, t)
		}
		return nil, err
	}

	lines := make(chan string, 1)
	go func() {
		br := bufio.NewReader(stdout)
		line, err := br.ReadString('\n')
		if err != nil && line == "" {
			close(lines)
			return
		}
		lines <- line
		_, _ = io.Copy(io.Discard, br) // keep the pipe drained
	}()
	var line string
	select {
	case l, ok := <-lines:
		if !ok {
			<-exited
			return fail(fmt.Errorf("plugin %s: exited before its handshake: %s", p.cfg.Name, exitText(cmd)))
		}
		line = l
	case <-exited:
		return fail(fmt.Errorf("plugin %s: exited before its handshake: %s", p.cfg.Name, exitText(cmd)))
	case <-time.After(p.cfg.StartTimeout):
		return fail(fmt.Errorf("plugin %s: no handshake line on stdout within %s", p.cfg.Name, p.cfg.StartTimeout))
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	hs, err := ParseHandshake(line)
	if err != nil {
		return fail(fmt.Errorf("plugin %s: %w", p.cfg.Name, err))
	}
	target := hs.Addr
	if hs.Network == "unix" {
		target = "unix://" + hs.Addr
	}
	cc, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fail(fmt.Errorf("plugin %s: dial %s: %w", p.cfg.Name, hs.Addr, err))
	}
	c := &conn{client: pluginv1.NewPluginClient(cc), health: healthpb.NewHealthClient(cc), cc: cc, cmd: cmd, exited: exited}
	if err := p.check(ctx, c); err != nil {
		cc.Close()
		return fail(fmt.Errorf("plugin %s: %w", p.cfg.Name, err))
	}
	p.gen++
	c.gen = p.gen
	p.cur.Store(c)
	p.state.Store(int32(StateServing))
	p.log.Info("plugin serving", "addr", hs.Addr, "pid", cmd.Process.Pid)
	return c, nil
}

// check asks the child's health service for "plugin".
func (p *Process) check(ctx context.Context, c *conn) error {
	ctx, cancel := context.WithTimeout(ctx, max(p.cfg.HealthInterval, time.Second))
	defer cancel()
	r, err := c.health.Check(ctx, &healthpb.HealthCheckRequest{Service: HealthService})
	if err != nil {
		return fmt.Errorf("gRPC health check of service %q: %w", HealthService, err)
	}
	if r.Status != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("gRPC health of service %q is %s", HealthService, r.Status)
	}
	return nil
}

// serve monitors a running child until it exits, fails 3 health checks in
// a row, or ctx ends; the child is stopped on return.
func (p *Process) serve(ctx context.Context, c *conn) error {
	defer func() {
		p.cur.CompareAndSwap(c, nil)
		c.cc.Close()
		stopChild(c.cmd, c.exited)
	}()
	t := time.NewTicker(p.cfg.HealthInterval)
	defer t.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.exited:
			return fmt.Errorf("plugin %s: exited: %s", p.cfg.Name, exitText(c.cmd))
		case <-t.C:
			if err := p.check(ctx, c); err != nil {
				failures++
				p.log.Warn("plugin health check failed", "err", err, "failures", failures)
				if failures >= 3 {
					return fmt.Errorf("plugin %s: unhealthy: %w", p.cfg.Name, err)
				}
				continue
			}
			failures = 0
		}
	}
}

func (p *Process) forwardStderr(r io.Reader, tail *tailBuffer) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64*1024)
	for sc.Scan() {
		line := sc.Text()
		tail.add(line)
		p.log.Info("plugin stderr", "line", line)
	}
}

// stopChild sends SIGTERM, waits up to 2s, then SIGKILLs.
func stopChild(cmd *exec.Cmd, exited <-chan struct{}) {
	if cmd.Process == nil {
		return
	}
	select {
	case <-exited:
		return
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(2 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

func exitText(cmd *exec.Cmd) string {
	if cmd.ProcessState == nil {
		return "still running"
	}
	return cmd.ProcessState.String()
}

// tailBuffer keeps the last few stderr lines for error messages.
type tailBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (t *tailBuffer) add(l string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == 5 {
		t.lines = t.lines[1:]
	}
	t.lines = append(t.lines, l)
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, " | ")
}
