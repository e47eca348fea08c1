package external_test

import (
	"os"
	"os/exec"
)

// runDirect runs exe without the magic cookie and returns its output.
func runDirect(exe string, env ...string) (string, error) {
	cmd := exec.Command(exe)
	for _, e := range os.Environ() {
		if len(e) > 0 {
			cmd.Env = append(cmd.Env, e)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}
