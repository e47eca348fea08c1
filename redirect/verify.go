package redirect

import (
	"context"
	"fmt"
	"strings"
)

// Report is the outcome of Verify: every difference between the plan and
// the live ruleset, each a sentence naming the family, table, chain and
// rule.
type Report struct {
	// Diffs lists the differences; empty means the rules are in place.
	Diffs []string
	// GateReleased is true when the Config asks for a gate and the gate's
	// chain and jump are both absent, which is the normal state after a
	// Gate released it; this is not a difference.
	GateReleased bool
}

// OK reports whether the rules are exactly in place.
func (r *Report) OK() bool { return len(r.Diffs) == 0 }

// String lists the differences one per line, or "rules in place".
func (r *Report) String() string {
	if r.OK() {
		s := "rules in place"
		if r.GateReleased {
			s += " (startup gate released)"
		}
		return s
	}
	return strings.Join(r.Diffs, "\n")
}

// Verify compares the live ruleset and policy routing with the plan. It
// returns the Report and, when anything differs, an error wrapping
// ErrNotInstalled that lists the differences. Errors running the commands
// are returned as they are.
func (m *Manager) Verify(ctx context.Context) (*Report, error) {
	rep := &Report{}
	for i := range m.plan.Rulesets {
		rs := &m.plan.Rulesets[i]
		cur, err := m.save(ctx, rs.Family)
		if err != nil {
			return nil, err
		}
		released := diffRuleset(rs, cur, rep)
		if m.cfg.Gate && released {
			rep.GateReleased = true
		}
	}
	for _, r := range m.plan.Routes {
		ok, err := m.routePresent(ctx, r)
		if err != nil {
			return nil, err
		}
		if !ok {
			rep.Diffs = append(rep.Diffs, fmt.Sprintf("%s: missing policy routing %q", r.Family, r.String()))
		}
	}
	if !rep.OK() {
		return rep, fmt.Errorf("%w:\n%s", ErrNotInstalled, rep.String())
	}
	return rep, nil
}

// diffRuleset appends to rep every difference between rs and cur. It
// returns true when rs has a gate whose chain and jump are both absent
// (released), which it does not count as a difference.
func diffRuleset(rs *Ruleset, cur saved, rep *Report) (gateReleased bool) {
	fam := rs.Family.String()
	add := func(format string, args ...any) {
		rep.Diffs = append(rep.Diffs, fam+": "+fmt.Sprintf(format, args...))
	}
	want := map[TableChain][]string{}
	for _, r := range rs.Rules {
		k := TableChain{r.Table, r.Chain}
		want[k] = append(want[k], r.Spec)
	}
	gateAbsent := false
	for _, c := range rs.Chains {
		if c.Chain == ChainGate && !cur.hasChain(c.Table, c.Chain) {
			gateAbsent = true
		}
	}
	if gateAbsent {
		for _, j := range cur.jumps("mangle") {
			if targetOf(j.Spec) == ChainGate {
				gateAbsent = false
			}
		}
	}
	wantChain := map[TableChain]bool{}
	for _, t := range []string{"mangle", "nat"} {
		wantChain[TableChain{t, ChainTableMarker}] = true // optional
	}
	for _, c := range rs.Chains {
		wantChain[c] = true
		if c.Chain == ChainGate && gateAbsent {
			continue
		}
		if !cur.hasChain(c.Table, c.Chain) {
			add("table %s: missing chain %s", c.Table, c.Chain)
			continue
		}
		diffChain(add, c, want[c], cur[c.Table].rules[c.Chain])
	}
	for _, t := range []string{"mangle", "nat", "filter", "raw"} {
		for _, c := range cur.ours(t) {
			if !wantChain[TableChain{t, c}] {
				add("table %s: unexpected chain %s (not in this config)", t, c)
			}
		}
		count := map[Rule]int{}
		for _, j := range cur.jumps(t) {
			count[j]++
		}
		for _, j := range rs.Jumps {
			if j.Table != t || (gateAbsent && targetOf(j.Spec) == ChainGate) {
				continue
			}
			switch n := count[j]; {
			case n == 0:
				add("table %s: missing jump \"-A %s %s\"", t, j.Chain, j.Spec)
			case n > 1:
				add("table %s: jump \"-A %s %s\" present %d times, want once", t, j.Chain, j.Spec, n)
			}
			delete(count, j)
		}
		for j := range count {
			add("table %s: unexpected jump \"-A %s %s\"", t, j.Chain, j.Spec)
		}
	}
	return gateAbsent
}

// diffChain reports missing and unexpected rules of one chain, then, if
// the same rules are present in another order, the first position where
// the order differs (rule order decides which rule matches first).
func diffChain(add func(string, ...any), c TableChain, want, have []string) {
	missing, unexpected := unmatched(want, have), unmatched(have, want)
	for _, r := range missing {
		add("table %s chain %s: missing rule %q", c.Table, c.Chain, r)
	}
	for _, r := range unexpected {
		add("table %s chain %s: unexpected rule %q", c.Table, c.Chain, r)
	}
	if len(missing) > 0 || len(unexpected) > 0 {
		return
	}
	for i := range want {
		if want[i] != have[i] {
			add("table %s chain %s: rule %d is %q, want %q (order differs)", c.Table, c.Chain, i+1, have[i], want[i])
			return
		}
	}
}

// unmatched returns the items of xs that ys does not match one for one, in
// xs's order (a rule present twice in xs and once in ys is listed once).
func unmatched(xs, ys []string) []string {
	left := make(map[string]int, len(ys))
	for _, y := range ys {
		left[y]++
	}
	var out []string
	for _, x := range xs {
		if left[x] > 0 {
			left[x]--
			continue
		}
		out = append(out, x)
	}
	return out
}
