package e2e

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshagent/meshagent/redirect/netnstest"
	"github.com/meshagent/meshagent/xds/controlplane"
	"github.com/meshagent/meshagent/xds/demo"
)

// queued returns how many packets NFQUEUE queue q of namespace ns holds
// right now (queue_total in /proc/net/netfilter/nfnetlink_queue), or -1
// when no program has bound the queue.
func (tp *topo) queued(ns string, q int) int {
	tp.T.Helper()
	out, err := netnstest.Cmd(ns, "cat", "/proc/net/netfilter/nfnetlink_queue").Output()
	if err != nil {
		tp.T.Fatalf("nfnetlink_queue in %s: %v", ns, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == strconv.Itoa(q) {
			n, _ := strconv.Atoi(f[2])
			return n
		}
	}
	return -1
}

// TestCaptureGateHoldsUntilXDSReady: meshagent fed by an xDS control
// plane is ready only once the first complete config is applied, so the
// startup gate holds the app's early connection (its SYN sits in the
// queue) for as long as the control plane withholds the config; publishing
// it releases the gate and the connection completes, after the publish.
func TestCaptureGateHoldsUntilXDSReady(t *testing.T) {
	tp := newTopo(t)
	serveHTTP(t, tp.listen(tp.Srv, ":8080"))
	// go-control-plane's ADS server inside the app namespace, on
	// loopback (never captured), with no snapshot yet.
	cp := controlplane.Serve(tp.listen(tp.App, "127.0.0.1:0"), slog.New(slog.DiscardHandler))
	t.Cleanup(cp.Stop)
	const queue, node = 15008, "gate-e2e"
	tp.meshagent(tp.App, "redirect", "install", "--gate", "--gate-queue", strconv.Itoa(queue))
	tp.removeAtCleanup()

	resc := tp.getAsync(tp.App, "http://"+srvIP4+":8080/early", 15*time.Second)
	time.Sleep(100 * time.Millisecond)
	s := tp.startSidecar("--xds", cp.Addr(), "--node-id", node, "--http-listen", "",
		"--admin-listen", adminAddr, "--log-level", "info", "--capture-outbound", "0.0.0.0:15001",
		"--capture-gate", "--capture-gate-queue", strconv.Itoa(queue))
	// The first SYN met an unbound queue and was dropped; its
	// retransmission (about 1 s later) is held by meshagent's gate.
	deadline := time.Now().Add(5 * time.Second)
	for tp.queued(tp.App, queue) < 1 {
		if s.exited() || time.Now().After(deadline) {
			t.Fatalf("the gate holds no packet (queue %d: %d):\n%s", queue, tp.queued(tp.App, queue), s.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	select {
	case r := <-resc:
		t.Fatalf("connection finished while meshagent was not ready: %d %q %v", r.code, r.body, r.err)
	default:
	}
	if code, _, _ := tp.get(tp.App, "http://"+adminAddr+"/ready", time.Second); code != http.StatusServiceUnavailable {
		t.Fatalf("/ready %d before the xDS config, want 503", code)
	}

	published := time.Now()
	// The demo config: a listener on the app's loopback, EDS clusters.
	cfg := demo.Config("127.0.0.1:18080", "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3")
	if err := cp.SetSnapshot(context.Background(), node, "v1", cfg); err != nil {
		t.Fatal(err)
	}
	r := <-resc
	if r.err != nil || r.code != http.StatusOK || !strings.HasPrefix(r.body, "from="+appIP4+":") {
		t.Fatalf("held connection: %d %q %v\n%s", r.code, r.body, r.err, s.out.String())
	}
	if r.at.Before(published) {
		t.Fatalf("held connection completed at %v, before the config was published at %v", r.at, published)
	}
	t.Logf("held connection completed %v after the xDS config was published", r.at.Sub(published))
	tp.waitReady(s)
	// The gate unbinds its queue right after releasing.
	for deadline := time.Now().Add(3 * time.Second); tp.queued(tp.App, queue) != -1; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("queue %d still bound 3 s after readiness", queue)
		}
	}
	if n := tp.stats()["passthrough"]; n != 1 {
		t.Fatalf("meshagent passed through %d connections, want the held one", n)
	}
}
