package scenario

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/meshagent/meshagent/etcdcompat/apisix"
	"github.com/meshagent/meshagent/perf/load"
	"github.com/meshagent/meshagent/perf/report"
	"github.com/meshagent/meshagent/perf/stats"
	"github.com/meshagent/meshagent/perf/target"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// ChurnConfig configures Churn.
type ChurnConfig struct {
	Backend target.Backend
	// Meshagent is the target; Churn turns on its etcd emulation.
	Meshagent *target.Meshagent
	Protocol  load.Protocol
	// Load is the load of each phase (before, during).
	Load   load.Options
	Client load.ClientConfig
	// Pushes is the number of config writes during the second phase,
	// spread evenly over its measured duration (default 20).
	Pushes   int
	Progress *report.Progress
	Log      *slog.Logger
}

// APISIX key prefixes perf writes under.
const (
	routesPrefix    = "/apisix/routes/"
	upstreamsPrefix = "/apisix/upstreams/"
)

// Churn measures the same load twice against meshagent: before, and
// during config pushes written with clientv3 through the etcd emulation.
// Each push rewrites the serving upstream (same node, new desc) and adds a
// route. The report has targets "before" and "during" (ratio to before)
// and the push statistics.
func Churn(ctx context.Context, cfg ChurnConfig) (*report.Report, error) {
	if cfg.Meshagent == nil {
		return nil, fmt.Errorf("%w: no meshagent target", ErrConfig)
	}
	if cfg.Load.Duration <= 0 {
		return nil, fmt.Errorf("%w: churn needs a duration", ErrConfig)
	}
	if cfg.Pushes <= 0 {
		cfg.Pushes = 20
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rep := newReport("churn", cfg.Protocol, cfg.Load, 1, cfg.Client.Payload)
	m := cfg.Meshagent
	m.Etcd = true
	cfg.Progress.Update("[churn] starting meshagent")
	ep, err := m.Start(ctx, cfg.Backend)
	defer func() {
		if err := m.Stop(); err != nil {
			log.Warn("stop meshagent", "err", err)
		}
	}()
	if err != nil {
		rep.Skipped = append(rep.Skipped, report.Skip{Target: m.Name(), Reason: err.Error()})
		return rep, nil
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.EtcdAddr()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, fmt.Errorf("scenario: etcd client: %w", err)
	}
	defer cli.Close()
	cc := cfg.Client
	cc.Addr = ep.For(cfg.Protocol)
	if cc.Addr == "" {
		rep.Skipped = append(rep.Skipped, report.Skip{Target: m.Name(), Reason: "does not serve " + cfg.Protocol.String()})
		return rep, nil
	}
	upNodes, err := target.NodeOf(cfg.Backend.HTTPAddr)
	if err != nil {
		return nil, err
	}
	upstreamID := target.RouteHTTP
	if cfg.Protocol == load.GRPC || cfg.Protocol == load.GRPCStream {
		if upNodes, err = target.NodeOf(cfg.Backend.GRPCAddr); err != nil {
			return nil, err
		}
		upstreamID = target.RouteGRPC
	}
	phase := func(name string, during bool) (*load.Result, *stats.Usage, error) {
		f, err := load.NewFactory(cfg.Protocol, cc)
		if err != nil {
			return nil, nil, err
		}
		o := cfg.Load
		o.Progress = func(p load.Progress) {
			cfg.Progress.Update("[churn] %s %4.1fs %8.0f rps %d done %d errors", name, p.Elapsed.Seconds(), p.RPS, p.Completed, p.Errors)
		}
		before, perr := stats.ReadProc(m.PID())
		var wg sync.WaitGroup
		if during {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rep.Churn = push(ctx, cli, cfg, upstreamID, upNodes)
			}()
		}
		res, err := load.Run(ctx, f, o)
		wg.Wait()
		if err != nil {
			return nil, nil, err
		}
		after, aerr := stats.ReadProc(m.PID())
		if perr != nil || aerr != nil {
			return res, nil, nil
		}
		u := stats.Between(before, after)
		return res, &u, nil
	}
	for _, ph := range []struct {
		name   string
		during bool
	}{{"before", false}, {"during", true}} {
		res, u, err := phase(ph.name, ph.during)
		if err != nil {
			return nil, fmt.Errorf("scenario: churn %s: %w", ph.name, err)
		}
		rep.Targets = append(rep.Targets, report.FromResult(ph.name, res, u, 0, 0))
	}
	rep.AddRatios("before")
	rep.Notes = append(rep.Notes, "vs_direct of \"during\" is relative to \"before\"; CPU includes the config applies")
	cfg.Progress.Done()
	return rep, nil
}

// push writes cfg.Pushes times, evenly over the measured part of the
// phase, and returns the push statistics.
func push(ctx context.Context, cli *clientv3.Client, cfg ChurnConfig, upstreamID string, nodes apisix.Nodes) *report.ChurnResult {
	every := cfg.Load.Duration / time.Duration(cfg.Pushes+1)
	res := &report.ChurnResult{PushedEvery: float64(every) / float64(time.Millisecond)}
	var lat []time.Duration
	timer := time.NewTimer(cfg.Load.Warmup + every)
	defer timer.Stop()
	for i := range cfg.Pushes {
		select {
		case <-ctx.Done():
			return res
		case <-timer.C:
		}
		timer.Reset(every)
		up := apisix.Upstream{ID: apisix.ID(upstreamID), Type: "roundrobin", Nodes: nodes, Desc: fmt.Sprintf("perf churn push %d", i)}
		if upstreamID == target.RouteGRPC {
			up.Scheme = "grpc"
		}
		rid := fmt.Sprintf("perf-churn-%d", i)
		rt := apisix.Route{ID: apisix.ID(rid), URI: "/perf-churn/" + rid, UpstreamID: apisix.ID(upstreamID)}
		ub, err1 := json.Marshal(up)
		rb, err2 := json.Marshal(rt)
		res.Pushes++
		t0 := time.Now()
		err := errors.Join(err1, err2)
		if err == nil {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err = cli.Txn(pctx).Then(
				clientv3.OpPut(upstreamsPrefix+upstreamID, string(ub)),
				clientv3.OpPut(routesPrefix+rid, string(rb)),
			).Commit()
			cancel()
		}
		if err != nil {
			res.PushErrors++
			if res.FirstError == "" {
				res.FirstError = err.Error()
			}
			continue
		}
		lat = append(lat, time.Since(t0))
	}
	if len(lat) > 0 {
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		res.PushP50MS = float64(lat[len(lat)/2]) / float64(time.Millisecond)
		res.PushMaxMS = float64(lat[len(lat)-1]) / float64(time.Millisecond)
	}
	return res
}
