package plugintest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
)

// JSPlugin returns the node binary and the example JavaScript plugin
// (plugins/examples/jsheader/plugin.js), installing its npm dependencies
// first when they are missing. Concurrent test binaries serialize the
// install on a file lock. why says why the plugin cannot run (no node, npm
// failed); tests skip with it.
func JSPlugin() (node, script, why string) {
	node, err := exec.LookPath("node")
	if err != nil {
		return "", "", "node not installed (make test installs nodejs as root)"
	}
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "examples", "jsheader")
	lock, err := os.OpenFile(filepath.Join(dir, ".npm-install.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", "", err.Error()
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", "", err.Error()
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@grpc", "grpc-js")); err != nil {
		npm, err := exec.LookPath("npm")
		if err != nil {
			return "", "", "npm not installed"
		}
		cmd := exec.Command(npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", "", fmt.Sprintf("npm ci: %v: %s", err, out)
		}
	}
	return node, filepath.Join(dir, "plugin.js"), ""
}
