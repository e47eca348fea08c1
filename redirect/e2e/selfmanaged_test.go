package e2e

import (
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshagent/meshagent/redirect"
)

// TestCaptureSelfManaged: `meshagent run --capture-install --capture-gate`
// installs the rules itself (after binding the gate's queue), releases the
// gate once ready, serves captured traffic, and on SIGTERM removes every
// rule it installed: iptables-save is then exactly as before.
func TestCaptureSelfManaged(t *testing.T) {
	tp := newTopo(t)
	serveHTTP(t, tp.listen(tp.Srv, ":8080"))
	before := tp.saveBoth(tp.App)
	tp.removeAtCleanup()
	s := tp.startSidecar(sidecarArgs(t, "--capture-install", "--capture-gate", "--capture-gate-queue", "15009")...)
	tp.waitReady(s)
	// Installed, and the gate already released (it may take a moment
	// after /ready turns 200).
	deadline := time.Now().Add(3 * time.Second)
	for {
		saved := tp.saveBoth(tp.App)
		ok := true
		for _, sv := range saved {
			ok = ok && strings.Contains(sv, redirect.ChainOutput) && !strings.Contains(sv, redirect.ChainGate)
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("want %s installed and %s released:\n%s\n%s\n%s", redirect.ChainOutput, redirect.ChainGate, saved[0], saved[1], s.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	code, body, err := tp.get(tp.App, "http://"+srvIP4+":8080/self", 5*time.Second)
	if err != nil || code != http.StatusOK || !strings.HasPrefix(body, "from="+appIP4+":") {
		t.Fatalf("GET through self-managed capture: %d %q %v", code, body, err)
	}
	if n := tp.stats()["passthrough"]; n != 1 {
		t.Fatalf("meshagent passed through %d connections, want 1", n)
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("meshagent did not exit on SIGTERM:\n%s", s.out.String())
	}
	if after := tp.saveBoth(tp.App); after != before {
		t.Fatalf("iptables-save after meshagent exited differs from before:\nbefore:\n%s\n%s\nafter:\n%s\n%s\n%s", before[0], before[1], after[0], after[1], s.out.String())
	}
}
