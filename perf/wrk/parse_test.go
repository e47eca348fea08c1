package wrk

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshagent/meshagent/perf/stats"
)

// The files in testdata are real wrk 4.1.0 outputs, captured on loopback
// with done.lua against perf's backend (c2, c50, t2c8), against a server
// answering 10% 503, resetting 0.2% of connections and stalling 0.1% of
// requests past -T 1s (errors), without the script (plain), and with the
// script's histogram budget forced to 1 (quantiles).
func TestParseCapturedOutputs(t *testing.T) {
	tests := []struct {
		file              string
		threads, conns    int
		requests          int64
		socket            SocketErrors
		non2xx            int64
		hist, quantiles   bool
		errStatus, errRst int64
	}{
		{file: "c2.txt", threads: 1, conns: 2, requests: 43151, hist: true},
		{file: "c50.txt", threads: 1, conns: 50, requests: 72531, hist: true},
		{file: "t2c8.txt", threads: 2, conns: 8, requests: 61647, hist: true},
		{file: "errors.txt", threads: 1, conns: 4, requests: 11546, socket: SocketErrors{Read: 25, Timeout: 4}, non2xx: 1179,
			hist: true, errStatus: 1179, errRst: 25},
		{file: "quantiles.txt", threads: 1, conns: 2, quantiles: true},
		{file: "plain.txt", threads: 1, conns: 4, requests: 91611},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			o, err := Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			if o.Threads != tc.threads || o.Connections != tc.conns {
				t.Errorf("threads/connections = %d/%d, want %d/%d", o.Threads, o.Connections, tc.threads, tc.conns)
			}
			if tc.requests > 0 && o.Requests != tc.requests {
				t.Errorf("requests = %d, want %d", o.Requests, tc.requests)
			}
			if o.Socket != tc.socket || o.Non2xx3xx != tc.non2xx {
				t.Errorf("errors = %+v non-2xx %d, want %+v %d", o.Socket, o.Non2xx3xx, tc.socket, tc.non2xx)
			}
			if o.RPS <= 0 || o.Duration < time.Second || o.Duration > 3*time.Second {
				t.Errorf("rps %v duration %v", o.RPS, o.Duration)
			}
			if len(o.Distribution) != 4 || o.Distribution[0].Percentile != 50 || o.Distribution[3].Percentile != 99 {
				t.Errorf("--latency distribution = %+v, want 50, 75, 90, 99", o.Distribution)
			}
			if !tc.hist && !tc.quantiles {
				if o.Script != nil {
					t.Fatal("script block found in plain output")
				}
				if _, err := o.Result(); !errors.Is(err, ErrOutput) || !strings.Contains(err.Error(), "done() script") {
					t.Errorf("Result without script = %v, want ErrOutput naming the script", err)
				}
				return
			}
			s := o.Script
			if s == nil || !s.Complete {
				t.Fatalf("script block = %+v", s)
			}
			if s.Requests != o.Requests || s.Duration < time.Second || len(s.Percentiles) != 4 {
				t.Errorf("script summary %d requests in %v, %d percentiles", s.Requests, s.Duration, len(s.Percentiles))
			}
			// wrk's printed --latency table is its percentile rounded to
			// two decimals of the unit.
			for _, q := range o.Distribution {
				for _, p := range s.Percentiles {
					if p.Percentile == q.Percentile && !near(q.Latency, p.Latency, 0.01, 10*time.Microsecond) {
						t.Errorf("p%v: summary %v, script %v", q.Percentile, q.Latency, p.Latency)
					}
				}
			}
			if (len(s.Hist) > 0) != tc.hist || (len(s.Quantiles) > 0) != tc.quantiles {
				t.Fatalf("hist %d lines, quantiles %d lines", len(s.Hist), len(s.Quantiles))
			}
			r, err := o.Result()
			if err != nil {
				t.Fatal(err)
			}
			if r.OK != o.Requests-tc.errStatus || r.Errors[stats.ErrStatus] != tc.errStatus ||
				r.Errors[stats.ErrReset] != tc.errRst || r.Errors[stats.ErrTimeout] != tc.socket.Timeout {
				t.Errorf("result ok %d errors %v", r.OK, r.Errors.Map())
			}
			if r.Elapsed != s.Duration || r.RPS() <= 0 {
				t.Errorf("elapsed %v rps %v", r.Elapsed, r.RPS())
			}
			if (tc.errStatus > 0 || tc.errRst > 0) != (r.LastErr != nil) {
				t.Errorf("last error %v", r.LastErr)
			}
			if tc.hist {
				checkHist(t, s, r.Latency)
			} else {
				checkQuantiles(t, s, r.Latency)
			}
		})
	}
}

// checkHist checks the exported histogram against wrk's own percentiles
// (same rank rule as wrk's stats_percentile) and perf's re-recorded copy.
func checkHist(t *testing.T, s *Script, h *stats.Histogram) {
	t.Helper()
	var total int64
	for _, b := range s.Hist {
		total += b.Count
	}
	if h.Count() != total {
		t.Errorf("histogram count %d, exported %d", h.Count(), total)
	}
	if s.Hist[0].Latency != s.Min || s.Hist[len(s.Hist)-1].Latency != s.Max {
		t.Errorf("histogram spans %v..%v, script says %v..%v", s.Hist[0].Latency, s.Hist[len(s.Hist)-1].Latency, s.Min, s.Max)
	}
	for _, p := range s.Percentiles {
		rank := int64(math.Round(p.Percentile/100*float64(total) + 0.5))
		if got := valueAtRank(s.Hist, rank); got != p.Latency {
			t.Errorf("p%v from the exported histogram = %v, wrk says %v", p.Percentile, got, p.Latency)
		}
		// perf's HDR histogram rounds ranks down and values up (0.1%).
		lo, hi := valueAtRank(s.Hist, rank-1), valueAtRank(s.Hist, rank+1)
		if q := h.Quantile(p.Percentile); q < lo || q > hi+hi/500+time.Microsecond {
			t.Errorf("p%v re-recorded = %v, want within %v..%v", p.Percentile, q, lo, hi)
		}
	}
	if !near(h.Max(), s.Max, 0.002, time.Microsecond) {
		t.Errorf("max re-recorded %v, wrk %v", h.Max(), s.Max)
	}
}

func checkQuantiles(t *testing.T, s *Script, h *stats.Histogram) {
	t.Helper()
	if h.Count() != s.Requests {
		t.Errorf("histogram count %d, want the %d requests", h.Count(), s.Requests)
	}
	for _, p := range s.Percentiles {
		var lo, hi time.Duration
		for _, q := range s.Quantiles {
			if q.Percentile <= p.Percentile {
				lo = q.Latency
			} else if hi == 0 {
				hi = q.Latency
			}
		}
		if hi == 0 {
			hi = s.Max
		}
		q := h.Quantile(p.Percentile)
		if q < lo-lo/500 || q > hi+hi/500+time.Microsecond {
			t.Errorf("p%v from quantiles = %v, want within %v..%v (wrk: %v)", p.Percentile, q, lo, hi, p.Latency)
		}
		// 50, 90, 99 and 99.9 are sampled points: wrk's value comes back.
		if !near(q, p.Latency, 0.002, time.Microsecond) {
			t.Errorf("p%v from quantiles = %v, wrk says %v", p.Percentile, q, p.Latency)
		}
	}
}

func valueAtRank(hist []Bucket, rank int64) time.Duration {
	var n int64
	for _, b := range hist {
		n += b.Count
		if n >= rank {
			return b.Latency
		}
	}
	return hist[len(hist)-1].Latency
}

func near(a, b time.Duration, rel float64, abs time.Duration) bool {
	d := a - b
	if d < 0 {
		d = -d
	}
	return d <= abs || float64(d) <= rel*float64(max(a, b))
}

const goodRun = `Running 1s test @ http://127.0.0.1:1/
  1 threads and 2 connections
  Latency Distribution
     50%   34.00us
  10 requests in 1.00s, 1.00KB read
  Non-2xx or 3xx responses: 2
Requests/sec:     10.00
perf-wrk v1
perf-wrk summary duration_us 1000000 requests 10 bytes 1024
perf-wrk errors connect 0 read 0 write 0 status 2 timeout 0
perf-wrk latency min 30 max 40
perf-wrk percentile 50 34
perf-wrk hist 30 5
perf-wrk hist 40 5
perf-wrk end hist 2
`

func TestParseSynthetic(t *testing.T) {
	o, err := Parse([]byte(goodRun))
	if err != nil {
		t.Fatal(err)
	}
	r, err := o.Result()
	if err != nil {
		t.Fatal(err)
	}
	if r.OK != 8 || r.Errors[stats.ErrStatus] != 2 || r.Total() != 10 || r.Latency.Count() != 10 || r.Elapsed != time.Second {
		t.Errorf("result ok %d errors %v count %d elapsed %v", r.OK, r.Errors.Map(), r.Latency.Count(), r.Elapsed)
	}
	if q := r.Latency.Quantile(50); q != 30*time.Microsecond {
		t.Errorf("p50 = %v, want 30µs", q)
	}
}

// TestParseRejects checks malformed and self-contradicting outputs: each
// case edits goodRun.
func TestParseRejects(t *testing.T) {
	tests := []struct {
		name, old, new string
		atResult       bool // Parse succeeds, Result must fail
		all            bool // replace every occurrence
	}{
		{name: "no requests line", old: "  10 requests in 1.00s, 1.00KB read\n", new: ""},
		{name: "second requests line", old: "Requests/sec", new: "  10 requests in 1.00s, 1KB read\nRequests/sec"},
		{name: "bad duration unit", old: "in 1.00s,", new: "in 1.00x,"},
		{name: "negative requests", old: "  10 requests", new: "  -10 requests"},
		{name: "percent over 100", old: "50%   34.00us", new: "150%   34.00us"},
		{name: "nan rate", old: "Requests/sec:     10.00", new: "Requests/sec:     NaN"},
		{name: "no version", old: "perf-wrk v1\n", new: ""},
		{name: "second summary", old: "perf-wrk errors", new: "perf-wrk summary duration_us 1 requests 1 bytes 1\nperf-wrk errors"},
		{name: "missing key", old: "timeout 0", new: ""},
		{name: "repeated key", old: "timeout 0", new: "read 0"},
		{name: "min over max", old: "min 30 max 40", new: "min 50 max 40"},
		{name: "hist not ascending", old: "hist 40 5", new: "hist 30 5"},
		{name: "hist overflow value", old: "hist 40 5", new: "hist 40 99999999999999999999"},
		{name: "end count", old: "end hist 2", new: "end hist 3"},
		{name: "end kind", old: "end hist 2", new: "end buckets 2"},
		{name: "after end", old: "end hist 2\n", new: "end hist 2\nperf-wrk hist 50 1\n"},
		{name: "second block", old: "end hist 2\n", new: "end hist 2\nperf-wrk v1\n"},
		{name: "quantiles after hist", old: "perf-wrk end", new: "perf-wrk quantile 50 3\nperf-wrk end"},
		{name: "cut short", old: "perf-wrk end hist 2\n", new: "", atResult: true},
		{name: "no script", old: "perf-wrk", new: "other", atResult: true, all: true},
		{name: "requests disagree", old: "requests 10 bytes", new: "requests 11 bytes", atResult: true},
		{name: "status disagree", old: "status 2", new: "status 3", atResult: true},
		{name: "status over requests", old: "status 2 timeout", new: "status 20 timeout", atResult: true},
		{name: "empty histogram", old: "perf-wrk hist 30 5\nperf-wrk hist 40 5\nperf-wrk end hist 2", new: "perf-wrk end hist 0", atResult: true},
		{name: "counts overflow", old: "hist 30 5", new: "hist 30 9223372036854775807", atResult: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := 1
			if tc.all {
				n = -1
			}
			in := strings.Replace(goodRun, tc.old, tc.new, n)
			if in == goodRun {
				t.Fatalf("edit %q does not apply", tc.old)
			}
			o, err := Parse([]byte(in))
			if !tc.atResult {
				if !errors.Is(err, ErrOutput) {
					t.Fatalf("Parse = %v, want ErrOutput", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if _, err := o.Result(); !errors.Is(err, ErrOutput) {
				t.Fatalf("Result = %v, want ErrOutput", err)
			}
		})
	}
}

func TestWrkDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"34.00us", 34 * time.Microsecond}, {"4.44ms", 4440 * time.Microsecond}, {"1.10s", 1100 * time.Millisecond},
		{"2.00m", 2 * time.Minute}, {"1.00h", time.Hour}, {"0.87ms", 870 * time.Microsecond},
	}
	for _, tc := range tests {
		if got, err := wrkDuration(tc.in); err != nil || got != tc.want {
			t.Errorf("wrkDuration(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "us", "1.0", "-1s", "NaNs", "Infms", "1e30h", "1.0xs"} {
		if _, err := wrkDuration(bad); err == nil {
			t.Errorf("wrkDuration(%q) accepted", bad)
		}
	}
}

// FuzzParse feeds untrusted bytes to the parser: it must not panic, and
// whatever it accepts must convert to a consistent result or an error.
func FuzzParse(f *testing.F) {
	f.Add([]byte(goodRun))
	for _, name := range []string{"c2.txt", "errors.txt", "quantiles.txt", "plain.txt"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("  1 requests in 1s, 1B read\nperf-wrk v1\nperf-wrk quantile 50 10\nperf-wrk end quantiles 1\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrOutput) {
				t.Fatalf("error %v is not ErrOutput", err)
			}
			return
		}
		r, err := o.Result()
		if err != nil {
			if !errors.Is(err, ErrOutput) {
				t.Fatalf("error %v is not ErrOutput", err)
			}
			return
		}
		s := o.Script
		want := s.Requests + s.Socket.Connect + s.Socket.Read + s.Socket.Write + s.Socket.Timeout
		if r.OK < 0 || r.Total() != want || r.Elapsed < 0 || r.Latency == nil {
			t.Fatalf("result ok %d total %d (want %d) elapsed %v", r.OK, r.Total(), want, r.Elapsed)
		}
		if s.Requests > s.Socket.Timeout && r.Latency.Count() == 0 {
			t.Fatal("requests without latencies")
		}
	})
}
