// Package scenario owns the perf harness's scenarios: compare (the same
// load against direct, meshagent, nginx and haproxy, rounds interleaved),
// tcp (bulk TCP throughput through each), churn (config pushes through
// meshagent's etcd emulation during load) and scale (1k/10k routes: apply
// time and memory). Each returns a report.Report. Scenarios start and stop
// the targets they are given; the backend is started by the caller.
package scenario

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/meshagent/meshagent/perf/load"
	"github.com/meshagent/meshagent/perf/report"
	"github.com/meshagent/meshagent/perf/stats"
	"github.com/meshagent/meshagent/perf/target"
)

// ErrConfig reports an invalid scenario configuration.
var ErrConfig = errors.New("scenario: invalid config")

// CompareConfig configures Compare.
type CompareConfig struct {
	// Backend is where every target forwards to (and what direct is).
	Backend target.Backend
	// Targets run in this order in every round; "direct" should be first.
	Targets []target.Target
	// Protocol of the load.
	Protocol load.Protocol
	// Load is the per-round load (Connections, Rate, Duration or Requests,
	// Warmup); Progress is set by Compare.
	Load load.Options
	// Rounds is the number of interleaved rounds (default 1).
	Rounds int
	// Client sets the path, payload and timeout of requests; Addr is set
	// per target.
	Client load.ClientConfig
	// Progress receives the live status line (nil: none).
	Progress *report.Progress
	// Log receives diagnostics (nil: discarded).
	Log *slog.Logger
}

// running is a started target and what was measured on it.
type running struct {
	t       target.Target
	addr    string
	res     *load.Result
	usage   stats.Usage
	measure bool
	idleMB  float64
}

// Compare runs cfg.Load against each target, rounds interleaved (direct,
// meshagent, nginx, haproxy, direct, ...), and reports per target with
// ratios to direct. Targets that cannot start or do not serve the
// protocol are listed as skipped.
func Compare(ctx context.Context, cfg CompareConfig) (*report.Report, error) {
	if cfg.Rounds <= 0 {
		cfg.Rounds = 1
	}
	if len(cfg.Targets) == 0 {
		return nil, fmt.Errorf("%w: no targets", ErrConfig)
	}
	if err := cfg.Load.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rep := newReport("compare", cfg.Protocol, cfg.Load, cfg.Rounds, cfg.Client.Payload)
	if cfg.Protocol == load.TCPBulk {
		rep.Scenario = "tcp"
	}
	var runs []*running
	defer func() {
		for _, r := range runs {
			if err := r.t.Stop(); err != nil {
				log.Warn("stop target", "target", r.t.Name(), "err", err)
			}
		}
	}()
	for _, t := range cfg.Targets {
		cfg.Progress.Update("[%s] starting %s", rep.Scenario, t.Name())
		ep, err := t.Start(ctx, cfg.Backend)
		if err != nil {
			rep.Skipped = append(rep.Skipped, report.Skip{Target: t.Name(), Reason: err.Error()})
			if serr := t.Stop(); serr != nil {
				log.Warn("stop failed target", "target", t.Name(), "err", serr)
			}
			continue
		}
		r := &running{t: t, addr: ep.For(cfg.Protocol), res: &load.Result{Latency: stats.NewHistogram()}}
		runs = append(runs, r)
		if n, ok := t.(*target.Nginx); ok && n.Note != "" {
			rep.Notes = append(rep.Notes, n.Note)
		}
		if r.addr == "" {
			rep.Skipped = append(rep.Skipped, report.Skip{Target: t.Name(), Reason: "does not serve " + cfg.Protocol.String()})
			continue
		}
		if pid := t.PID(); pid > 0 {
			if s, err := stats.ReadProc(pid); err == nil {
				r.measure, r.idleMB = true, float64(s.RSSKB)/1024
			}
		}
	}
	for round := 1; round <= cfg.Rounds; round++ {
		for _, r := range runs {
			if r.addr == "" {
				continue
			}
			if err := runOne(ctx, cfg, rep.Scenario, round, r); err != nil {
				return nil, err
			}
		}
	}
	bytesPer := 0
	if cfg.Protocol == load.TCPBulk {
		bytesPer = payloadOf(cfg.Protocol, cfg.Client.Payload)
	}
	for _, r := range runs {
		if r.addr == "" {
			continue
		}
		var u *stats.Usage
		if r.measure {
			u = &r.usage
		}
		rep.Targets = append(rep.Targets, report.FromResult(r.t.Name(), r.res, u, r.idleMB, bytesPer))
	}
	rep.AddRatios("direct")
	cfg.Progress.Done()
	return rep, nil
}

func runOne(ctx context.Context, cfg CompareConfig, scenario string, round int, r *running) error {
	cc := cfg.Client
	cc.Addr = r.addr
	f, err := load.NewFactory(cfg.Protocol, cc)
	if err != nil {
		return err
	}
	o := cfg.Load
	o.Progress = func(p load.Progress) {
		phase := "run"
		if p.Warmup {
			phase = "warm-up"
		}
		cfg.Progress.Update("[%s] %s round %d/%d %s %4.1fs  %8.0f rps  %d done  %d errors",
			scenario, r.t.Name(), round, cfg.Rounds, phase, p.Elapsed.Seconds(), p.RPS, p.Completed, p.Errors)
	}
	// CPU is sampled when measurement starts, so warm-up is excluded.
	var beforeCh chan stats.ProcSample
	if r.measure {
		beforeCh = make(chan stats.ProcSample, 1)
		go func() {
			defer close(beforeCh)
			t := time.NewTimer(o.Warmup)
			defer t.Stop()
			select {
			case <-t.C:
			case <-ctx.Done():
				return
			}
			if s, err := stats.ReadProc(r.t.PID()); err == nil {
				beforeCh <- s
			}
		}()
	}
	res, err := load.Run(ctx, f, o)
	if err != nil {
		return fmt.Errorf("scenario: %s round %d: %w", r.t.Name(), round, err)
	}
	r.res.Merge(res)
	if r.measure {
		before, ok := <-beforeCh
		after, err := stats.ReadProc(r.t.PID())
		if !ok || err != nil {
			r.measure = false
			return nil
		}
		u := stats.Between(before, after)
		r.usage.CPUSeconds += u.CPUSeconds
		r.usage.WallSeconds += u.WallSeconds
		r.usage.RSSMB, r.usage.PeakRSSMB = u.RSSMB, u.PeakRSSMB
	}
	return nil
}

func payloadOf(p load.Protocol, n int) int {
	if n > 0 {
		return n
	}
	if p == load.TCPBulk {
		return 1 << 20
	}
	return 64
}

func newReport(name string, p load.Protocol, o load.Options, rounds, payload int) *report.Report {
	return &report.Report{
		Schema: report.SchemaVersion, Scenario: name, Started: time.Now(), Machine: stats.DescribeMachine(),
		Params: report.Params{
			Protocol: p.String(), Connections: o.Connections, Rate: o.Rate, DurationS: o.Duration.Seconds(),
			WarmupS: o.Warmup.Seconds(), Requests: o.Requests, Rounds: rounds, Payload: payloadOf(p, payload),
		},
		Targets: []report.Target{},
	}
}
