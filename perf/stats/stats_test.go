package stats

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

func TestHistogramPercentilesOfKnownDistributions(t *testing.T) {
	uniform := func(h *Histogram) {
		for i := 1; i <= 10000; i++ { // 1..10000 µs
			h.Record(time.Duration(i) * time.Microsecond)
		}
	}
	constant := func(h *Histogram) {
		for range 1000 {
			h.Record(5 * time.Millisecond)
		}
	}
	bimodal := func(h *Histogram) { // 99% at 1 ms, 1% at 100 ms
		for i := range 10000 {
			if i%100 == 0 {
				h.Record(100 * time.Millisecond)
			} else {
				h.Record(time.Millisecond)
			}
		}
	}
	tests := []struct {
		name string
		fill func(*Histogram)
		want Percentiles
	}{
		{"uniform", uniform, Percentiles{P50: 5, P90: 9, P99: 9.9, P999: 9.99, Max: 10, Mean: 5.0005}},
		{"constant", constant, Percentiles{P50: 5, P90: 5, P99: 5, P999: 5, Max: 5, Mean: 5}},
		{"bimodal", bimodal, Percentiles{P50: 1, P90: 1, P99: 1, P999: 100, Max: 100, Mean: 1.99}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := NewHistogram()
			tc.fill(h)
			got := h.Summary()
			for _, c := range []struct {
				name      string
				got, want float64
			}{{"p50", got.P50, tc.want.P50}, {"p90", got.P90, tc.want.P90}, {"p99", got.P99, tc.want.P99},
				{"p99.9", got.P999, tc.want.P999}, {"max", got.Max, tc.want.Max}, {"mean", got.Mean, tc.want.Mean}} {
				// HDR with 3 significant digits: within 0.1% plus one µs.
				if math.Abs(c.got-c.want) > c.want*0.001+0.001 {
					t.Errorf("%s = %v ms, want %v ms", c.name, c.got, c.want)
				}
			}
		})
	}
}

func TestHistogramClampsAndMerges(t *testing.T) {
	a, b := NewHistogram(), NewHistogram()
	a.Record(0)
	a.Record(time.Hour)
	b.Record(time.Millisecond)
	a.Merge(b)
	a.Merge(nil)
	if a.Count() != 3 {
		t.Fatalf("count = %d, want 3", a.Count())
	}
	if a.Max() < 59*time.Second || a.Max() > 61*time.Second {
		t.Errorf("max = %v, want ~60s (clamped)", a.Max())
	}
	if q := a.Quantile(30); q != time.Microsecond {
		t.Errorf("min quantile = %v, want 1µs (clamped)", q)
	}
}

func TestHistogramRecordN(t *testing.T) {
	h := NewHistogram()
	h.RecordN(100*time.Microsecond, 900)
	h.RecordN(10*time.Millisecond, 100)
	h.RecordN(time.Second, 0)
	h.RecordN(time.Second, -5)
	h.RecordN(time.Hour, 1)
	if h.Count() != 1001 {
		t.Fatalf("count = %d, want 1001 (n <= 0 adds nothing)", h.Count())
	}
	if q := h.Quantile(50); q != 100*time.Microsecond {
		t.Errorf("p50 = %v, want 100µs", q)
	}
	if q := h.Quantile(95); q < 9990*time.Microsecond || q > 10010*time.Microsecond {
		t.Errorf("p95 = %v, want ~10ms", q)
	}
	if m := h.Max(); m < 59*time.Second || m > 61*time.Second {
		t.Errorf("max = %v, want ~60s (clamped)", m)
	}
}

func TestCurveIsMonotonicAndLogSpaced(t *testing.T) {
	h := NewHistogram()
	if h.Curve() != nil {
		t.Fatal("empty histogram must have no curve")
	}
	for i := 1; i <= 100000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	c := h.Curve()
	if len(c) < 40 {
		t.Fatalf("curve has %d points, want >= 40", len(c))
	}
	for i := 1; i < len(c); i++ {
		if c[i].Percentile < c[i-1].Percentile || c[i].LatencyMS < c[i-1].LatencyMS {
			t.Fatalf("curve not monotonic at %d: %+v then %+v", i, c[i-1], c[i])
		}
	}
	if last := c[len(c)-1]; last.Percentile != 100 || math.Abs(last.LatencyMS-100) > 0.1 {
		t.Errorf("last point = %+v, want 100%% at 100ms", last)
	}
	if c[0].Percentile != 0 || c[0].LatencyMS != 0.001 {
		t.Errorf("first point = %+v, want the minimum (1µs) at 0%%", c[0])
	}
	if c[10].Percentile < 89.9 || c[10].Percentile > 90.1 {
		t.Errorf("point 10 = %v%%, want 90%% (log scale, 10 points per decade)", c[10].Percentile)
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		err  error
		want ErrorKind
	}{
		{&KindError{Kind: ErrStatus, Err: errors.New("503")}, ErrStatus},
		{fmt.Errorf("wrapped: %w", &KindError{Kind: ErrTimeout, Err: io.EOF}), ErrTimeout},
		{&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, ErrConnect},
		{&net.OpError{Op: "dial", Err: errors.New("x")}, ErrConnect},
		{os.ErrDeadlineExceeded, ErrTimeout},
		{io.EOF, ErrReset},
		{&net.OpError{Op: "read", Err: syscall.ECONNRESET}, ErrReset},
		{errors.New("weird"), ErrOther},
	}
	for _, tc := range tests {
		if got := Classify(tc.err); got != tc.want {
			t.Errorf("Classify(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	var c ErrorCounts
	c.Add(ErrReset)
	c.Add(ErrReset)
	c.Add(ErrConnect)
	if c.Total() != 3 || c.Map()["reset"] != 2 || c.Map()["connect"] != 1 || len(c.Map()) != 2 {
		t.Errorf("counts = %v", c.Map())
	}
	for _, k := range ErrorKinds {
		if k.String() == "unknown" {
			t.Errorf("kind %d has no name", k)
		}
	}
}

func TestParseProc(t *testing.T) {
	stat := []byte("1234 (my (odd) proc) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 100 1000 200 ...")
	cpu, err := ParseStatCPU(stat)
	if err != nil || cpu != 3*time.Second {
		t.Errorf("ParseStatCPU = %v, %v; want 3s", cpu, err)
	}
	for _, bad := range []string{"no paren", "1 (x) S 1 2", "1 (x) S 1 2 3 4 5 6 7 8 9 10 x 12"} {
		if _, err := ParseStatCPU([]byte(bad)); !errors.Is(err, ErrProcFormat) {
			t.Errorf("ParseStatCPU(%q) err = %v, want ErrProcFormat", bad, err)
		}
	}
	rss, hwm, err := ParseStatusMemory([]byte("Name:\tx\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n"))
	if err != nil || rss != 10240 || hwm != 20480 {
		t.Errorf("ParseStatusMemory = %d %d %v", rss, hwm, err)
	}
	if _, _, err := ParseStatusMemory([]byte("Name:\tkthread\n")); !errors.Is(err, ErrProcFormat) {
		t.Errorf("missing lines: err = %v", err)
	}
	s1, err := ReadProc(os.Getpid())
	if err != nil || s1.RSSKB <= 0 || s1.HWMKB < s1.RSSKB {
		t.Fatalf("ReadProc(self) = %+v, %v", s1, err)
	}
	// Burn CPU until /proc shows it (the machine may be busy, so wall
	// time alone says little): at least 50 ms within 10 s.
	var u Usage
	for t0 := time.Now(); time.Since(t0) < 10*time.Second && u.CPUSeconds < 0.05; {
		for t1 := time.Now(); time.Since(t1) < 20*time.Millisecond; {
		}
		s2, err := ReadProc(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		u = Between(s1, s2)
	}
	if u.CPUSeconds < 0.05 || u.WallSeconds <= 0 || u.PeakRSSMB <= 0 {
		t.Errorf("usage after spinning = %+v, want >= 0.05 cpu s", u)
	}
	if v := (Usage{CPUSeconds: 1, WallSeconds: 10}).VCPUPer1kRPS(2000); math.Abs(v-0.05) > 1e-9 {
		t.Errorf("VCPUPer1kRPS = %v, want 0.05", v)
	}
	if _, err := ReadProc(1 << 30); err == nil {
		t.Error("ReadProc of a missing pid must fail")
	}
}

func TestDescribeMachine(t *testing.T) {
	m := DescribeMachine()
	if m.NumCPU < 1 || m.Go == "" || m.Kernel == "" || m.MemTotal == "" {
		t.Errorf("machine = %+v", m)
	}
}

func FuzzParseStatCPU(f *testing.F) {
	f.Add([]byte("1 (a) S 1 1 1 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0"))
	f.Add([]byte("1 (a b)) R"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if d, err := ParseStatCPU(b); err == nil && d < 0 {
			t.Fatalf("negative cpu %v", d)
		}
	})
}

func FuzzParseStatusMemory(f *testing.F) {
	f.Add([]byte("VmHWM:\t1 kB\nVmRSS:\t1 kB\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, h, err := ParseStatusMemory(b); err == nil && (r < 0 || h < 0) {
			t.Fatalf("negative memory %d %d", r, h)
		}
	})
}
