package wrk

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshagent/meshagent/perf/backend"
	"github.com/meshagent/meshagent/perf/load"
	"github.com/meshagent/meshagent/perf/stats"
)

func needWrk(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("wrk"); err != nil {
		t.Skip("wrk is not installed (apt-get install wrk; .ci/deps.sh installs it when run as root)")
	}
}

func TestCheck(t *testing.T) {
	ok := load.Options{Connections: 4, Duration: time.Second, Warmup: time.Second}
	bad := []struct {
		name string
		r    Runner
		p    load.Protocol
		o    load.Options
	}{
		{"h2", Runner{}, load.H2, ok},
		{"rate", Runner{}, load.HTTP1, load.Options{Connections: 4, Duration: time.Second, Rate: 100}},
		{"requests", Runner{}, load.HTTP1, load.Options{Connections: 4, Requests: 100}},
		{"sub-second duration", Runner{}, load.HTTP1, load.Options{Connections: 4, Duration: 1500 * time.Millisecond}},
		{"sub-second warm-up", Runner{}, load.HTTP1, load.Options{Connections: 4, Duration: time.Second, Warmup: 500 * time.Millisecond}},
		{"uneven threads", Runner{Threads: 3}, load.HTTP1, ok},
	}
	for _, tc := range bad {
		if err := tc.r.Check(tc.p, tc.o); !errors.Is(err, ErrOptions) {
			t.Errorf("%s: Check = %v, want ErrOptions", tc.name, err)
		}
	}
	if err := (&Runner{}).Check(load.HTTP1, load.Options{}); !errors.Is(err, load.ErrOptions) {
		t.Errorf("invalid load options: Check = %v, want load.ErrOptions", err)
	}
	err := (&Runner{Bin: "/nonexistent/wrk"}).Check(load.HTTP1, ok)
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "/nonexistent/wrk") {
		t.Errorf("missing binary: Check = %v, want ErrNotFound naming it", err)
	}
	if _, err := exec.LookPath("wrk"); err == nil {
		// 8 threads capped at 4 connections.
		if err := (&Runner{Threads: 8}).Check(load.HTTP1, ok); err != nil {
			t.Errorf("Check = %v", err)
		}
	}
}

func TestArgs(t *testing.T) {
	r := &Runner{Threads: 2, Path: "/x", Timeout: 1500 * time.Millisecond}
	got := strings.Join(r.args("127.0.0.1:80", 1, 2*time.Second, "/tmp/s.lua"), " ")
	want := "-t 1 -c 1 -d 2s -T 2s --latency -s /tmp/s.lua http://127.0.0.1:80/x"
	if got != want {
		t.Errorf("args = %q, want %q", got, want)
	}
}

// TestRunAgainstBackend runs the real wrk against perf's backend: a
// warm-up, then a measured second whose result must be consistent.
func TestRunAgainstBackend(t *testing.T) {
	needWrk(t)
	s, err := backend.Start(backend.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r := &Runner{}
	o := load.Options{Connections: 2, Duration: time.Second, Warmup: time.Second}
	if err := r.Warmup(context.Background(), s.HTTPAddr, o); err != nil {
		t.Fatal(err)
	}
	res, err := r.Run(context.Background(), s.HTTPAddr, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.OK < 100 || res.Errors.Total() != 0 || res.LastErr != nil {
		t.Fatalf("ok %d errors %v (%v)", res.OK, res.Errors.Map(), res.LastErr)
	}
	if res.Elapsed < time.Second || res.Elapsed > 2*time.Second {
		t.Errorf("elapsed %v, want about 1s", res.Elapsed)
	}
	if res.Latency.Count() < res.OK || res.Latency.Quantile(50) <= 0 || res.Latency.Max() < res.Latency.Quantile(99.9) {
		t.Errorf("latency count %d p50 %v p99.9 %v max %v", res.Latency.Count(), res.Latency.Quantile(50),
			res.Latency.Quantile(99.9), res.Latency.Max())
	}
}

// TestRunCountsStatusAndConnectErrors runs wrk against a server answering
// 503 to every other request, then against a listener that has closed.
func TestRunCountsStatusAndConnectErrors(t *testing.T) {
	needWrk(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if n.Add(1)%2 == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})}
	go srv.Serve(ln)
	defer srv.Close()
	r := &Runner{}
	res, err := r.Run(context.Background(), ln.Addr().String(), load.Options{Connections: 1, Duration: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	st := res.Errors[stats.ErrStatus]
	if res.OK < 10 || st < res.OK-1 || st > res.OK+1 || res.Total() != res.OK+st || res.LastErr == nil {
		t.Errorf("ok %d errors %v (%v), want half of the requests as status errors", res.OK, res.Errors.Map(), res.LastErr)
	}

	addr := ln.Addr().String()
	srv.Close()
	_, err = r.Run(context.Background(), addr, load.Options{Connections: 1, Duration: time.Second})
	if err == nil || !strings.Contains(err.Error(), "unable to connect") {
		t.Errorf("Run against a closed port = %v, want wrk's connect failure", err)
	}
}
