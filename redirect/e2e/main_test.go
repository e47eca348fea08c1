package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// meshagentBin is the meshagent binary TestMain builds for the tests; empty
// when the tests will skip (not root) or the build failed.
var meshagentBin string

// TestMain builds the real meshagent binary once, into a directory the
// proxy uid can read, when the tests can run at all.
func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if os.Geteuid() != 0 {
		return m.Run() // every test skips, naming the reason
	}
	dir, err := os.MkdirTemp("", "meshagent-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	// The sidecar runs as the proxy uid: it must reach the binary and the
	// config files written here.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	bin := filepath.Join(dir, "meshagent")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/meshagent/meshagent/cmd/meshagent")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building meshagent:", err)
		return 1
	}
	meshagentBin = bin
	return m.Run()
}
