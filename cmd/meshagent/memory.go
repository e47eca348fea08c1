package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"time"
)

// Memory defaults of `meshagent run`. A sidecar's request path allocates
// little in steady state; its heap grows with configuration (routes,
// upstreams) and the garbage of each rebuild. GOGC 50 bounds the heap to
// 1.5x the live configuration instead of 2x at a CPU cost paid only
// while configuration changes (docs/benchmarks/memory.md).
const defaultGCPercent = 50

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
// default.
func (c *memConfig) applyGC(log *slog.Logger) {
	p := defaultGCPercent
	switch {
	case c.gcPercent != 0:
		p = c.gcPercent
	case os.Getenv("GOGC") != "":
		return
	}
	debug.SetGCPercent(p)
	log.Debug("gc percent set", "percent", p)
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
