package e2e

import (
	"errors"
	"net/http"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshagent/meshagent/redirect"
)

// TestCaptureStartupGate: with the gate rule installed by `meshagent
// redirect install --gate`, a connection the app opens BEFORE meshagent
// starts is not refused but waits; `meshagent run --capture-gate` binds the
// queue first, and once it is ready the connection completes through it.
// After readiness the gate rule is gone (the rest of the capture stays);
// with meshagent killed by PID a new connection is refused at once instead
// of hanging on a queue nobody reads; `meshagent redirect remove` restores
// iptables-save exactly.
func TestCaptureStartupGate(t *testing.T) {
	tp := newTopo(t)
	serveHTTP(t, tp.listen(tp.Srv, ":8080"))
	before := tp.saveBoth(tp.App)
	tp.meshagent(tp.App, "redirect", "install", "--gate", "--gate-queue", "15007")
	tp.removeAtCleanup()
	for i, s := range tp.saveBoth(tp.App) {
		if !strings.Contains(s, redirect.ChainGate) {
			t.Fatalf("family %d: gate rule not installed:\n%s", i, s)
		}
	}

	resc := tp.getAsync(tp.App, "http://"+srvIP4+":8080/early", 15*time.Second)
	// Without the gate the SYN would be redirected to the closed port
	// 15001 and refused within a millisecond.
	time.Sleep(300 * time.Millisecond)
	select {
	case r := <-resc:
		t.Fatalf("connection finished before meshagent started: %d %q %v", r.code, r.body, r.err)
	default:
	}
	started := time.Now()
	s := tp.startSidecar(sidecarArgs(t, "--capture-gate", "--capture-gate-queue", "15007")...)
	r := <-resc
	if r.err != nil || r.code != http.StatusOK || !strings.HasPrefix(r.body, "from="+appIP4+":") {
		t.Fatalf("connection opened before meshagent: %d %q %v\n%s", r.code, r.body, r.err, s.out.String())
	}
	if r.at.Before(started) {
		t.Fatalf("connection completed at %v, before meshagent started at %v", r.at, started)
	}
	tp.waitReady(s)
	if n := tp.stats()["passthrough"]; n != 1 {
		t.Fatalf("meshagent passed through %d connections, want the early one", n)
	}
	// The gate logs how many SYNs it held: the first SYN met an unbound
	// queue and was dropped; its retransmission was held if it came
	// before readiness, else it passed the released gate.
	if m := regexp.MustCompile(`startup gate released.* held=(\d+)`).FindStringSubmatch(s.out.String()); m == nil {
		t.Fatalf("meshagent did not log the gate's release:\n%s", s.out.String())
	} else {
		t.Logf("gate released after holding %s SYN(s); connection completed %v after meshagent started", m[1], r.at.Sub(started))
	}

	// After readiness the gate rule is gone, the rest of the capture stays.
	for i, sv := range tp.saveBoth(tp.App) {
		if strings.Contains(sv, redirect.ChainGate) || !strings.Contains(sv, redirect.ChainOutput) {
			t.Fatalf("family %d after readiness: want %s gone and %s kept:\n%s", i, redirect.ChainGate, redirect.ChainOutput, sv)
		}
	}

	// meshagent killed: a new connection is refused at once.
	s.kill()
	start := time.Now()
	_, err := tp.dial(tp.App, srvIP4+":8080", 5*time.Second)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial with meshagent killed: %v, want connection refused", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("refusal took %v; the connection hung", d)
	}

	tp.meshagent(tp.App, "redirect", "remove")
	if after := tp.saveBoth(tp.App); after != before {
		t.Fatalf("iptables-save after remove differs from before install:\nbefore:\n%s\n%s\nafter:\n%s\n%s", before[0], before[1], after[0], after[1])
	}
}
