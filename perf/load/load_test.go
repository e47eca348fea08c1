package load

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/meshagent/meshagent/perf/backend"
	"github.com/meshagent/meshagent/perf/stats"
)

func startBackend(t *testing.T) *backend.Server {
	t.Helper()
	s, err := backend.Start(backend.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("backend close: %v", err)
		}
	})
	return s
}

func TestScheduleIntendedTimes(t *testing.T) {
	start := time.Unix(1000, 0)
	tests := []struct {
		rate float64
		i    int64
		want time.Duration
	}{
		{1000, 0, 0},
		{1000, 1, time.Millisecond},
		{1000, 2500, 2500 * time.Millisecond},
		{3, 3, time.Second - 1}, // 333.333333ms truncated to ns
		{1e6, 1e6, time.Second},
	}
	for _, tc := range tests {
		s := NewSchedule(start, tc.rate)
		if got := s.At(tc.i).Sub(start); got != tc.want {
			t.Errorf("rate %v: At(%d) = +%v, want +%v", tc.rate, tc.i, got, tc.want)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	bad := []Options{
		{Connections: 0, Duration: time.Second},
		{Connections: 1},
		{Connections: 1, Duration: time.Second, Rate: -1},
		{Connections: 1, Duration: -time.Second},
	}
	for _, o := range bad {
		if err := o.Validate(); !errors.Is(err, ErrOptions) {
			t.Errorf("Validate(%+v) = %v, want ErrOptions", o, err)
		}
	}
	if _, err := Run(context.Background(), nil, Options{}); !errors.Is(err, ErrOptions) {
		t.Errorf("Run with zero options: %v", err)
	}
}

// An open-loop run issues exactly the scheduled requests of the measured
// window: rate x duration, whatever the warm-up.
func TestOpenLoopSendsTheSchedule(t *testing.T) {
	b := startBackend(t)
	f, err := NewFactory(HTTP1, ClientConfig{Addr: b.HTTPAddr})
	if err != nil {
		t.Fatal(err)
	}
	before := b.Requests()
	res, err := Run(context.Background(), f, Options{Connections: 4, Rate: 400, Duration: time.Second, Warmup: 250 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Total() != 400 || res.OK != 400 {
		t.Errorf("measured %d requests (%d ok), want exactly 400; last error %v", res.Total(), res.OK, res.LastErr)
	}
	if served := b.Requests() - before; served != 500 {
		t.Errorf("backend served %d, want 500 (100 warm-up + 400 measured)", served)
	}
	if res.Elapsed < 990*time.Millisecond || res.Elapsed > 3*time.Second {
		t.Errorf("elapsed %v, want ~1s", res.Elapsed)
	}
}

// A backend that stalls once for 300 ms: the closed loop sees a single slow
// request, the open loop (coordinated omission corrected) also charges the
// requests that were due during the stall with their waiting time.
func TestCoordinatedOmissionCorrection(t *testing.T) {
	const stall = 300 * time.Millisecond
	run := func(rate float64) *Result {
		b := startBackend(t)
		f, err := NewFactory(HTTP1, ClientConfig{Addr: b.HTTPAddr})
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			time.Sleep(500 * time.Millisecond)
			b.StallOnce(stall)
		}()
		res, err := Run(context.Background(), f, Options{Connections: 1, Rate: rate, Duration: 1500 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if res.Errors.Total() != 0 {
			t.Fatalf("errors: %v (%v)", res.Errors.Map(), res.LastErr)
		}
		return res
	}
	open := run(500)
	closed := run(0)
	t.Logf("open: n=%d %+v", open.Latency.Count(), open.Latency.Summary())
	t.Logf("closed: n=%d %+v", closed.Latency.Count(), closed.Latency.Summary())
	for name, r := range map[string]*Result{"open": open, "closed": closed} {
		if r.Latency.Max() < stall-10*time.Millisecond {
			t.Errorf("%s loop max %v, want >= %v (the stalled request)", name, r.Latency.Max(), stall)
		}
	}
	// ~150 of 750 open-loop requests were due during the stall, waiting
	// 300..0 ms: more than 5% of samples are >= 100 ms.
	if p95 := open.Latency.Quantile(95); p95 < 100*time.Millisecond {
		t.Errorf("open loop p95 = %v, want >= 100ms: queued requests' wait not counted", p95)
	}
	// In the closed loop only the stalled request itself is slow.
	if p95 := closed.Latency.Quantile(95); p95 >= 100*time.Millisecond {
		t.Errorf("closed loop p95 = %v, want < 100ms", p95)
	}
}

func TestProtocolsAgainstBackend(t *testing.T) {
	b := startBackend(t)
	tests := []struct {
		p    Protocol
		addr string
	}{
		{HTTP1, b.HTTPAddr}, {H2, b.HTTPAddr}, {GRPC, b.GRPCAddr}, {GRPCStream, b.GRPCAddr},
		{TCP, b.TCPAddr}, {TCPBulk, b.TCPAddr},
	}
	for _, tc := range tests {
		t.Run(tc.p.String(), func(t *testing.T) {
			p, err := ParseProtocol(tc.p.String())
			if err != nil || p != tc.p {
				t.Fatalf("ParseProtocol(%q) = %v, %v", tc.p.String(), p, err)
			}
			f, err := NewFactory(tc.p, ClientConfig{Addr: tc.addr, Payload: 100})
			if err != nil {
				t.Fatal(err)
			}
			var progress int
			res, err := Run(context.Background(), f, Options{Connections: 2, Requests: 200, Warmup: 20 * time.Millisecond,
				Progress: func(Progress) { progress++ }})
			if err != nil {
				t.Fatal(err)
			}
			if res.OK != 200 || res.Errors.Total() != 0 {
				t.Fatalf("ok=%d errors=%v last=%v", res.OK, res.Errors.Map(), res.LastErr)
			}
			if res.Latency.Count() != 200 || res.RPS() <= 0 {
				t.Errorf("count=%d rps=%v", res.Latency.Count(), res.RPS())
			}
		})
	}
	if _, err := ParseProtocol("smtp"); !errors.Is(err, ErrProtocol) {
		t.Errorf("ParseProtocol(smtp) = %v", err)
	}
}

func TestErrorsAreClassified(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := ln.Addr().String()
	ln.Close()

	// A server that accepts and closes at once: resets.
	rl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer rl.Close()
	go func() {
		for {
			c, err := rl.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	tests := []struct {
		name string
		p    Protocol
		addr string
		want stats.ErrorKind
	}{
		{"http1 refused", HTTP1, closedAddr, stats.ErrConnect},
		{"h2 refused", H2, closedAddr, stats.ErrConnect},
		{"tcp refused", TCP, closedAddr, stats.ErrConnect},
		{"grpc refused", GRPC, closedAddr, stats.ErrConnect},
		{"http1 reset", HTTP1, rl.Addr().String(), stats.ErrReset},
		{"tcp reset", TCP, rl.Addr().String(), stats.ErrReset},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := NewFactory(tc.p, ClientConfig{Addr: tc.addr, Timeout: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			res, err := Run(context.Background(), f, Options{Connections: 1, Requests: 3})
			if err != nil {
				t.Fatal(err)
			}
			if res.OK != 0 || res.Errors[tc.want] != 3 {
				t.Errorf("errors = %v, want 3 %v (last %v)", res.Errors.Map(), tc.want, res.LastErr)
			}
		})
	}
}

// An open loop far behind its schedule gives up one second after the end
// and counts every unsent request as backlog, so a run cannot run away.
func TestOpenLoopGivesUpOnBacklog(t *testing.T) {
	b := startBackend(t)
	f, err := NewFactory(HTTP1, ClientConfig{Addr: b.HTTPAddr})
	if err != nil {
		t.Fatal(err)
	}
	b.StallOnce(1500 * time.Millisecond)
	t0 := time.Now()
	res, err := Run(context.Background(), f, Options{Connections: 1, Rate: 1000, Duration: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > 3*time.Second {
		t.Errorf("run took %v, want it to stop soon after 1.3s", d)
	}
	if res.Total() != 300 || res.OK != 1 || res.Errors[stats.ErrBacklog] != 299 {
		t.Errorf("total=%d ok=%d errors=%v, want 300 = 1 ok + 299 backlog", res.Total(), res.OK, res.Errors.Map())
	}
	if res.Latency.Count() != 300 || res.Latency.Quantile(50) < time.Second {
		t.Errorf("latency n=%d p50=%v, want 300 samples waiting >= 1s", res.Latency.Count(), res.Latency.Quantile(50))
	}
}
