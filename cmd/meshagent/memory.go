package main

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"runtime/debug"
	"time"
)

// Memory defaults of `meshagent run`. A sidecar's request path allocates
// little in steady state; its heap grows with configuration (routes,
// upstreams) and the garbage of each rebuild. GOGC 50 bounds the heap to
// 1.5x the live configuration instead of 2x at a CPU cost paid only
// while configuration changes (docs/benchmarks/memory.md).
const defaultGCPercent = 50

// memConfig is the memory tuning of `meshagent run`.
type memConfig struct {
	// gcPercent is the GC target percentage (GOGC); 0: keep the runtime's
	// value when the GOGC environment variable is set, else
	// defaultGCPercent.
	gcPercent int
	// trim drops the process's mappings of the executable's read-only
	// pages once startup is done (see trimExecutable).
	trim bool
}

func (c *memConfig) flags(fs *flag.FlagSet) {
	fs.IntVar(&c.gcPercent, "gc-percent", 0, "GC target percentage (as GOGC; 0: $GOGC if set, else 50; -1: off)")
	fs.BoolVar(&c.trim, "memory-trim", true, "once started, unmap the executable's read-only pages touched only at init (they fault back from the page cache if used)")
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

// startTrim trims the executable's pages once the process has finished
// starting (as soon as it is ready), and once more ten seconds later, when
// the pages used only by the first snapshot and the first connections are
// cold.
func (c *memConfig) startTrim(ctx context.Context, ready func() bool, log *slog.Logger) {
	if !c.trim {
		return
	}
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for !ready() {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
		for _, wait := range []time.Duration{0, 10 * time.Second} {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			n, err := trimExecutable()
			if err != nil {
				log.Warn("memory trim failed", "err", err)
				return
			}
			log.Debug("memory trimmed", "bytes", n)
		}
	}()
}
