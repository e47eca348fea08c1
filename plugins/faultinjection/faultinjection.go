// Package faultinjection is APISIX's fault-injection plugin: in the
// rewrite phase it delays a request and/or aborts it with a fixed status
// and body, each with an optional percentage and vars condition. It owns
// only its config schema and the filter; the data plane runs it.
package faultinjection

import (
	"encoding/json"
	"math/rand/v2"
	"time"

	"github.com/meshagent/meshagent/plugins"
)

// Name and Priority are APISIX's.
const (
	Name     = "fault-injection"
	Priority = 11000
)

// Config is the plugin config (APISIX schema; unknown fields rejected).
type Config struct {
	// Abort answers the request itself.
	Abort *Abort `json:"abort,omitempty"`
	// Delay sleeps before the request continues.
	Delay *Delay `json:"delay,omitempty"`
}

// Abort answers with HTTPStatus (>= 200) and Body, on Percentage (1-100,
// default always) of the requests matching Vars (OR over expressions).
type Abort struct {
	HTTPStatus int               `json:"http_status"`
	Body       string            `json:"body,omitempty"`
	Headers    map[string]string `json:"headers,omitempty"`
	Percentage *int              `json:"percentage,omitempty"`
	Vars       []json.RawMessage `json:"vars,omitempty"`
}

// Delay waits Duration seconds (> 0), on Percentage of matching requests.
type Delay struct {
	Duration   float64           `json:"duration"`
	Percentage *int              `json:"percentage,omitempty"`
	Vars       []json.RawMessage `json:"vars,omitempty"`
}

func init() {
	plugins.Register(plugins.Plugin{Name: Name, Priority: Priority, New: New})
}

type filter struct {
	abortStatus  int
	abortBody    []byte
	abortHeaders map[string]string
	abortPct     int
	abortVars    []plugins.VarsMatcher
	delay        time.Duration
	delayPct     int
	delayVars    []plugins.VarsMatcher
	hasAbort     bool
	hasDelay     bool
}

// New validates cfg and builds the filter.
func New(cfg json.RawMessage, b plugins.Builder) (any, error) {
	var c Config
	if err := plugins.Decode(cfg, &c); err != nil {
		return nil, err
	}
	if c.Abort == nil && c.Delay == nil {
		return nil, plugins.Invalid("abort|delay", "one of abort or delay is required")
	}
	f := &filter{}
	var err error
	if a := c.Abort; a != nil {
		if a.HTTPStatus < 200 || a.HTTPStatus > 599 {
			return nil, plugins.Invalid("abort.http_status", "required, an integer from 200 to 599")
		}
		if f.abortPct, err = pct("abort.percentage", a.Percentage); err != nil {
			return nil, err
		}
		if f.abortVars, err = compileVars("abort.vars", a.Vars, b); err != nil {
			return nil, err
		}
		f.hasAbort, f.abortStatus, f.abortBody, f.abortHeaders = true, a.HTTPStatus, []byte(a.Body), a.Headers
	}
	if d := c.Delay; d != nil {
		if d.Duration <= 0 {
			return nil, plugins.Invalid("delay.duration", "required, a number > 0 (seconds)")
		}
		if f.delayPct, err = pct("delay.percentage", d.Percentage); err != nil {
			return nil, err
		}
		if f.delayVars, err = compileVars("delay.vars", d.Vars, b); err != nil {
			return nil, err
		}
		f.hasDelay, f.delay = true, time.Duration(d.Duration*float64(time.Second))
	}
	return f, nil
}

func pct(field string, p *int) (int, error) {
	if p == nil {
		return 100, nil
	}
	if *p < 0 || *p > 100 {
		return 0, plugins.Invalid(field, "an integer from 0 to 100")
	}
	return *p, nil
}

func compileVars(field string, raw []json.RawMessage, b plugins.Builder) ([]plugins.VarsMatcher, error) {
	out := make([]plugins.VarsMatcher, 0, len(raw))
	for _, r := range raw {
		m, err := b.Vars(r)
		if err != nil {
			return nil, plugins.Invalid(field, err.Error())
		}
		out = append(out, m)
	}
	return out, nil
}

// matchAny is APISIX's vars_match: OR over expressions; none = true.
func matchAny(ms []plugins.VarsMatcher, c plugins.Ctx) bool {
	if len(ms) == 0 {
		return true
	}
	for _, m := range ms {
		if m.Match(c) {
			return true
		}
	}
	return false
}

func hit(p int) bool { return p >= 100 || rand.IntN(100) < p }

// Rewrite delays and/or aborts, in APISIX's order (delay first).
func (f *filter) Rewrite(c plugins.Ctx) plugins.Status {
	abortVars := !f.hasAbort || matchAny(f.abortVars, c)
	if f.hasDelay && hit(f.delayPct) && matchAny(f.delayVars, c) {
		time.Sleep(f.delay)
	}
	if f.hasAbort && abortVars && hit(f.abortPct) {
		for k, v := range f.abortHeaders {
			c.SetResponseHeader(k, v)
		}
		c.Respond(f.abortStatus, f.abortBody)
		return plugins.Stop
	}
	return plugins.Continue
}

var _ plugins.Rewriter = (*filter)(nil)
