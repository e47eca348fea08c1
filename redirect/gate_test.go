package redirect

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func gateConfig() Config {
	cfg := DefaultConfig()
	cfg.Gate = true
	cfg.GateQueue = 7
	return cfg
}

func openGate(t *testing.T, tp *topo, m *Manager, timeout time.Duration) *Gate {
	t.Helper()
	g, err := OpenGate(GateOptions{
		Queue:   m.Config().GateQueue,
		Timeout: timeout,
		Release: m.ReleaseGate,
		NetNS:   tp.FD(tp.App),
	})
	if err != nil {
		t.Fatalf("open gate: %v", err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

// TestGateHoldsUntilReady: a connection opened before the sidecar process
// has even bound the gate's queue is held and succeeds once the sidecar is
// ready; afterwards the gate rule is gone, so with the sidecar killed a new
// connection fails at once instead of hanging on a queue nobody reads.
func TestGateHoldsUntilReady(t *testing.T) {
	tp := newTopo(t)
	httpServer(t, tp.Listen(tp.Srv, "tcp", ":8080"))
	m := mustInstall(t, tp, gateConfig())
	ctx := context.Background()

	type result struct {
		body string
		err  error
		at   time.Time
	}
	resc := make(chan result, 1)
	go func() {
		body, err := tp.httpGet(tp.App, srvIP4+":8080")
		resc <- result{body, err, time.Now()}
	}()
	// The first SYN meets an unbound queue and is dropped; TCP retransmits
	// it after about one second, by which time the sidecar's gate holds it.
	time.Sleep(200 * time.Millisecond)
	select {
	case r := <-resc:
		t.Fatalf("connection finished with no sidecar running: %q %v", r.body, r.err)
	default:
	}
	sidecar := startHelper(t, tp.App, "gate-proxy", "GATE_QUEUE="+strconv.Itoa(int(m.Config().GateQueue)))
	sidecar.expect(t, "bound", 5*time.Second)
	held := sidecar.expect(t, "holding", 6*time.Second)
	sidecar.expect(t, "ready", 5*time.Second)
	r := <-resc
	if r.err != nil || !strings.HasPrefix(r.body, "hello from="+appIP4+":") {
		t.Fatalf("held connection: %q %v", r.body, r.err)
	}
	t.Logf("sidecar reported %q; the connection completed after readiness", held)

	// The gate rule is gone; everything else is in place.
	for _, f := range []Family{IPv4, IPv6} {
		if s := tp.save(tp.App, f); strings.Contains(s, ChainGate) {
			t.Fatalf("%s: gate still installed after Ready:\n%s", f, s)
		}
	}
	rep, err := m.Verify(ctx)
	if err != nil || !rep.GateReleased {
		t.Fatalf("verify after release: %v %+v", err, rep)
	}

	// Kill the sidecar: a new connection is refused at once.
	sidecar.kill()
	start := time.Now()
	_, err = tp.Dial(tp.App, 0, nil, srvIP4+":8080", dialTimeout)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial with the sidecar killed: %v, want connection refused", err)
	}
	if d := time.Since(start); d > time.Second { // a dropped SYN would retry after 1 s, then time out at 5 s
		t.Fatalf("refusal took %v; the connection hung", d)
	}
}

// TestGateInProcess drives the gate bound from this process (NetNS option)
// with an IPv4 and an IPv6 connection held at the same time, and checks
// Held, State and that nothing completes before Ready.
func TestGateInProcess(t *testing.T) {
	tp := newTopo(t)
	echoServer(tp.Listen(tp.Srv, "tcp", ":9000"))
	m := mustInstall(t, tp, gateConfig())
	g := openGate(t, tp, m, 0)
	type result struct {
		addr, reply string
		err         error
		at          time.Time
	}
	addrs := []string{srvIP4 + ":9000", "[" + srvIP6 + "]:9000"}
	resc := make(chan result, len(addrs))
	for _, addr := range addrs {
		go func() {
			c, err := tp.Dial(tp.App, 0, nil, addr, dialTimeout)
			if err != nil {
				resc <- result{addr, "", err, time.Now()}
				return
			}
			reply, err := echo(c, "held")
			resc <- result{addr, reply, err, time.Now()}
		}()
	}
	for deadline := time.Now().Add(4 * time.Second); g.Held() < len(addrs); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("gate held %d packets, want %d (seen %d)", g.Held(), len(addrs), g.Seen())
		}
	}
	if g.State() != GateHolding {
		t.Fatalf("state %v", g.State())
	}
	p := &testProxy{t: t}
	p.serve(tp, "outbound", tp.Listen(tp.App, "tcp", ":15001"))
	time.Sleep(100 * time.Millisecond) // still held: no verdict yet
	select {
	case r := <-resc:
		t.Fatalf("connection completed before Ready: %+v", r)
	default:
	}
	readyAt := time.Now()
	if err := g.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	for range addrs {
		r := <-resc
		if r.err != nil || !strings.HasPrefix(r.reply, "echo held") || r.at.Before(readyAt) {
			t.Fatalf("held connection to %s: %+v (ready at %v)", r.addr, r, readyAt)
		}
	}
	if g.State() != GateReleased || p.count() != len(addrs) {
		t.Fatalf("state %v, proxy saw %d connections", g.State(), p.count())
	}
	if err := g.Ready(context.Background()); err != nil { // idempotent
		t.Fatal(err)
	}
}

// TestGateTimeout: without readiness the gate releases everything after
// its timeout and deletes its rule.
func TestGateTimeout(t *testing.T) {
	tp := newTopo(t)
	echoServer(tp.Listen(tp.Srv, "tcp", ":9000"))
	m := mustInstall(t, tp, gateConfig())
	p := &testProxy{t: t}
	p.serve(tp, "outbound", tp.Listen(tp.App, "tcp", ":15001"))
	g := openGate(t, tp, m, 300*time.Millisecond)
	start := time.Now()
	c, err := tp.Dial(tp.App, 0, nil, srvIP4+":9000", dialTimeout)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Fatalf("connection was not held (took %v)", d)
	}
	if reply, err := echo(c, "late"); err != nil || !strings.HasPrefix(reply, "echo late") {
		t.Fatalf("reply %q %v", reply, err)
	}
	<-g.Done()
	if g.State() != GateTimedOut {
		t.Fatalf("state %v, want timed-out", g.State())
	}
	if s := tp.save(tp.App, IPv4); strings.Contains(s, ChainGate) {
		t.Fatalf("gate rule left after timeout:\n%s", s)
	}
	if p.count() != 1 {
		t.Fatalf("proxy saw %d connections", p.count())
	}
}
