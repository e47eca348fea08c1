package scenario

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/meshagent/meshagent/etcdcompat/apisix"
	"github.com/meshagent/meshagent/perf/load"
	"github.com/meshagent/meshagent/perf/report"
	"github.com/meshagent/meshagent/perf/stats"
	"github.com/meshagent/meshagent/perf/target"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Scale methods: how the routes reach meshagent.
const (
	ScaleEtcd = "etcd"
	ScaleYAML = "yaml"
)

// ScaleConfig configures Scale.
type ScaleConfig struct {
	Backend target.Backend
	// NewMeshagent returns a fresh, unstarted target for each measurement.
	NewMeshagent func() *target.Meshagent
	// Sizes are the route counts (default 1000 and 10000).
	Sizes []int
	// Methods are ScaleEtcd and/or ScaleYAML (default both).
	Methods []string
	// Timeout bounds each apply (default 60 s).
	Timeout  time.Duration
	Progress *report.Progress
	Log      *slog.Logger
}

// ScaleObjects returns n routes /scale/<i>, each with its own upstream
// scale-<i> pointing at the backend's HTTP port.
func ScaleObjects(b target.Backend, n int) ([]apisix.Route, []apisix.Upstream, error) {
	nodes, err := target.NodeOf(b.HTTPAddr)
	if err != nil {
		return nil, nil, err
	}
	routes := make([]apisix.Route, n)
	ups := make([]apisix.Upstream, n)
	for i := range n {
		id := apisix.ID("scale-" + strconv.Itoa(i))
		ups[i] = apisix.Upstream{ID: id, Type: "roundrobin", Nodes: nodes}
		routes[i] = apisix.Route{ID: id, URI: "/scale/" + strconv.Itoa(i), UpstreamID: id}
	}
	return routes, ups, nil
}

// Scale measures, for each size and method, the time until the last of n
// routes serves (apply time) and meshagent's memory: idle RSS with no
// routes, RSS and peak RSS after the apply, and KB per route.
func Scale(ctx context.Context, cfg ScaleConfig) (*report.Report, error) {
	if cfg.NewMeshagent == nil {
		return nil, fmt.Errorf("%w: no meshagent", ErrConfig)
	}
	if len(cfg.Sizes) == 0 {
		cfg.Sizes = []int{1000, 10000}
	}
	if len(cfg.Methods) == 0 {
		cfg.Methods = []string{ScaleEtcd, ScaleYAML}
	}
	for _, n := range cfg.Sizes {
		if n < 1 {
			return nil, fmt.Errorf("%w: size %d: must be >= 1", ErrConfig, n)
		}
	}
	for _, m := range cfg.Methods {
		if m != ScaleEtcd && m != ScaleYAML {
			return nil, fmt.Errorf("%w: method %q: want %s or %s", ErrConfig, m, ScaleEtcd, ScaleYAML)
		}
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Minute
	}
	rep := newReport("scale", load.HTTP1, load.Options{}, 0, 0)
	rep.Params = report.Params{}

	// Idle baseline: no routes at all.
	cfg.Progress.Update("[scale] idle baseline")
	idle, err := scaleOne(ctx, cfg, ScaleEtcd, 0)
	if err != nil {
		rep.Skipped = append(rep.Skipped, report.Skip{Target: "meshagent", Reason: err.Error()})
		cfg.Progress.Done()
		return rep, nil
	}
	rep.Notes = append(rep.Notes, fmt.Sprintf("meshagent idle RSS with no routes: %.1f MB", idle.RSSMB))
	for _, n := range cfg.Sizes {
		for _, m := range cfg.Methods {
			cfg.Progress.Update("[scale] %d routes via %s", n, m)
			r, err := scaleOne(ctx, cfg, m, n)
			r.IdleRSSMB = idle.RSSMB
			if err != nil {
				r.Error = err.Error()
			} else {
				r.KBPerRoute = (r.RSSMB - idle.RSSMB) * 1024 / float64(n)
			}
			rep.Scale = append(rep.Scale, r)
		}
	}
	cfg.Progress.Done()
	return rep, nil
}

// scaleOne starts a meshagent, applies n routes by method and measures.
func scaleOne(ctx context.Context, cfg ScaleConfig, method string, n int) (report.ScaleResult, error) {
	res := report.ScaleResult{Routes: n, Method: method}
	m := cfg.NewMeshagent()
	m.Config = &target.StandaloneConfig{}
	m.ProbePath = ""
	routes, ups, err := ScaleObjects(cfg.Backend, n)
	if err != nil {
		return res, err
	}
	if method == ScaleYAML {
		m.Config = &target.StandaloneConfig{Routes: routes, Upstreams: ups}
	} else {
		m.Etcd = true
	}
	t0 := time.Now()
	_, err = m.Start(ctx, cfg.Backend)
	defer func() {
		if err := m.Stop(); err != nil && cfg.Log != nil {
			cfg.Log.Warn("stop meshagent", "err", err)
		}
	}()
	if err != nil {
		return res, err
	}
	if n > 0 && method == ScaleEtcd {
		t0 = time.Now()
		if err := writeScale(ctx, m.EtcdAddr(), routes, ups); err != nil {
			return res, err
		}
	}
	if n > 0 {
		addr := m.HTTPAddr()
		if err := waitServes(ctx, addr, "/scale/"+strconv.Itoa(n-1), cfg.Timeout); err != nil {
			return res, err
		}
		res.ApplyS = time.Since(t0).Seconds()
		// Spot-check that earlier routes serve too.
		for _, i := range []int{0, n / 2} {
			if err := waitServes(ctx, addr, "/scale/"+strconv.Itoa(i), time.Second); err != nil {
				return res, fmt.Errorf("scenario: route %d does not serve after apply: %w", i, err)
			}
		}
	}
	s, err := stats.ReadProc(m.PID())
	if err != nil {
		return res, err
	}
	res.RSSMB, res.PeakRSSMB = float64(s.RSSKB)/1024, float64(s.HWMKB)/1024
	return res, nil
}

// writeScale puts upstreams then routes through etcd, 64 puts per txn.
func writeScale(ctx context.Context, endpoint string, routes []apisix.Route, ups []apisix.Upstream) error {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return fmt.Errorf("scenario: etcd client: %w", err)
	}
	defer cli.Close()
	var ops []clientv3.Op
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if _, err := cli.Txn(tctx).Then(ops...).Commit(); err != nil {
			return fmt.Errorf("scenario: etcd txn of %d puts: %w", len(ops), err)
		}
		ops = ops[:0]
		return nil
	}
	add := func(key string, v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("scenario: encode %s: %w", key, err)
		}
		ops = append(ops, clientv3.OpPut(key, string(b)))
		if len(ops) == 64 {
			return flush()
		}
		return nil
	}
	for _, u := range ups {
		if err := add(upstreamsPrefix+string(u.ID), u); err != nil {
			return err
		}
	}
	for _, r := range routes {
		if err := add(routesPrefix+string(r.ID), r); err != nil {
			return err
		}
	}
	return flush()
}

// waitServes polls path over HTTP/1.1 until it answers 200.
func waitServes(ctx context.Context, addr, path string, timeout time.Duration) error {
	f, err := load.NewFactory(load.HTTP1, load.ClientConfig{Addr: addr, Path: path, Timeout: time.Second})
	if err != nil {
		return err
	}
	c := f.NewClient()
	defer c.Close()
	deadline := time.Now().Add(timeout)
	for {
		err := c.Do(ctx)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("scenario: %s not served after %v: %w", path, timeout, err)
		}
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), err)
		case <-time.After(5 * time.Millisecond):
		}
	}
}
