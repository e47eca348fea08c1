package health

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshagent/meshagent/dataplane/balancer"
	"github.com/meshagent/meshagent/etcdcompat/apisix"
)

// The checker is the balancer's health filter.
var _ balancer.Health = (*Checker)(nil)

const unit = 20 * time.Millisecond

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func activeHTTP(path string) *apisix.Checks {
	return &apisix.Checks{Active: &apisix.ActiveCheck{
		HTTPPath:  path,
		Healthy:   &apisix.ActiveHealthy{Interval: 1, Successes: 2},
		Unhealthy: &apisix.ActiveUnhealthy{Interval: 1, HTTPFailures: 2, TCPFailures: 2, Timeouts: 2},
	}}
}

func newChecker(t *testing.T, cfg Config) *Checker {
	t.Helper()
	if cfg.TimeUnit == 0 {
		cfg.TimeUnit = unit
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return c
}

func TestActiveHTTPStatusFlips(t *testing.T) {
	var status atomic.Int32
	status.Store(200)
	var sawPath, sawHost, sawHeader atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawPath.Store(r.URL.Path)
		sawHost.Store(r.Host)
		sawHeader.Store(r.Header.Get("X-Probe"))
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()
	checks := activeHTTP("/healthz")
	checks.Active.Host = "probe.example"
	checks.Active.ReqHeaders = []string{"X-Probe: yes"}
	var changes []Status
	var mu sync.Mutex
	c := newChecker(t, Config{
		Targets: []Target{{Addr: srv.Listener.Addr().String(), Host: "node"}},
		Checks:  checks,
		OnChange: func(_ int, _ string, s Status) {
			mu.Lock()
			changes = append(changes, s)
			mu.Unlock()
		},
	})
	c.Start()
	waitFor(t, "first probe", func() bool { return sawPath.Load() != nil })
	if sawPath.Load() != "/healthz" || sawHost.Load() != "probe.example" || sawHeader.Load() != "yes" {
		t.Fatalf("probe path=%v host=%v header=%v", sawPath.Load(), sawHost.Load(), sawHeader.Load())
	}
	if !c.Healthy(0) {
		t.Fatal("node starts unhealthy")
	}
	status.Store(500)
	waitFor(t, "unhealthy after http failures", func() bool { return !c.Healthy(0) })
	status.Store(418) // in neither list: ignored, stays unhealthy
	time.Sleep(6 * unit)
	if c.Healthy(0) {
		t.Fatal("a status in neither list changed the state")
	}
	status.Store(302)
	waitFor(t, "healthy after successes", func() bool { return c.Healthy(0) })
	mu.Lock()
	defer mu.Unlock()
	if len(changes) != 2 || changes[0] != Unhealthy || changes[1] != Healthy {
		t.Fatalf("changes %v, want [unhealthy healthy]", changes)
	}
}

func TestActiveBackendDiesAndComesBack(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	c := newChecker(t, Config{Targets: []Target{{Addr: addr, Host: "127.0.0.1"}}, Checks: activeHTTP("/")})
	c.Start()
	time.Sleep(4 * unit)
	if !c.Healthy(0) {
		t.Fatal("live backend marked unhealthy")
	}
	srv.Close()
	waitFor(t, "unhealthy after the backend died", func() bool { return !c.Healthy(0) })
	var ln2 net.Listener
	waitFor(t, "re-listen on the same port", func() bool {
		ln2, err = net.Listen("tcp", addr)
		return err == nil
	})
	srv2 := &http.Server{Handler: h}
	go srv2.Serve(ln2)
	defer srv2.Close()
	waitFor(t, "healthy after the backend came back", func() bool { return c.Healthy(0) })
}

func TestActiveTCPAndTimeouts(t *testing.T) {
	// A listener that accepts and never answers: tcp checks pass, http
	// checks time out.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns sync.WaitGroup
	go func() {
		for {
			cn, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer conns.Done()
				buf := make([]byte, 512)
				_, _ = cn.Read(buf)
				time.Sleep(10 * unit)
				cn.Close()
			}()
		}
	}()
	tcp := activeHTTP("/")
	tcp.Active.Type = "tcp"
	ct := newChecker(t, Config{Targets: []Target{{Addr: ln.Addr().String()}}, Checks: tcp})
	slow := activeHTTP("/")
	slow.Active.Timeout = 2 // 2 units
	ch := newChecker(t, Config{Targets: []Target{{Addr: ln.Addr().String()}}, Checks: slow})
	ct.Start()
	ch.Start()
	waitFor(t, "http check times out", func() bool { return !ch.Healthy(0) })
	if !ct.Healthy(0) {
		t.Fatal("tcp check failed against a listening port")
	}
	ct.Stop()
	ch.Stop()
}

func TestActiveHTTPS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) }))
	defer srv.Close()
	no := false
	checks := activeHTTP("/")
	checks.Active.Type = "https"
	checks.Active.HTTPSVerifyCertificate = &no
	c := newChecker(t, Config{Targets: []Target{{Addr: srv.Listener.Addr().String(), Host: "localhost"}}, Checks: checks})
	c.Start()
	// 503 is an unhealthy status: reaching unhealthy proves TLS worked.
	waitFor(t, "unhealthy via https 503", func() bool { return !c.Healthy(0) })

	yes := activeHTTP("/")
	yes.Active.Type = "https"
	yes.Active.Unhealthy.TCPFailures = 1
	v := newChecker(t, Config{Targets: []Target{{Addr: srv.Listener.Addr().String(), Host: "localhost"}}, Checks: yes})
	v.Start()
	// The self-signed certificate fails verification: a tcp failure.
	waitFor(t, "unhealthy on certificate verification", func() bool { return !v.Healthy(0) })
}

func TestStopEndsProbing(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	c := newChecker(t, Config{Targets: []Target{{Addr: srv.Listener.Addr().String()}}, Checks: activeHTTP("/")})
	c.Start()
	waitFor(t, "probes", func() bool { return hits.Load() >= 2 })
	c.Stop()
	time.Sleep(2 * unit)
	n := hits.Load()
	time.Sleep(5 * unit)
	if hits.Load() != n {
		t.Fatalf("probes continued after Stop: %d -> %d", n, hits.Load())
	}
}

func TestPassive(t *testing.T) {
	checks := activeHTTP("/")
	checks.Passive = &apisix.PassiveCheck{
		Healthy:   &apisix.PassiveHealthy{Successes: 2},
		Unhealthy: &apisix.PassiveUnhealthy{HTTPFailures: 3, TCPFailures: 2, Timeouts: 2},
	}
	cases := []struct {
		name    string
		reports []struct {
			status int
			o      Outcome
		}
		want Status
	}{
		{"http failures reach threshold", reps(500, 0, 503, 0, 429, 0), Unhealthy},
		{"below threshold stays healthy", reps(500, 0, 500, 0), Healthy},
		{"one success does not clear failures", reps(500, 0, 200, 0, 500, 0, 500, 0), Unhealthy},
		{"successes reaching the threshold clear failures", reps(500, 0, 500, 0, 200, 0, 200, 0, 500, 0, 500, 0), Healthy},
		{"successes on a settled healthy node are ignored", reps(200, 0, 200, 0, 200, 0, 500, 0, 500, 0, 500, 0), Unhealthy},
		{"statuses in neither list are ignored", reps(404, 0, 404, 0, 404, 0, 404, 0), Healthy},
		{"tcp failures", reps(0, OutcomeTCPError, 0, OutcomeTCPError), Unhealthy},
		{"timeouts", reps(0, OutcomeTimeout, 0, OutcomeTimeout), Unhealthy},
		{"failure kinds count separately", reps(0, OutcomeTimeout, 0, OutcomeTCPError, 500, 0), Healthy},
		{"recovers after successes", reps(0, OutcomeTCPError, 0, OutcomeTCPError, 200, 0, 204, 0), Healthy},
		{"one success is not enough", reps(0, OutcomeTCPError, 0, OutcomeTCPError, 200, 0), Unhealthy},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ck := newChecker(t, Config{Targets: []Target{{Addr: "127.0.0.1:1"}, {Addr: "127.0.0.1:2"}}, Checks: checks})
			for i, r := range c.reports {
				if i%2 == 0 {
					ck.Report(0, r.status, r.o)
				} else {
					ck.ReportAddr("127.0.0.1:1", r.status, r.o)
				}
			}
			if got := ck.Status(0); got != c.want {
				t.Fatalf("status %v, want %v", got, c.want)
			}
			if !ck.Healthy(1) || !ck.HealthyAddr("127.0.0.1:2") {
				t.Fatal("reports leaked to another node")
			}
			if c.want == Unhealthy && ck.HealthyAddr("127.0.0.1:1") {
				t.Fatal("HealthyAddr disagrees with Healthy")
			}
		})
	}
	// No passive config: Report is a no-op.
	ck := newChecker(t, Config{Targets: []Target{{Addr: "127.0.0.1:1"}}, Checks: activeHTTP("/")})
	for i := 0; i < 20; i++ {
		ck.Report(0, 500, OutcomeResponse)
	}
	if !ck.Healthy(0) {
		t.Fatal("Report changed state without passive checks")
	}
}

func reps(v ...any) []struct {
	status int
	o      Outcome
} {
	var out []struct {
		status int
		o      Outcome
	}
	for i := 0; i < len(v); i += 2 {
		o := Outcome(0)
		switch x := v[i+1].(type) {
		case Outcome:
			o = x
		}
		out = append(out, struct {
			status int
			o      Outcome
		}{v[i].(int), o})
	}
	return out
}

func TestCarryOver(t *testing.T) {
	checks := activeHTTP("/")
	checks.Passive = &apisix.PassiveCheck{Unhealthy: &apisix.PassiveUnhealthy{TCPFailures: 1}}
	targets := []Target{{Addr: "127.0.0.1:1"}, {Addr: "127.0.0.1:2"}}
	old := newChecker(t, Config{Targets: targets, Checks: checks})
	old.Report(1, 0, OutcomeTCPError)
	if old.Healthy(1) {
		t.Fatal("setup: node 1 should be unhealthy")
	}
	same := *checks
	// Reordered and extended node list, equal checks: state follows the address.
	next := newChecker(t, Config{Targets: []Target{{Addr: "127.0.0.1:3"}, targets[1], targets[0]}, Checks: &same, Prev: old})
	if next.Healthy(1) || !next.Healthy(0) || !next.Healthy(2) {
		t.Fatal("state not carried over by address")
	}
	changed := activeHTTP("/other")
	changed.Passive = checks.Passive
	fresh := newChecker(t, Config{Targets: targets, Checks: changed, Prev: old})
	if !fresh.Healthy(1) {
		t.Fatal("state carried over although the checks changed")
	}
}

func TestNilCheckerIsAllHealthy(t *testing.T) {
	var c *Checker
	var h balancer.Health = c // a typed nil in the interface must not panic
	c.Report(0, 500, OutcomeResponse)
	c.ReportAddr("a:1", 500, OutcomeResponse)
	if !h.Healthy(0) || !c.HealthyAddr("a:1") {
		t.Fatal("nil checker reported unhealthy")
	}
}

func TestNoChecksAllHealthy(t *testing.T) {
	c := newChecker(t, Config{Targets: []Target{{Addr: "127.0.0.1:1"}}})
	c.Start()
	c.Report(0, 500, OutcomeResponse)
	if !c.Healthy(0) || !c.Healthy(7) {
		t.Fatal("checker without checks reported unhealthy")
	}
	if n := testing.AllocsPerRun(100, func() { c.Healthy(0) }); n != 0 {
		t.Fatalf("Healthy allocates %v", n)
	}
}

func TestNewErrors(t *testing.T) {
	cases := []struct {
		name   string
		checks *apisix.Checks
		target string
		want   string
	}{
		{"passive without active", &apisix.Checks{Passive: &apisix.PassiveCheck{}}, "", "checks.active: required"},
		{"bad type", &apisix.Checks{Active: &apisix.ActiveCheck{Type: "udp"}}, "", "checks.active.type"},
		{"bad header", &apisix.Checks{Active: &apisix.ActiveCheck{ReqHeaders: []string{"nocolon"}}}, "", "req_headers[0]"},
		{"bad status", &apisix.Checks{Active: &apisix.ActiveCheck{Healthy: &apisix.ActiveHealthy{HTTPStatuses: []int{99}}}}, "", "http status 99"},
		{"threshold too big", &apisix.Checks{Active: &apisix.ActiveCheck{Unhealthy: &apisix.ActiveUnhealthy{Timeouts: 255}}}, "", "unhealthy.timeouts"},
		{"bad passive type", &apisix.Checks{Active: &apisix.ActiveCheck{}, Passive: &apisix.PassiveCheck{Type: "x"}}, "", "checks.passive.type"},
		{"bad port", &apisix.Checks{Active: &apisix.ActiveCheck{Port: 70000}}, "", "checks.active.port"},
		{"bad target", nil, "nope", "targets[0]"},
	}
	for _, c := range cases {
		tg := c.target
		if tg == "" {
			tg = "127.0.0.1:1"
		}
		_, err := New(Config{Targets: []Target{{Addr: tg}}, Checks: c.checks})
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.name, err, c.want)
		}
	}
	if Healthy.String() != "healthy" || Unhealthy.String() != "unhealthy" || OutcomeTimeout.String() != "timeout" {
		t.Error("enum strings")
	}
}

func TestBalancerSkipsUnhealthyNode(t *testing.T) {
	checks := activeHTTP("/")
	checks.Passive = &apisix.PassiveCheck{Unhealthy: &apisix.PassiveUnhealthy{HTTPFailures: 1}}
	nodes := []balancer.Node{{Addr: "127.0.0.1:1", Weight: 1}, {Addr: "127.0.0.1:2", Weight: 1}}
	c := newChecker(t, Config{Targets: []Target{{Addr: nodes[0].Addr}, {Addr: nodes[1].Addr}}, Checks: checks})
	p, err := balancer.New(balancer.RoundRobin, nodes, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Report(0, 500, OutcomeResponse)
	for i := 0; i < 10; i++ {
		var a balancer.Attempt
		a.Reset("", c)
		idx, ok := p.Pick(&a)
		if !ok || idx != 1 {
			t.Fatalf("picked %d (%v), want the healthy node 1", idx, ok)
		}
		p.Done(idx, 0)
	}
	c.Report(1, 500, OutcomeResponse)
	var a balancer.Attempt
	a.Reset("", c)
	if _, ok := p.Pick(&a); !ok {
		t.Fatal("all nodes unhealthy: the balancer must still pick one")
	}
}

func TestParseStatusLine(t *testing.T) {
	cases := []struct {
		in   string
		want int
		ok   bool
	}{
		{"HTTP/1.1 200 OK\r\n", 200, true},
		{"HTTP/1.0 503\r\n", 503, true},
		{"HTTP/1.1 302 Found\n", 302, true},
		{"HTTP/1.1 2000 OK\r\n", 0, false},
		{"HTTP/1.1 -20 OK\r\n", 0, false},
		{"HTTP/1.1 abc\r\n", 0, false},
		{"SSH-2.0-OpenSSH\r\n", 0, false},
		{"HTTP/1.1\r\n", 0, false},
		{"", 0, false},
	}
	for _, c := range cases {
		got, ok := parseStatusLine(c.in)
		if got != c.want || ok != c.ok {
			t.Errorf("parseStatusLine(%q) = %d, %v; want %d, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

func FuzzParseStatusLine(f *testing.F) {
	for _, s := range []string{"HTTP/1.1 200 OK\r\n", "HTTP/1.0 404\n", "garbage", "HTTP/ 1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		st, ok := parseStatusLine(s)
		if ok && (st < 100 || st > 999 || !strings.HasPrefix(s, "HTTP/")) {
			t.Fatalf("parseStatusLine(%q) = %d, true", s, st)
		}
	})
}
