package e2e_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/meshagent/meshagent/plugins/examples/goheader/header"
	"github.com/meshagent/meshagent/plugins/external"
	"github.com/meshagent/meshagent/plugins/external/sdk"
	"github.com/meshagent/meshagent/plugins/plugintest"
)

var (
	goOpen, goClosed, js *external.Registered
	jsSkip               string
)

// TestMain registers the external plugins before anything reads the
// plugin registry (as meshagent does at start). The test binary itself is
// the Go plugin when MESHAGENT_TEST_ROLE=plugin.
func TestMain(m *testing.M) {
	if os.Getenv("MESHAGENT_TEST_ROLE") == "plugin" {
		sdk.Serve(header.Plugin())
		os.Exit(0)
	}
	exe, _ := os.Executable()
	log := slog.New(slog.DiscardHandler)
	env := []string{"MESHAGENT_TEST_ROLE=plugin"}
	var err error
	if goOpen, err = external.Register(external.Spec{Name: "ext-go-open", Path: exe, Env: env, FailOpen: true, Timeout: time.Second}, log); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if goClosed, err = external.Register(external.Spec{Name: "ext-go-closed", Path: exe, Env: env, Phase: "rewrite", Timeout: time.Second}, log); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if node, script, why := plugintest.JSPlugin(); why != "" {
		jsSkip = why
	} else if js, err = external.Register(external.Spec{Name: "ext-js", Path: node, Args: []string{script}, Timeout: time.Second}, log); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	for _, r := range []*external.Registered{goOpen, goClosed, js} {
		if r != nil {
			r.Process.Close()
		}
	}
	os.Exit(code)
}

func TestPluginsChangeRequests(t *testing.T) {
	e := plugintest.New(t)
	e.Route("open", "/open/*", `{"ext-go-open":{"header":"x-go","value":"open","deny_path":"/open/deny"}}`)
	e.Route("closed", "/closed/*", `{"ext-go-closed":{"header":"x-go","value":"closed"}}`)
	var got plugintest.Echoed
	r := e.Do("GET", "/open/a")
	r.JSON(t, &got)
	if r.Status != 200 || len(got.Headers["X-Go"]) != 1 || got.Headers["X-Go"][0] != "open" {
		t.Fatalf("go plugin: %d %v", r.Status, got.Headers)
	}
	if r := e.Do("GET", "/open/deny"); r.Status != 403 || r.Body != "denied by go plugin" {
		t.Fatalf("go plugin deny: %d %q", r.Status, r.Body)
	}
	// A config the plugin rejects is refused naming the field.
	e.Rejected("bad", "/bad", `{"ext-go-open":{"value":"x"}}`, "header: required")

	if js == nil {
		t.Logf("JavaScript plugin skipped: %s", jsSkip)
		return
	}
	e.Route("js", "/js/*", `{"ext-js":{"header":"x-js","value":"from-node","deny_path":"/js/no"}}`)
	r = e.Do("GET", "/js/a")
	r.JSON(t, &got)
	if r.Status != 200 || len(got.Headers["X-Js"]) != 1 || got.Headers["X-Js"][0] != "from-node" {
		t.Fatalf("js plugin: %d %v", r.Status, got.Headers)
	}
	if r := e.Do("GET", "/js/no"); r.Status != 403 || r.Body != "denied by js plugin" {
		t.Fatalf("js plugin deny: %d %q", r.Status, r.Body)
	}
}

// TestKillUnderLoad kills both Go plugin children while requests flow:
// the fail-open route keeps answering 200 (without the plugin's header),
// the fail-closed one answers 503; both recover once the children are
// restarted, and no request fails at the transport level.
func TestKillUnderLoad(t *testing.T) {
	e := plugintest.New(t)
	e.Route("open", "/open/*", `{"ext-go-open":{"header":"x-go","value":"open"}}`)
	e.Route("closed", "/closed/*", `{"ext-go-closed":{"header":"x-go","value":"closed"}}`)
	var (
		withHeader, failedOpen, failedClosed, ok, other atomic.Int64
		stop                                            atomic.Bool
		wg                                              sync.WaitGroup
	)
	for w := 0; w < 4; w++ {
		path := "/open/x"
		if w%2 == 1 {
			path = "/closed/x"
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20000 && !stop.Load(); i++ {
				r, err := e.TryDo("GET", path)
				var got plugintest.Echoed
				switch {
				case err != nil:
					other.Add(1)
				case r.Status == 200 && path == "/open/x":
					if json.Unmarshal([]byte(r.Body), &got) == nil && len(got.Headers["X-Go"]) == 1 {
						withHeader.Add(1)
					} else {
						failedOpen.Add(1)
					}
				case r.Status == 200:
					ok.Add(1)
				case r.Status == 503 && path == "/closed/x":
					failedClosed.Add(1)
				default:
					other.Add(1)
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	restartsBefore := goOpen.Process.Restarts() + goClosed.Process.Restarts()
	for _, r := range []*external.Registered{goOpen, goClosed} {
		if err := syscall.Kill(r.Process.PID(), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for goOpen.Process.Restarts()+goClosed.Process.Restarts() < restartsBefore+2 ||
		goOpen.Process.State() != external.StateServing || goClosed.Process.State() != external.StateServing {
		if time.Now().After(deadline) {
			t.Fatalf("children not restarted: %s / %s", goOpen.Process.LastError(), goClosed.Process.LastError())
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // traffic after the restart
	stop.Store(true)
	wg.Wait()
	t.Logf("open: %d with header, %d failed open; closed: %d ok, %d failed closed; other %d",
		withHeader.Load(), failedOpen.Load(), ok.Load(), failedClosed.Load(), other.Load())
	if failedOpen.Load() == 0 || failedClosed.Load() == 0 {
		t.Errorf("the outage was not observed on both policies")
	}
	if other.Load() != 0 {
		t.Errorf("%d requests got an unexpected status", other.Load())
	}
	// After the restart both routes are served by the plugins again.
	var got plugintest.Echoed
	r := e.Do("GET", "/closed/y")
	r.JSON(t, &got)
	if r.Status != 200 || len(got.Headers["X-Go"]) != 1 {
		t.Fatalf("after restart: %d %v", r.Status, got.Headers)
	}
	if goClosed.Stats.FailClosed.Load() == 0 || goOpen.Stats.FailOpen.Load() == 0 {
		t.Errorf("policy counters: closed %d open %d", goClosed.Stats.FailClosed.Load(), goOpen.Stats.FailOpen.Load())
	}
}
