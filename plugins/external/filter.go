package external

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/meshagent/meshagent/plugins"
	"github.com/meshagent/meshagent/plugins/external/pluginv1"
)

// Spec declares one out-of-process plugin in meshagent's configuration.
type Spec struct {
	// Name is the plugin name used under "plugins" in routes, services,
	// plugin_configs and global_rules.
	Name string `json:"name" yaml:"name"`
	// Path, Args and Env say how to run the child.
	Path string   `json:"path" yaml:"path"`
	Args []string `json:"args,omitempty" yaml:"args,omitempty"`
	Env  []string `json:"env,omitempty" yaml:"env,omitempty"`
	// Phase is where the request call runs: "rewrite" or "access"
	// (default access). Response calls run in header_filter/body_filter
	// when Response is true.
	Phase string `json:"phase,omitempty" yaml:"phase,omitempty"`
	// Priority orders the filter within its phase (default 0).
	Priority int `json:"priority,omitempty" yaml:"priority,omitempty"`
	// Timeout bounds one call (default 100ms).
	Timeout time.Duration `json:"timeout,omitempty" yaml:"timeout,omitempty"`
	// FailOpen lets requests continue when the plugin is down, times out or
	// errors; the default (fail-closed) answers 503.
	FailOpen bool `json:"fail_open,omitempty" yaml:"fail_open,omitempty"`
	// RequestBody sends the request body (RequestBody call instead of
	// RequestHeaders). Response sends response headers too.
	RequestBody bool `json:"request_body,omitempty" yaml:"request_body,omitempty"`
	Response    bool `json:"response,omitempty" yaml:"response,omitempty"`
}

// Stats counts what happened on calls of one plugin.
type Stats struct {
	Calls, Failures, FailOpen, FailClosed atomic.Int64
}

// Registered is a started, registered external plugin.
type Registered struct {
	Spec    Spec
	Process *Process
	Stats   *Stats
}

// Register starts the child for s and registers s.Name in the plugins
// registry (so it must run before the registry is first read, i.e. before
// the data plane starts). The child keeps being supervised if its first
// start fails; the start error is returned alongside.
func Register(s Spec, log *slog.Logger) (*Registered, error) {
	if s.Timeout <= 0 {
		s.Timeout = 100 * time.Millisecond
	}
	var ph plugins.Phase
	switch s.Phase {
	case "", "access":
		ph = plugins.PhaseAccess
	case "rewrite":
		ph = plugins.PhaseRewrite
	default:
		return nil, fmt.Errorf("external plugin %s: phase %q: want rewrite or access", s.Name, s.Phase)
	}
	if s.Name == "" || s.Path == "" {
		return nil, fmt.Errorf("external plugin %q: name and path are required", s.Name)
	}
	p, startErr := Start(Config{Name: s.Name, Path: s.Path, Args: s.Args, Env: s.Env, Logger: log})
	if p == nil {
		return nil, startErr
	}
	r := &Registered{Spec: s, Process: p, Stats: &Stats{}}
	if err := plugins.TryRegister(plugins.Plugin{Name: s.Name, Priority: s.Priority, New: func(cfg json.RawMessage, _ plugins.Builder) (any, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c, err := p.Configure(ctx, cfg)
		if errors.Is(err, ErrInvalidConfig) {
			return nil, fmt.Errorf("%w: %v", plugins.ErrInvalidConfig, err)
		}
		// Unavailable: accepted now, configured on first use.
		f := &filter{conf: c, spec: &r.Spec, stats: r.Stats, log: log}
		if ph == plugins.PhaseRewrite {
			return rewriteFilter{f}, nil
		}
		return accessFilter{f}, nil
	}}); err != nil {
		p.Close()
		return nil, fmt.Errorf("external plugin %s: %w", s.Name, err)
	}
	return r, startErr
}

type filter struct {
	conf  *Conf
	spec  *Spec
	stats *Stats
	log   *slog.Logger
}

type rewriteFilter struct{ *filter }
type accessFilter struct{ *filter }

func (f rewriteFilter) Rewrite(c plugins.Ctx) plugins.Status { return f.request(c) }
func (f accessFilter) Access(c plugins.Ctx) plugins.Status   { return f.request(c) }

func (f *filter) HeaderFilter(c plugins.Ctx) plugins.Status {
	if !f.spec.Response {
		return plugins.Continue
	}
	resp := &pluginv1.HTTPResponse{Status: int32(c.Status()), Request: requestOf(c, false)}
	if v, ok := c.(plugins.ResponseHeaderVisitor); ok {
		v.VisitResponseHeaders(func(k, val []byte) {
			resp.Headers = append(resp.Headers, &pluginv1.Header{Key: string(k), Value: string(val)})
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.spec.Timeout)
	defer cancel()
	f.stats.Calls.Add(1)
	m, err := f.conf.ResponseHeaders(ctx, resp)
	if err != nil {
		return f.failed(c, err)
	}
	for _, h := range m.SetHeaders {
		c.SetResponseHeader(h.Key, h.Value)
	}
	for _, k := range m.RemoveHeaders {
		c.SetResponseHeader(k, "")
	}
	if m.Status > 0 || m.ReplaceBody {
		body := c.ResponseBody()
		if m.ReplaceBody {
			body = m.Body
		}
		st := c.Status()
		if m.Status > 0 {
			st = int(m.Status)
		}
		c.Respond(st, body)
	}
	return plugins.Continue
}

func (f *filter) request(c plugins.Ctx) plugins.Status {
	req := requestOf(c, f.spec.RequestBody)
	ctx, cancel := context.WithTimeout(context.Background(), f.spec.Timeout)
	defer cancel()
	f.stats.Calls.Add(1)
	var m *pluginv1.Mutation
	var err error
	if f.spec.RequestBody {
		m, err = f.conf.RequestBody(ctx, req)
	} else {
		m, err = f.conf.RequestHeaders(ctx, req)
	}
	if err != nil {
		return f.failed(c, err)
	}
	if m.Status > 0 {
		for _, h := range m.SetHeaders {
			c.SetResponseHeader(h.Key, h.Value)
		}
		c.Respond(int(m.Status), m.Body)
		return plugins.Stop
	}
	for _, h := range m.SetHeaders {
		c.SetHeader(h.Key, h.Value)
	}
	for _, k := range m.RemoveHeaders {
		c.DelHeader(k)
	}
	if m.Path != "" {
		c.SetPath([]byte(m.Path))
	}
	return plugins.Continue
}

// failed applies the fail-open / fail-closed policy.
func (f *filter) failed(c plugins.Ctx, err error) plugins.Status {
	f.stats.Failures.Add(1)
	if f.spec.FailOpen {
		f.stats.FailOpen.Add(1)
		f.log.Warn("external plugin failed, continuing (fail-open)", "plugin", f.spec.Name, "err", err)
		return plugins.Continue
	}
	f.stats.FailClosed.Add(1)
	f.log.Warn("external plugin failed, answering 503 (fail-closed)", "plugin", f.spec.Name, "err", err)
	c.Respond(503, []byte(`{"error_msg":"plugin `+f.spec.Name+` unavailable"}`))
	return plugins.Stop
}

func requestOf(c plugins.Ctx, body bool) *pluginv1.HTTPRequest {
	req := &pluginv1.HTTPRequest{
		Method: string(c.Method()), Path: string(c.Path()), Query: string(c.Query()),
		Host: string(c.Host()), RouteId: c.RouteID(),
	}
	if ra, ok := c.Var("remote_addr"); ok {
		req.RemoteAddr = ra
	}
	if v, ok := c.(plugins.HeaderVisitor); ok {
		v.VisitHeaders(func(k, val []byte) {
			req.Headers = append(req.Headers, &pluginv1.Header{Key: strings.ToLower(string(k)), Value: string(val)})
		})
	}
	if body {
		req.Body = c.Body()
	}
	return req
}

var (
	_ plugins.Accessor     = accessFilter{}
	_ plugins.Rewriter     = rewriteFilter{}
	_ plugins.HeaderFilter = accessFilter{}
)
