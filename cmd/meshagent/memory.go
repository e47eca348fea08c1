package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Memory defaults of `meshagent run`. A sidecar's request path allocates
// little in steady state; its heap grows with configuration (routes,
// upstreams) and the garbage of each rebuild. GOGC 50 bounds the heap to
// 1.5x the live configuration instead of 2x at a CPU cost paid only
// while configuration changes (docs/benchmarks/memory.md).
const defaultGCPercent = 50

// defaultGCHeadroom is the least heap growth allowed between two
// collections. With a small live heap (one route: ~3 MB) GOGC 50 alone
// collects after every 1.5 MB allocated, ~20 times a second at 10k gRPC
// requests/s, and scanning then costs a quarter of the proxy's user CPU
// (docs/benchmarks/dataplane.md). The floor only matters while
// live*percent/100 is below it, so large configurations keep their 1.5x
// bound; a settled sidecar returns the headroom (reclaim).
const defaultGCHeadroom = 8 << 20

// defaultHistoryLimit is the watch history `run` keeps, in revisions.
// Each revision keeps the previous versions of the objects it changed
// (raw JSON and decoded value, ~1 KB for a small upstream, ten times that
// for one with 100 endpoints); under endpoint churn the store's own
// default of 10,000 revisions held ~7 MB per 8k small updates. 1,000
// revisions still cover any watcher that is seconds behind.
const defaultHistoryLimit = 1000

// memConfig is the memory tuning of `meshagent run`.
type memConfig struct {
	// gcPercent is the GC target percentage (GOGC); 0: keep the runtime's
	// value when the GOGC environment variable is set, else
	// defaultGCPercent.
	gcPercent int
	// gcHeadroom is the least heap growth between collections, in bytes
	// (0: none; see gcFloor).
	gcHeadroom uint64
	// trim returns free heap to the OS and drops the process's mappings
	// of the executable's read-only pages once startup is done and after
	// each burst of configuration changes (see startReclaim).
	trim bool
	// historyLimit is the store's watch history in revisions
	// (store.Options.HistoryLimit).
	historyLimit int
	// minInterval bounds how often configuration changes cause a
	// reclaim (0: defaultReclaimInterval), so a control plane pushing
	// every few seconds does not cost a forced GC each time.
	minInterval time.Duration
}

// defaultReclaimInterval is the least time between two reclaims after
// configuration changes.
const defaultReclaimInterval = 10 * time.Second

func (c *memConfig) interval() time.Duration {
	if c.minInterval > 0 {
		return c.minInterval
	}
	return defaultReclaimInterval
}

func (c *memConfig) flags(fs *flag.FlagSet) {
	fs.IntVar(&c.gcPercent, "gc-percent", 0, "GC target percentage (as GOGC; 0: $GOGC if set, else 50; -1: off)")
	c.gcHeadroom = defaultGCHeadroom
	fs.Func("gc-min-headroom", "least heap growth between two garbage collections, e.g. 8MiB; raises the GC percentage while the live heap is small (0: off) (default 8MiB)", func(v string) error {
		n, err := parseBytes(v)
		if err != nil {
			return err
		}
		c.gcHeadroom = n
		return nil
	})
	c.historyLimit = defaultHistoryLimit
	fs.Func("history-limit", "store revisions of watch history kept for etcd watchers that resume; older ones are compacted, as etcd's, and APISIX then reloads (default "+strconv.Itoa(defaultHistoryLimit)+")", func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return fmt.Errorf("must be an integer >= 1, got %q", v)
		}
		c.historyLimit = n
		return nil
	})
	fs.BoolVar(&c.trim, "memory-trim", true, "once ready and after each burst of config changes, return free heap to the OS and unmap executable pages touched only at init (they fault back from the page cache if used)")
}

// applyGC sets the GC percentage: the flag wins, then $GOGC, then the
// default; then it starts the headroom floor unless GC is off or the
// floor is 0. It returns the floor's stop function (nil if none).
func (c *memConfig) applyGC(log *slog.Logger) (stop func()) {
	p := defaultGCPercent
	switch {
	case c.gcPercent != 0:
		p = c.gcPercent
	case os.Getenv("GOGC") != "":
		p = envGCPercent(os.Getenv("GOGC"))
	}
	debug.SetGCPercent(p)
	log.Debug("gc percent set", "percent", p, "min_headroom", c.gcHeadroom)
	if p < 0 || c.gcHeadroom == 0 {
		return nil
	}
	return startGCFloor(p, c.gcHeadroom)
}

// envGCPercent reads $GOGC as the runtime does: "off" is -1, anything
// else not a number is the runtime's default, 100.
func envGCPercent(v string) int {
	if v == "off" {
		return -1
	}
	if n, err := strconv.Atoi(v); err == nil {
		return n
	}
	return 100
}

// gcFloor keeps the heap goal at least headroom above the live heap: after
// each collection it sets the GC percentage to
// max(base, 100*headroom/live). It runs as a cleanup of an object
// dropped each cycle, so it costs one metrics read per collection.
type gcFloor struct {
	base     int
	headroom uint64
	cur      int
	stopped  atomic.Bool
	sample   []metrics.Sample
}

// startGCFloor arms the floor; stop ends it and restores base.
func startGCFloor(base int, headroom uint64) (stop func()) {
	f := &gcFloor{base: base, headroom: headroom, cur: base,
		sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
	f.tune()
	f.arm()
	return func() {
		f.stopped.Store(true)
		debug.SetGCPercent(base)
	}
}

func (f *gcFloor) arm() {
	// Large enough not to be a tiny allocation, whose cleanups may
	// never run.
	runtime.AddCleanup(new([64]byte), func(f *gcFloor) {
		if f.stopped.Load() {
			return
		}
		f.tune()
		f.arm()
	}, f)
}

// heapMinimum is the runtime's least heap goal at GOGC 100; it scales
// with the percentage.
const heapMinimum = 4 << 20

// percent is the GC percentage for a live heap of live bytes: the goal
// live*(1+p/100) reaches live+headroom, but the runtime's minimum goal
// heapMinimum*p/100 must not pass it (it would for heaps under 4 MB).
func (f *gcFloor) percent(live uint64) int {
	if live < 1<<20 {
		live = 1 << 20
	}
	want := min(f.headroom*100/live, (live+f.headroom)*100/heapMinimum)
	return max(f.base, int(want))
}

func (f *gcFloor) tune() {
	metrics.Read(f.sample)
	var live uint64
	if f.sample[0].Value.Kind() == metrics.KindUint64 {
		live = f.sample[0].Value.Uint64()
	}
	p := f.percent(live)
	// Small moves are not worth a controller update.
	if d := p - f.cur; d > f.cur/8 || -d > f.cur/8 {
		f.cur = p
		debug.SetGCPercent(p)
	}
}

// parseBytes parses a size: a plain number of bytes or one with a KiB,
// MiB or GiB suffix.
func parseBytes(v string) (uint64, error) {
	mult := uint64(1)
	num := v
	for suf, m := range map[string]uint64{"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30} {
		if strings.HasSuffix(v, suf) {
			num, mult = strings.TrimSuffix(v, suf), m
			break
		}
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil || n > (1<<62)/mult {
		return 0, fmt.Errorf("must be a size in bytes, KiB, MiB or GiB, got %q", v)
	}
	return n * mult, nil
}

// settleDelay is how long the configuration must stay unchanged before a
// reclaim: bulk applies (10k routes through etcd) arrive as bursts of
// rebuilds, and reclaiming inside a burst would only be undone.
const settleDelay = time.Second

// startReclaim returns memory as soon as the process is ready and again
// each time a burst of configuration changes has settled (the snapshot revision
// unchanged for settleDelay): debug.FreeOSMemory hands the garbage of the
// standalone file's parse and of the rebuilds back to the OS (the runtime's
// background scavenger would keep it for minutes), and trimExecutable
// unmaps the executable pages touched only by startup and by the
// compiler of snapshots. Each reclaim costs one full GC, paid only after a
// configuration change (at most once per minInterval), never per request.
func (c *memConfig) startReclaim(ctx context.Context, ready func() bool, rev func() int64, log *slog.Logger) {
	if !c.trim {
		return
	}
	go func() {
		t := time.NewTicker(settleDelay / 4)
		defer t.Stop()
		for !ready() {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
		reclaim(log) // startup garbage and init-only pages, at once
		// Pending once more: sources keep settling right after ready
		// (an xDS stream's first pushes, a file re-read).
		last, pending, quiet := rev(), true, time.Now()
		var lastReclaim time.Time // startup reclaims do not count
		startup := true
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if r := rev(); r != last {
				last, pending, quiet = r, true, time.Now()
				continue
			}
			if !pending || time.Since(quiet) < settleDelay || time.Since(lastReclaim) < c.interval() {
				continue
			}
			pending = false
			if !startup {
				lastReclaim = time.Now()
			}
			startup = false
			reclaim(log)
		}
	}()
}

// reclaim returns free heap pages to the OS and trims the executable.
func reclaim(log *slog.Logger) {
	debug.FreeOSMemory()
	n, err := trimExecutable()
	if err != nil {
		log.Warn("memory trim failed", "err", err)
		return
	}
	log.Debug("memory reclaimed", "executable_bytes_trimmed", n)
}
