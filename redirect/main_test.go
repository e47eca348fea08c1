package redirect

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshagent/meshagent/redirect/netnstest"
)

// roleEnv selects a helper role for the test binary: the tests re-execute
// it through `ip netns exec` to run a separate proxy process inside a
// namespace, which they can then kill.
const roleEnv = "MESHAGENT_REDIRECT_TEST_ROLE"

func TestMain(m *testing.M) {
	switch os.Getenv(roleEnv) {
	case "":
		os.Exit(m.Run())
	case "gate-proxy":
		if err := gateProxyMain(); err != nil {
			fmt.Fprintln(os.Stderr, "gate-proxy:", err)
			os.Exit(1)
		}
		os.Exit(0)
	default:
		fmt.Fprintln(os.Stderr, "unknown role", os.Getenv(roleEnv))
		os.Exit(2)
	}
}

// gateProxyMain is a minimal sidecar start-up, run inside the app
// namespace: bind the gate's queue, wait until it holds a SYN (so the test
// knows the connection waited for the proxy), then bind the outbound port,
// report readiness to the gate, and forward connections until killed.
// Arguments come from the environment: GATE_QUEUE.
func gateProxyMain() error {
	q, err := strconv.Atoi(os.Getenv("GATE_QUEUE"))
	if err != nil {
		return err
	}
	cfg := DefaultConfig()
	cfg.Gate = true
	cfg.GateQueue = uint16(q)
	m, err := NewManager(cfg, nil, nil)
	if err != nil {
		return err
	}
	g, err := m.OpenGate()
	if err != nil {
		return err
	}
	fmt.Println("bound")
	for deadline := time.Now().Add(5 * time.Second); g.Held() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("no SYN held within 5 s")
		}
	}
	fmt.Println("holding", g.Held())
	ln, err := net.Listen("tcp", ":15001")
	if err != nil {
		return err
	}
	if err := g.Ready(context.Background()); err != nil {
		return err
	}
	fmt.Println("ready")
	pt := &PassThrough{}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() { _ = pt.Serve(context.Background(), c) }()
	}
}

// helper is a re-executed test binary running a role in a namespace.
type helper struct {
	cmd   *exec.Cmd
	lines chan string
}

// startHelper starts the test binary in namespace ns with role; it is
// killed (by its PID) at cleanup.
func startHelper(t *testing.T, ns, role string, env ...string) *helper {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := netnstest.Cmd(ns, exe)
	cmd.Env = append(append(os.Environ(), roleEnv+"="+role), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helper{cmd: cmd, lines: make(chan string, 16)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			h.lines <- sc.Text()
		}
		close(h.lines)
	}()
	t.Cleanup(h.kill)
	return h
}

// expect waits for a line starting with prefix.
func (h *helper) expect(t *testing.T, prefix string, within time.Duration) string {
	t.Helper()
	timeout := time.After(within)
	for {
		select {
		case l, ok := <-h.lines:
			if !ok {
				t.Fatalf("helper exited before printing %q", prefix)
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-timeout:
			t.Fatalf("helper did not print %q within %v", prefix, within)
		}
	}
}

// kill ends the helper with SIGKILL (no clean-up code runs in it) and
// reaps it. ip netns exec execs the binary, so the PID is the helper's.
func (h *helper) kill() {
	if h.cmd.ProcessState == nil {
		_ = h.cmd.Process.Kill()
		_ = h.cmd.Wait()
	}
}
