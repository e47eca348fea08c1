// Package trafficsplit is APISIX's traffic-split plugin: in the access
// phase, the first rule whose match passes (OR over vars expressions; a
// rule without match always passes) picks one of its weighted_upstreams
// by weighted round-robin; an entry with only a weight means the route's
// own upstream. It owns its schema and the filter; upstreams are compiled
// by the data plane through plugins.Builder.
package trafficsplit

import (
	"encoding/json"
	"strconv"
	"sync/atomic"

	"github.com/meshagent/meshagent/plugins"
)

// Name and Priority are APISIX's.
const (
	Name     = "traffic-split"
	Priority = 966
)

// Config is the plugin config (APISIX schema; unknown fields rejected).
type Config struct {
	Rules []Rule `json:"rules"`
}

// Rule is one rule: Match (OR of entries) and 1-20 WeightedUpstreams.
type Rule struct {
	Match             []Match            `json:"match,omitempty"`
	WeightedUpstreams []WeightedUpstream `json:"weighted_upstreams"`
}

// Match is one alternative of a rule's condition: Vars is a
// lua-resty-expr expression (AND of its conditions).
type Match struct {
	Vars json.RawMessage `json:"vars,omitempty"`
}

// WeightedUpstream is an upstream_id, an inline upstream, or neither (the
// route's upstream), with Weight (default 1, >= 0).
type WeightedUpstream struct {
	UpstreamID json.RawMessage `json:"upstream_id,omitempty"`
	Upstream   json.RawMessage `json:"upstream,omitempty"`
	Weight     *int            `json:"weight,omitempty"`
}

func init() {
	plugins.Register(plugins.Plugin{Name: Name, Priority: Priority, New: New})
}

// maxSchedule bounds the precomputed interleaved schedule of a rule.
const maxSchedule = 4096

type rule struct {
	match []plugins.VarsMatcher
	// targets[i] is an upstream (nil = the route's own).
	targets []plugins.Upstream
	// schedule is a smooth weighted round-robin order over targets.
	schedule []uint16
	next     atomic.Uint64
}

type filter struct{ rules []*rule }

// New validates cfg and builds the filter.
func New(cfg json.RawMessage, b plugins.Builder) (any, error) {
	var c Config
	if err := plugins.Decode(cfg, &c); err != nil {
		return nil, err
	}
	f := &filter{}
	for i, r := range c.Rules {
		field := "rules[" + strconv.Itoa(i) + "]"
		if n := len(r.WeightedUpstreams); n < 1 || n > 20 {
			return nil, plugins.Invalid(field+".weighted_upstreams", "1 to 20 items required")
		}
		cr := &rule{}
		for j, m := range r.Match {
			if len(m.Vars) == 0 {
				continue
			}
			vm, err := b.Vars(m.Vars)
			if err != nil {
				return nil, plugins.Invalid(field+".match["+strconv.Itoa(j)+"].vars", err.Error())
			}
			cr.match = append(cr.match, vm)
		}
		weights := make([]int, len(r.WeightedUpstreams))
		for j, wu := range r.WeightedUpstreams {
			wf := field + ".weighted_upstreams[" + strconv.Itoa(j) + "]"
			w := 1
			if wu.Weight != nil {
				w = *wu.Weight
			}
			if w < 0 {
				return nil, plugins.Invalid(wf+".weight", "an integer >= 0")
			}
			weights[j] = w
			var u plugins.Upstream
			switch {
			case len(wu.UpstreamID) > 0 && len(wu.Upstream) > 0:
				return nil, plugins.Invalid(wf, "upstream_id and upstream are exclusive")
			case len(wu.UpstreamID) > 0:
				id, err := idString(wu.UpstreamID)
				if err != nil {
					return nil, plugins.Invalid(wf+".upstream_id", err.Error())
				}
				if u, err = b.Upstream(id); err != nil {
					return nil, plugins.Invalid(wf+".upstream_id", err.Error())
				}
			case len(wu.Upstream) > 0:
				var err error
				if u, err = b.InlineUpstream(wf, wu.Upstream); err != nil {
					return nil, plugins.Invalid(wf+".upstream", err.Error())
				}
			}
			cr.targets = append(cr.targets, u)
		}
		cr.schedule = schedule(weights)
		f.rules = append(f.rules, cr)
	}
	return f, nil
}

func idString(raw json.RawMessage) (string, error) {
	var s string
	if json.Unmarshal(raw, &s) == nil && s != "" {
		return s, nil
	}
	var n uint64
	if err := json.Unmarshal(raw, &n); err != nil || n == 0 {
		return "", errIDRule
	}
	return strconv.FormatUint(n, 10), nil
}

var errIDRule = plugins.Invalid("upstream_id", "a non-empty string or a positive integer")

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// schedule returns a smooth weighted round-robin order (nginx's
// algorithm) of target indexes, reduced by the weights' gcd and scaled
// down proportionally if still longer than maxSchedule.
func schedule(weights []int) []uint16 {
	g, total := 0, 0
	for _, w := range weights {
		g = gcd(g, w)
	}
	if g == 0 {
		return nil
	}
	ws := make([]int, len(weights))
	for i, w := range weights {
		ws[i] = w / g
		total += ws[i]
	}
	if total > maxSchedule {
		t := 0
		for i := range ws {
			if ws[i] > 0 {
				ws[i] = max(1, ws[i]*maxSchedule/total)
			}
			t += ws[i]
		}
		total = t
	}
	cur := make([]int, len(ws))
	out := make([]uint16, 0, total)
	for range total {
		best := -1
		for i, w := range ws {
			cur[i] += w
			if w > 0 && (best < 0 || cur[i] > cur[best]) {
				best = i
			}
		}
		cur[best] -= total
		out = append(out, uint16(best))
	}
	return out
}

// Access selects the upstream of the first matching rule.
func (f *filter) Access(c plugins.Ctx) plugins.Status {
	for _, r := range f.rules {
		if len(r.match) > 0 && !matchAny(r.match, c) {
			continue
		}
		if len(r.schedule) == 0 {
			return plugins.Continue // every weight is 0: the route's upstream
		}
		n := r.next.Add(1) - 1
		c.SetUpstream(r.targets[r.schedule[n%uint64(len(r.schedule))]])
		return plugins.Continue
	}
	return plugins.Continue
}

func matchAny(ms []plugins.VarsMatcher, c plugins.Ctx) bool {
	for _, m := range ms {
		if m.Match(c) {
			return true
		}
	}
	return false
}

var _ plugins.Accessor = (*filter)(nil)
