//go:build cgo

package goplugin_test

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshagent/meshagent/plugins"
	"github.com/meshagent/meshagent/plugins/goplugin"
	"github.com/meshagent/meshagent/plugins/plugintest"
)

// buildSO builds testdata/hello as a .so with the same flags as this test
// binary, plus extra; it skips when no C compiler is available.
func buildSO(t *testing.T, extra ...string) string {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("no gcc: cgo plugins cannot be built")
	}
	out := filepath.Join(t.TempDir(), "hello.so")
	args := []string{"build", "-buildmode=plugin", "-o", out}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, extra...)
	args = append(args, "./testdata/hello")
	cmd := exec.Command("go", args...)
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=1")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return out
}

// TestLoadSO loads a .so built by the test, registers it and serves
// requests through a real data plane with it.
func TestLoadSO(t *testing.T) {
	so := buildSO(t)
	p, err := goplugin.LoadAndRegister(so)
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "hello-so" || p.Priority != 1000 {
		t.Fatalf("plugin = %+v", p)
	}
	f, err := p.New([]byte(`{"tag":"t1"}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := f.(plugins.Accessor); !ok {
		t.Fatalf("filter %T is not an Accessor", f)
	}
	if _, err := p.New([]byte(`{"tga":"t1"}`), nil); !errors.Is(err, plugins.ErrInvalidConfig) {
		t.Fatalf("typo accepted: %v", err)
	}

	e := plugintest.New(t)
	e.Route("so", "/*", `{"hello-so":{"tag":"from-so"}}`)
	if r := e.Do("GET", "/hello-so"); r.Status != 200 || r.Body != "hello from a .so plugin" {
		t.Fatalf("direct answer: %d %q", r.Status, r.Body)
	}
	r := e.Do("GET", "/other")
	var got plugintest.Echoed
	r.JSON(t, &got)
	if r.Status != 200 || len(got.Headers["X-So-Plugin"]) != 1 || got.Headers["X-So-Plugin"][0] != "from-so" {
		t.Fatalf("proxied: %d %v", r.Status, got.Headers)
	}
	// Loading the same plugin again (here: after the registry is in use) is
	// an error, not a panic.
	if _, err := goplugin.LoadAndRegister(so); err == nil || !strings.Contains(err.Error(), "Register(hello-so)") && !strings.Contains(err.Error(), "duplicate plugin hello-so") {
		t.Fatalf("second registration: %v", err)
	}
}

func TestLoadMismatch(t *testing.T) {
	// Different compiler flags for every package give different package
	// hashes: exactly what a plugin built against other versions looks like.
	_, err := goplugin.Load(buildSO(t, "-gcflags=all=-N -l", "-ldflags=-pluginpath=hello-mismatch"))
	if !errors.Is(err, goplugin.ErrMismatch) || !strings.Contains(err.Error(), "different version of package") {
		t.Fatalf("err = %v", err)
	}
	t.Log(err)
}

func TestLoadMissingFile(t *testing.T) {
	_, err := goplugin.Load(filepath.Join(t.TempDir(), "nope.so"))
	if err == nil || !strings.Contains(err.Error(), "nope.so") {
		t.Fatalf("err = %v", err)
	}
}
