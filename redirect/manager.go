package redirect

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
)

// Runner runs one external command (iptables-save, iptables-restore, ip)
// and returns its standard output. Implementations must be safe for
// sequential use; Manager never calls a Runner concurrently.
type Runner interface {
	Run(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error)
}

// ExecRunner runs commands with os/exec. Prefix, when set, is prepended to
// every command line (for example {"ip", "netns", "exec", "app"} to act
// inside a network namespace).
type ExecRunner struct {
	Prefix []string
}

// packageOf names the Debian package providing a binary.
func packageOf(bin string) string {
	if bin == "ip" {
		return "iproute2"
	}
	return "iptables"
}

// Run implements Runner. A missing binary yields ErrMissingBinary naming the
// package to install; a failing command yields its stderr.
func (r ExecRunner) Run(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	if _, err := exec.LookPath(name); err != nil {
		return nil, fmt.Errorf("%w: %s (install the Debian package %q: apt-get install %s)", ErrMissingBinary, name, packageOf(name), packageOf(name))
	}
	argv := append(append(append([]string{}, r.Prefix...), name), args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("redirect: %s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// Manager installs, verifies and removes the rules of one Config. It holds
// no mutable state, so its methods may be called from several goroutines
// (a Gate's timeout calls ReleaseGate); iptables serialises the writes, but
// concurrent Install and Remove calls still race on what ends up installed.
type Manager struct {
	cfg  Config
	plan *Plan
	run  Runner
	log  *slog.Logger
}

// NewManager validates cfg and renders its Plan. A nil Runner means
// ExecRunner{}; a nil logger discards logs.
func NewManager(cfg Config, r Runner, log *slog.Logger) (*Manager, error) {
	plan, err := Render(cfg)
	if err != nil {
		return nil, err
	}
	if r == nil {
		r = ExecRunner{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{cfg: cfg, plan: plan, run: r, log: log}, nil
}

// Plan returns the rendered rules; the caller must not modify it.
func (m *Manager) Plan() *Plan { return m.plan }

// Config returns the Config the Manager was built from.
func (m *Manager) Config() Config { return m.cfg }

// save reads and parses family f's live ruleset.
func (m *Manager) save(ctx context.Context, f Family) (saved, error) {
	out, err := m.run.Run(ctx, nil, f.binary("-save"))
	if err != nil {
		return nil, err
	}
	return parseSave(out)
}

// restore applies input with iptables-restore --noflush (nothing when
// input is empty).
func (m *Manager) restore(ctx context.Context, f Family, input string) error {
	if input == "" {
		return nil
	}
	m.log.Debug("iptables-restore", "family", f.String(), "input", input)
	_, err := m.run.Run(ctx, []byte(input), f.binary("-restore"), "--noflush")
	return err
}

// installInput computes the restore input that turns the live ruleset cur
// into rs: our chains are (re)declared, which flushes them; jumps already
// in place are kept where they are (so a repeated install changes nothing),
// missing ones are appended, stale or duplicate ones deleted; chains of ours
// the Config no longer wants are deleted.
func installInput(rs *Ruleset, cur saved) string {
	var sb strings.Builder
	for _, t := range []string{"mangle", "nat"} {
		want := map[string]bool{}
		var body strings.Builder
		for _, c := range rs.Chains {
			if c.Table == t {
				want[c.Chain] = true
				fmt.Fprintf(&body, ":%s - [0:0]\n", c.Chain)
			}
		}
		if (len(want) > 0 && cur[t] == nil) || cur.hasChain(t, ChainTableMarker) {
			// We create this table (or created it earlier): mark it so
			// Remove deletes it again.
			want[ChainTableMarker] = true
			fmt.Fprintf(&body, ":%s - [0:0]\n", ChainTableMarker)
		}
		var stale []string
		for _, c := range cur.ours(t) {
			if !want[c] {
				stale = append(stale, c)
				fmt.Fprintf(&body, ":%s - [0:0]\n", c)
			}
		}
		wantJump := map[Rule]bool{}
		for _, j := range rs.Jumps {
			if j.Table == t {
				wantJump[j] = true
			}
		}
		have := map[Rule]bool{}
		for _, j := range cur.jumps(t) {
			if wantJump[j] && !have[j] {
				have[j] = true
				continue
			}
			fmt.Fprintf(&body, "-D %s %s\n", j.Chain, j.Spec)
		}
		for _, r := range rs.Rules {
			if r.Table == t {
				fmt.Fprintf(&body, "-A %s %s\n", r.Chain, r.Spec)
			}
		}
		for _, j := range rs.Jumps {
			if j.Table == t && !have[j] {
				fmt.Fprintf(&body, "-A %s %s\n", j.Chain, j.Spec)
			}
		}
		for _, c := range stale {
			fmt.Fprintf(&body, "-X %s\n", c)
		}
		if body.Len() > 0 {
			fmt.Fprintf(&sb, "*%s\n%sCOMMIT\n", t, body.String())
		}
	}
	return sb.String()
}

// removeInput computes the restore input deleting every jump to our chains
// and every chain of ours in cur, optionally limited to the given chains.
func removeInput(cur saved, only map[string]bool) string {
	var sb strings.Builder
	for _, t := range []string{"mangle", "nat", "filter", "raw"} {
		var body strings.Builder
		for _, j := range cur.jumps(t) {
			if only != nil && !only[targetOf(j.Spec)] {
				continue
			}
			fmt.Fprintf(&body, "-D %s %s\n", j.Chain, j.Spec)
		}
		var chains []string
		for _, c := range cur.ours(t) {
			if only == nil || only[c] {
				chains = append(chains, c)
				fmt.Fprintf(&body, ":%s - [0:0]\n", c)
			}
		}
		for _, c := range chains {
			fmt.Fprintf(&body, "-X %s\n", c)
		}
		if body.Len() > 0 {
			fmt.Fprintf(&sb, "*%s\n%sCOMMIT\n", t, body.String())
		}
	}
	return sb.String()
}

// targetOf returns the chain a rule spec jumps (-j) or goes (-g) to.
func targetOf(spec string) string {
	f := strings.Fields(spec)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "-j" || f[i] == "-g" {
			return f[i+1]
		}
	}
	return ""
}

// Install applies the plan: policy routing first (TPROXY), then one atomic
// iptables-restore --noflush per family. It is idempotent: installing the
// same Config twice leaves the ruleset unchanged, and installing a changed
// Config replaces our chains' contents in one transaction per family. If
// the routing fails nothing is changed; if the IPv6 restore fails after
// the IPv4 one succeeded, IPv4 has the new rules and IPv6 the old ones
// (the error says which family failed).
func (m *Manager) Install(ctx context.Context) error {
	var added []RouteCmd
	for _, r := range m.plan.Routes {
		present, err := m.routePresent(ctx, r)
		if err == nil && !present {
			if _, err = m.run.Run(ctx, nil, "ip", r.Args("add")...); err == nil {
				added = append(added, r)
			}
		}
		if err != nil {
			// Undo the routing this call added; the iptables rules have
			// not been touched yet, so the previous state stays in force.
			for i := len(added) - 1; i >= 0; i-- {
				if _, derr := m.run.Run(ctx, nil, "ip", added[i].Args("del")...); derr != nil {
					m.log.Warn("rollback of policy routing failed", "route", added[i].String(), "err", derr)
				}
			}
			return fmt.Errorf("redirect: policy routing for TPROXY (is lo up?): %w", err)
		}
	}
	for i := range m.plan.Rulesets {
		rs := &m.plan.Rulesets[i]
		cur, err := m.save(ctx, rs.Family)
		if err != nil {
			return err
		}
		if err := m.restore(ctx, rs.Family, installInput(rs, cur)); err != nil {
			return fmt.Errorf("redirect: install %s rules: %w", rs.Family, err)
		}
		m.log.Info("capture rules installed", "family", rs.Family.String(), "rules", len(rs.Rules)+len(rs.Jumps))
	}
	return nil
}

// Remove deletes every MESHAGENT_* chain and every jump to one, in every
// enabled family, and the Config's policy routing. Nothing else changes:
// iptables-save prints what it printed before Install (see NormalizeSave).
// Removing rules that are not installed is not an error.
func (m *Manager) Remove(ctx context.Context) error {
	var errs []error
	for _, rs := range m.plan.Rulesets {
		cur, err := m.save(ctx, rs.Family)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := m.restore(ctx, rs.Family, removeInput(cur, nil)); err != nil {
			errs = append(errs, fmt.Errorf("redirect: remove %s rules: %w", rs.Family, err))
			continue
		}
		if err := m.dropCreatedTables(ctx, rs.Family, cur); err != nil {
			errs = append(errs, err)
			continue
		}
		m.log.Info("capture rules removed", "family", rs.Family.String())
	}
	for _, r := range tproxyRoutes(m.cfg) {
		for i := 0; i < 16; i++ { // an `ip rule` may have been added more than once
			present, err := m.routePresent(ctx, r)
			if err != nil {
				errs = append(errs, err)
				break
			}
			if !present {
				break
			}
			if _, err := m.run.Run(ctx, nil, "ip", r.Args("del")...); err != nil {
				errs = append(errs, fmt.Errorf("redirect: remove policy routing: %w", err))
				break
			}
		}
	}
	return errors.Join(errs...)
}

// dropCreatedTables deletes the tables Install created (marked with
// ChainTableMarker in before) if they are empty now. A restore without
// --noflush naming only those tables deletes them under the nftables
// backend (the legacy backend keeps an empty table, which is harmless).
func (m *Manager) dropCreatedTables(ctx context.Context, f Family, before saved) error {
	var marked []string
	for t := range before {
		if before.hasChain(t, ChainTableMarker) {
			marked = append(marked, t)
		}
	}
	if len(marked) == 0 {
		return nil
	}
	now, err := m.save(ctx, f)
	if err != nil {
		return err
	}
	var sb strings.Builder
	for _, t := range marked {
		if st := now[t]; st != nil && st.empty() {
			fmt.Fprintf(&sb, "*%s\nCOMMIT\n", t)
		}
	}
	if sb.Len() == 0 {
		return nil
	}
	if _, err := m.run.Run(ctx, []byte(sb.String()), f.binary("-restore")); err != nil {
		return fmt.Errorf("redirect: delete %s tables created by install: %w", f, err)
	}
	return nil
}

// tproxyRoutes returns the routes a TPROXY config with cfg's mark and table
// would install, whatever cfg's inbound mode, so Remove cleans them up.
func tproxyRoutes(cfg Config) []RouteCmd {
	if cfg.TProxyMark == 0 || cfg.TProxyTable == 0 {
		return nil
	}
	cfg.InboundMode = InboundTProxy
	if cfg.BypassMark == cfg.TProxyMark {
		cfg.BypassMark++
	}
	if cfg.InboundPort == 0 || cfg.InboundPort == cfg.OutboundPort {
		cfg.InboundPort = cfg.OutboundPort + 1
	}
	p, err := Render(cfg)
	if err != nil {
		return nil
	}
	return p.Routes
}

// ReleaseGate deletes the startup gate's jump and chain in every family,
// leaving the rest of the capture in place. Releasing an absent gate is not
// an error.
func (m *Manager) ReleaseGate(ctx context.Context) error {
	var errs []error
	for _, rs := range m.plan.Rulesets {
		cur, err := m.save(ctx, rs.Family)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := m.restore(ctx, rs.Family, removeInput(cur, map[string]bool{ChainGate: true})); err != nil {
			errs = append(errs, fmt.Errorf("redirect: release %s gate: %w", rs.Family, err))
		}
	}
	return errors.Join(errs...)
}

// Shutdown applies the Config's ShutdownMode: Remove for ShutdownRemove,
// nothing for ShutdownKeep.
func (m *Manager) Shutdown(ctx context.Context) error {
	if m.cfg.Shutdown == ShutdownRemove {
		return m.Remove(ctx)
	}
	m.log.Info("capture rules kept on exit", "shutdown", m.cfg.Shutdown.String())
	return nil
}

// routePresent reports whether the policy-routing object r exists.
func (m *Manager) routePresent(ctx context.Context, r RouteCmd) (bool, error) {
	list := r.Args("show")
	switch r.Object {
	case "rule":
		list = list[:3] // ip -4 rule show
	case "route":
		// ip -4 route show table T
		list = append(list[:3], "table", r.Selector[len(r.Selector)-1])
	}
	out, err := m.run.Run(ctx, nil, "ip", list...)
	if err != nil {
		if r.Object == "route" && strings.Contains(err.Error(), "table") {
			return false, nil
		}
		return false, err
	}
	return routeListed(out, r), nil
}

// routeListed reports whether `ip rule show` / `ip route show table T`
// output lists r.
func routeListed(out []byte, r RouteCmd) bool {
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		switch r.Object {
		case "rule":
			// "32765:	from all fwmark 0x53a lookup 133"
			mark, table := r.Selector[1], r.Selector[3]
			for i := 0; i+3 < len(f); i++ {
				if f[i] == "fwmark" && f[i+1] == mark && f[i+2] == "lookup" && f[i+3] == table {
					return true
				}
			}
		case "route":
			// "local default dev lo scope host"
			if len(f) >= 4 && f[0] == "local" && (f[1] == "default" || f[1] == r.Selector[1]) && f[2] == "dev" && f[3] == "lo" {
				return true
			}
		}
	}
	return false
}
