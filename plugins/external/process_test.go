package external_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshagent/meshagent/plugins/examples/goheader/header"
	"github.com/meshagent/meshagent/plugins/external"
	"github.com/meshagent/meshagent/plugins/external/pluginv1"
	"github.com/meshagent/meshagent/plugins/external/sdk"
)

// The test binary doubles as plugin processes: MESHAGENT_TEST_ROLE selects
// the behaviour when the supervisor executes it.
func TestMain(m *testing.M) {
	switch os.Getenv("MESHAGENT_TEST_ROLE") {
	case "":
		os.Exit(m.Run())
	case "good":
		sdk.Serve(header.Plugin())
	case "garbage":
		fmt.Println("hello, I am not a handshake")
		time.Sleep(10 * time.Second)
	case "exit":
		fmt.Fprintln(os.Stderr, "fatal: cannot open /nonexistent/config")
		os.Exit(3)
	case "silent":
		time.Sleep(30 * time.Second)
	}
	os.Exit(0)
}

func self(t testing.TB) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

type logBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func start(t *testing.T, role string, logs *logBuf) (*external.Process, error) {
	t.Helper()
	var log *slog.Logger
	if logs != nil {
		log = slog.New(slog.NewTextHandler(logs, nil))
	}
	p, err := external.Start(external.Config{
		Name: "test-" + role, Path: self(t), Env: []string{"MESHAGENT_TEST_ROLE=" + role},
		StartTimeout: 2 * time.Second, HealthInterval: 100 * time.Millisecond,
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Logger: log,
	})
	if p != nil {
		t.Cleanup(func() { p.Close() })
	}
	return p, err
}

func TestCallsAndConfigure(t *testing.T) {
	p, err := start(t, "good", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c, err := p.Configure(ctx, []byte(`{"header":"x-plugin","value":"go","deny_path":"/deny"}`))
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.RequestHeaders(ctx, &pluginv1.HTTPRequest{Method: "GET", Path: "/ok"})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.SetHeaders) != 1 || m.SetHeaders[0].Key != "x-plugin" || m.SetHeaders[0].Value != "go" {
		t.Fatalf("mutation = %v", m)
	}
	m, err = c.RequestHeaders(ctx, &pluginv1.HTTPRequest{Method: "GET", Path: "/deny"})
	if err != nil || m.Status != 403 {
		t.Fatalf("deny: %v %v", m, err)
	}
	_, err = p.Configure(ctx, []byte(`{"value":"x"}`))
	if !errors.Is(err, external.ErrInvalidConfig) || !strings.Contains(err.Error(), "header: required") {
		t.Fatalf("bad config error = %v", err)
	}
	_, err = p.Configure(ctx, []byte(`{"header":"a","typo":1}`))
	if !errors.Is(err, external.ErrInvalidConfig) || !strings.Contains(err.Error(), "typo") {
		t.Fatalf("unknown field error = %v", err)
	}
}

func TestRestartAfterKill(t *testing.T) {
	logs := &logBuf{}
	p, err := start(t, "good", logs)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c, err := p.Configure(ctx, []byte(`{"header":"x-a","value":"1"}`))
	if err != nil {
		t.Fatal(err)
	}
	pid := childPID(t, logs)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// While down, calls fail fast with ErrUnavailable; then the child is back
	// and the same Conf works again (re-configured transparently).
	sawDown := false
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		_, err := c.RequestHeaders(ctx, &pluginv1.HTTPRequest{Path: "/"})
		if errors.Is(err, external.ErrUnavailable) {
			sawDown = true
		}
		if err == nil && p.Restarts() >= 1 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if p.Restarts() < 1 || p.State() != external.StateServing {
		t.Fatalf("restarts=%d state=%s err=%s", p.Restarts(), p.State(), p.LastError())
	}
	if !sawDown && !strings.Contains(p.LastError(), "exited") {
		t.Fatalf("no sign of the kill: %s", p.LastError())
	}
	if _, err := c.RequestHeaders(ctx, &pluginv1.HTTPRequest{Path: "/"}); err != nil {
		t.Fatal(err)
	}
}

func childPID(t *testing.T, logs *logBuf) int {
	t.Helper()
	for _, f := range strings.Fields(logs.String()) {
		if strings.HasPrefix(f, "pid=") {
			var pid int
			fmt.Sscanf(f, "pid=%d", &pid)
			return pid
		}
	}
	t.Fatalf("no pid in logs: %s", logs.String())
	return 0
}

func TestHandshakeFaults(t *testing.T) {
	for _, tc := range []struct {
		role, want string
	}{
		{"garbage", `bad plugin handshake: want CORE|APP|NETWORK|ADDR|grpc, got 1 fields in "hello, I am not a handshake"`},
		{"exit", "exited before its handshake: exit status 3 (stderr: fatal: cannot open /nonexistent/config)"},
		{"silent", "no handshake line on stdout within 2s"},
	} {
		t.Run(tc.role, func(t *testing.T) {
			_, err := start(t, tc.role, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestWrongCookie(t *testing.T) {
	// Run by hand (no cookie): the plugin refuses with a clear message.
	out, err := runDirect(self(t), "MESHAGENT_TEST_ROLE=good")
	if err == nil || !strings.Contains(out, "this binary is a meshagent plugin") {
		t.Fatalf("out=%q err=%v", out, err)
	}
}

func TestParseHandshake(t *testing.T) {
	for _, tc := range []struct {
		line string
		err  string
	}{
		{"1|1|unix|/tmp/x.sock|grpc\n", ""},
		{"1|1|tcp|127.0.0.1:1234|grpc|", ""},
		{"2|1|unix|/x|grpc", "core protocol version"},
		{"1|7|unix|/x|grpc", "app protocol version"},
		{"1|1|udp|/x|grpc", "network"},
		{"1|1|unix||grpc", "empty address"},
		{"1|1|unix|/x|netrpc", "protocol"},
		{"", "got 1 fields"},
	} {
		_, err := external.ParseHandshake(tc.line)
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%q: err = %v, want %q", tc.line, err, tc.err)
		}
	}
}

func FuzzParseHandshake(f *testing.F) {
	f.Add("1|1|unix|/tmp/x.sock|grpc")
	f.Add("1|1|tcp|127.0.0.1:1|grpc|cert|true")
	f.Fuzz(func(t *testing.T, line string) {
		h, err := external.ParseHandshake(line)
		if err == nil {
			h2, err := external.ParseHandshake(h.String())
			if err != nil || h2 != h {
				t.Fatalf("round trip %q -> %q: %v", line, h.String(), err)
			}
		}
	})
}
