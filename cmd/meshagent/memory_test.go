package main

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"os"
	"regexp"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// rssFileKB reads RssFile (file-backed resident pages) of this process.
func rssFileKB(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status: %v", err)
	}
	m := regexp.MustCompile(`RssFile:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		t.Skip("kernel does not report RssFile")
	}
	n, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return n
}

func TestTrimExecutableDropsFileBackedPages(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("trimExecutable is Linux only")
	}
	before := rssFileKB(t)
	n, err := trimExecutable()
	if err != nil {
		t.Fatal(err)
	}
	after := rssFileKB(t)
	if n <= 0 {
		t.Fatalf("trimExecutable advised %d bytes, want the executable's read-only mappings", n)
	}
	if after >= before {
		t.Fatalf("RssFile %d kB after trim, %d kB before: want fewer", after, before)
	}
	// The process keeps working: code and read-only data fault back in.
	runtime.GC()
	if _, err := strconv.Atoi("12345"); err != nil {
		t.Fatal(err)
	}
	t.Logf("RssFile %d kB -> %d kB (advised %d MB)", before, after, n>>20)
}

func TestApplyGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	for _, tc := range []struct {
		name string
		flag int
		env  string
		want int
	}{
		{"default", 0, "", defaultGCPercent},
		{"flag wins", 80, "200", 80},
		{"env", 0, "200", 200},
		{"env off", 0, "off", -1},
		{"off", -1, "", -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetGCPercent(100)
			t.Setenv("GOGC", tc.env)
			if tc.env == "" {
				os.Unsetenv("GOGC")
			}
			c := memConfig{gcPercent: tc.flag}
			if stop := c.applyGC(slog.New(slog.DiscardHandler)); stop != nil {
				t.Fatal("floor started with gcHeadroom 0")
			}
			if got := debug.SetGCPercent(100); got != tc.want {
				t.Fatalf("GC percent %d, want %d", got, tc.want)
			}
		})
	}
}

func TestGCFloorPercent(t *testing.T) {
	f := gcFloor{base: 50, headroom: 8 << 20}
	for _, tc := range []struct {
		live uint64
		want int
	}{
		{0, 225},        // unknown: as 1 MiB; the heap minimum bounds it
		{1 << 20, 225},  // 8 MiB above 1 MiB would be 800, but 4 MiB*8 = 32 MiB
		{3 << 20, 266},  // 8 MiB above 3 MiB
		{4 << 20, 200},  // 8 MiB above 4 MiB
		{12 << 20, 66},  // 100*8/12
		{16 << 20, 50},  // base already gives 8 MiB
		{100 << 20, 50}, // large heaps keep their 1.5x bound
	} {
		if got := f.percent(tc.live); got != tc.want {
			t.Errorf("percent(%d) = %d, want %d", tc.live, got, tc.want)
		}
	}
}

// The floor cuts collections while the live heap is small: 64 MiB of
// short-lived garbage with a ~zero live heap takes dozens of cycles at
// GOGC 50 and at most a few with a 32 MiB floor; stop restores the base.
func TestGCFloorCollections(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	cycles := func() uint64 {
		s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
		metrics.Read(s)
		return s[0].Value.Uint64()
	}
	var sink []byte
	churn := func() uint64 {
		runtime.GC()
		before := cycles()
		for range 64 << 10 {
			sink = make([]byte, 1024)
		}
		_ = sink
		return cycles() - before
	}
	c := memConfig{gcPercent: 50}
	c.applyGC(slog.New(slog.DiscardHandler))
	base := churn()
	c.gcHeadroom = 32 << 20
	stop := c.applyGC(slog.New(slog.DiscardHandler))
	if stop == nil {
		t.Fatal("no floor started")
	}
	runtime.GC() // the floor tunes after a collection
	floored := churn()
	stop()
	if got := debug.SetGCPercent(50); got != 50 {
		t.Errorf("after stop GC percent %d, want 50", got)
	}
	t.Logf("GC cycles for 64 MiB of garbage: %d at GOGC 50, %d with a 32 MiB floor", base, floored)
	if base < 8 || floored > 4 {
		t.Fatalf("cycles %d without floor, %d with: the floor did not take effect", base, floored)
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]uint64{"0": 0, "4096": 4096, "8MiB": 8 << 20, "1GiB": 1 << 30, "16KiB": 16 << 10} {
		if got, err := parseBytes(in); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "8MB", "-1", "x", "99999999999GiB"} {
		if _, err := parseBytes(in); err == nil {
			t.Errorf("parseBytes(%q): no error", in)
		}
	}
}

// countHandler counts "memory reclaimed" records.
type countHandler struct{ n *atomic.Int64 }

func (h countHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h countHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "memory reclaimed" {
		h.n.Add(1)
	}
	return nil
}
func (h countHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countHandler) WithGroup(string) slog.Handler      { return h }

// Reclaim runs once when ready, again only after a revision change has
// settled, and never while the process is not ready or when disabled.
func TestStartReclaim(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("trimExecutable is Linux only")
	}
	var n atomic.Int64
	var ready atomic.Bool
	var rev atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := memConfig{trim: true, minInterval: 3 * settleDelay}
	c.startReclaim(ctx, ready.Load, rev.Load, slog.New(countHandler{&n}))
	waitFor := func(want int64, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for n.Load() < want && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if got := n.Load(); got != want {
			t.Fatalf("%d reclaims, want %d", got, want)
		}
	}
	time.Sleep(400 * time.Millisecond)
	waitFor(0, 0) // not ready: nothing
	ready.Store(true)
	waitFor(1, 2*time.Second) // at once when ready
	waitFor(2, 3*settleDelay) // and once more after startup settled
	time.Sleep(settleDelay + 300*time.Millisecond)
	waitFor(2, 0) // no change: no more reclaims
	rev.Store(7)
	time.Sleep(settleDelay / 2)
	waitFor(2, 0) // not settled yet
	waitFor(3, 3*settleDelay)
	rev.Store(8) // settles at once, but within minInterval of the last
	time.Sleep(settleDelay + settleDelay/2)
	waitFor(3, 0)
	waitFor(4, 3*settleDelay)

	var off atomic.Int64
	c = memConfig{trim: false}
	c.startReclaim(ctx, func() bool { return true }, rev.Load, slog.New(countHandler{&off}))
	time.Sleep(500 * time.Millisecond)
	if off.Load() != 0 {
		t.Fatal("reclaim ran with --memory-trim=false")
	}
}

func TestHistoryLimitFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int
		ok   bool
	}{
		{nil, defaultHistoryLimit, true},
		{[]string{"--history-limit", "50"}, 50, true},
		{[]string{"--history-limit", "0"}, 0, false},
		{[]string{"--history-limit", "x"}, 0, false},
	} {
		var c memConfig
		fs := flag.NewFlagSet("run", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		c.flags(fs)
		err := fs.Parse(tc.args)
		if (err == nil) != tc.ok || tc.ok && c.historyLimit != tc.want {
			t.Errorf("%v: limit %d err %v; want %d ok=%v", tc.args, c.historyLimit, err, tc.want, tc.ok)
		}
	}
}
