package redirect

import (
	"context"
	"errors"
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
		NetNS:   tp.nsFD(tp.app),
	})
	if err != nil {
		t.Fatalf("open gate: %v", err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

// TestGateHoldsUntilReady: a connection opened before the gate is even
// bound is held and succeeds once the proxy is ready; afterwards the gate
// rule is gone, so with the proxy killed a new connection fails at once
// instead of hanging on a queue nobody reads.
func TestGateHoldsUntilReady(t *testing.T) {
	tp := newTopo(t)
	httpServer(t, tp.listenIn(tp.srv, "tcp", ":8080"))
	m := mustInstall(t, tp, gateConfig())
	ctx := context.Background()

	type result struct {
		body string
		err  error
		at   time.Time
	}
	resc := make(chan result, 1)
	go func() {
		body, err := tp.httpGet(tp.app, srvIP4+":8080")
		resc <- result{body, err, time.Now()}
	}()
	// The first SYN meets an unbound queue and is dropped; TCP retransmits
	// it after about one second, by which time the gate holds it.
	time.Sleep(200 * time.Millisecond)
	g := openGate(t, tp, m, 0)
	deadline := time.Now().Add(4 * time.Second)
	for g.Held() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("gate held no packet within 4 s (seen %d)", g.Seen())
		}
		select {
		case r := <-resc:
			t.Fatalf("connection finished before the gate released it: %q %v", r.body, r.err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	// The proxy binds only now, then reports readiness.
	p := &testProxy{t: t}
	ln := tp.listenIn(tp.app, "tcp", ":15001")
	p.serve(tp, "outbound", ln)
	readyAt := time.Now()
	if err := g.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-resc
	if r.err != nil || !strings.HasPrefix(r.body, "hello from=") {
		t.Fatalf("held connection: %q %v", r.body, r.err)
	}
	if r.at.Before(readyAt) {
		t.Fatal("held connection completed before Ready")
	}
	if p.count() != 1 || p.last().origDst.String() != srvIP4+":8080" {
		t.Fatalf("proxy saw %d connections, last %+v", p.count(), p.last())
	}
	if g.State() != GateReleased {
		t.Fatalf("state %v", g.State())
	}

	// The gate rule is gone; everything else is in place.
	for _, f := range []Family{IPv4, IPv6} {
		if s := tp.save(tp.app, f); strings.Contains(s, ChainGate) {
			t.Fatalf("%s: gate still installed after Ready:\n%s", f, s)
		}
	}
	rep, err := m.Verify(ctx)
	if err != nil || !rep.GateReleased {
		t.Fatalf("verify after release: %v %+v", err, rep)
	}

	// Kill the proxy: a new connection is refused at once.
	ln.Close()
	start := time.Now()
	_, err = tp.dialIn(tp.app, 0, nil, srvIP4+":8080")
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial with the proxy gone: %v, want connection refused", err)
	}
	if d := time.Since(start); d > time.Second { // a dropped SYN would retry after 1 s, then time out at 5 s
		t.Fatalf("refusal took %v; the connection hung", d)
	}
}

// TestGateTimeout: without readiness the gate releases everything after
// its timeout and deletes its rule.
func TestGateTimeout(t *testing.T) {
	tp := newTopo(t)
	echoServer(tp.listenIn(tp.srv, "tcp", ":9000"))
	m := mustInstall(t, tp, gateConfig())
	p := &testProxy{t: t}
	p.serve(tp, "outbound", tp.listenIn(tp.app, "tcp", ":15001"))
	g := openGate(t, tp, m, 300*time.Millisecond)
	start := time.Now()
	c, err := tp.dialIn(tp.app, 0, nil, srvIP4+":9000")
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
	if s := tp.save(tp.app, IPv4); strings.Contains(s, ChainGate) {
		t.Fatalf("gate rule left after timeout:\n%s", s)
	}
	if p.count() != 1 {
		t.Fatalf("proxy saw %d connections", p.count())
	}
}
