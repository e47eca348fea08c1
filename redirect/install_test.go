package redirect

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/meshagent/meshagent/redirect/netnstest"
)

// seedRules gives the app namespace rules of its own in every table and
// hook we touch (as a CNI plugin or the pod's own setup would), so the
// test sees that install and remove leave them exactly alone.
func seedRules(t *testing.T, tp *topo) {
	for _, f := range []Family{IPv4, IPv6} {
		dst := "10.250.9.9/32"
		if f == IPv6 {
			dst = "fd00:250:9::9/128"
		}
		in := "*nat\n:OTHER_CHAIN - [0:0]\n" +
			"-A PREROUTING -d " + dst + " -p udp -j RETURN\n" +
			"-A OUTPUT -d " + dst + " -p tcp -j OTHER_CHAIN\n" +
			"-A OTHER_CHAIN -j RETURN\n" +
			"COMMIT\n*mangle\n" +
			"-A PREROUTING -d " + dst + " -p udp -j RETURN\n" +
			"-A OUTPUT -d " + dst + " -p udp -j RETURN\n" +
			"COMMIT\n"
		if _, err := nsRunner(tp.App).Run(context.Background(), []byte(in), f.binary("-restore"), "--noflush"); err != nil {
			t.Fatal(err)
		}
	}
}

// TestInstallIdempotentRemoveExact installs, re-installs, changes and
// removes the rules in a namespace that already has rules of its own, and
// compares iptables-save / ip6tables-save and the routing policy.
// A fresh namespace has no tables at all, so remove must delete the tables
// install created; a seeded one keeps its tables and rules.
func TestInstallIdempotentRemoveExact(t *testing.T) {
	for _, seeded := range []bool{false, true} {
		name := "fresh-namespace"
		if seeded {
			name = "namespace-with-rules"
		}
		t.Run(name, func(t *testing.T) { testInstallRemove(t, seeded) })
	}
}

func testInstallRemove(t *testing.T, seeded bool) {
	tp := newTopo(t)
	if !seeded && netnstest.LegacyIptables() {
		t.Skip("skipping: the legacy iptables backend keeps empty tables; remove cannot make a fresh namespace's iptables-save empty again")
	}
	if seeded {
		seedRules(t, tp)
	}
	ctx := context.Background()
	before := map[Family]string{IPv4: tp.save(tp.App, IPv4), IPv6: tp.save(tp.App, IPv6)}
	rulesBefore := netnstest.Run(t, "ip", "-n", tp.App, "-4", "rule") + netnstest.Run(t, "ip", "-n", tp.App, "-6", "rule")

	cfg := DefaultConfig()
	cfg.InboundMode = InboundTProxy
	cfg.Gate = true
	cfg.ExcludeOutboundCIDRs = []netip.Prefix{netip.MustParsePrefix("10.250.7.0/24"), netip.MustParsePrefix("fd00:250:7::/48")}
	cfg.IncludeInboundPorts = []uint16{8080, 8443}
	m := mustInstall(t, tp, cfg)
	first := map[Family]string{IPv4: tp.save(tp.App, IPv4), IPv6: tp.save(tp.App, IPv6)}
	for f, s := range first {
		if !strings.Contains(s, ":"+ChainTProxy+" ") || !strings.Contains(s, ":"+ChainGate+" ") {
			t.Fatalf("%s: chains missing after install:\n%s", f, s)
		}
	}
	if err := m.Install(ctx); err != nil {
		t.Fatal(err)
	}
	for f := range first {
		if got := tp.save(tp.App, f); got != first[f] {
			t.Fatalf("%s: second install changed the ruleset:\n--- first\n%s--- second\n%s", f, first[f], got)
		}
	}

	// A changed config replaces ours in place: TPROXY and gate chains go.
	cfg2 := DefaultConfig()
	cfg2.ExcludeOutboundPorts = []uint16{22}
	m2 := mustInstall(t, tp, cfg2)
	for _, f := range []Family{IPv4, IPv6} {
		s := tp.save(tp.App, f)
		if strings.Contains(s, ChainTProxy) || strings.Contains(s, ChainGate) || strings.Contains(s, ChainDivert) {
			t.Fatalf("%s: chains of the old config left behind:\n%s", f, s)
		}
	}
	if rep, err := m.Verify(ctx); err == nil || !errors.Is(err, ErrNotInstalled) || rep.OK() {
		t.Fatalf("verify of the old config after a change: %v", err)
	}

	if err := m2.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Remove(ctx); err != nil { // also removes the TPROXY policy routing
		t.Fatal(err)
	}
	for f := range before {
		if got := tp.save(tp.App, f); got != before[f] {
			t.Fatalf("%s: ruleset after remove differs from before install:\n--- before\n%s--- after\n%s", f, before[f], got)
		}
	}
	if got := netnstest.Run(t, "ip", "-n", tp.App, "-4", "rule") + netnstest.Run(t, "ip", "-n", tp.App, "-6", "rule"); got != rulesBefore {
		t.Fatalf("ip rules after remove:\n%s\nwant\n%s", got, rulesBefore)
	}
	if got := strings.TrimSpace(netnstest.Run(t, "ip", "-n", tp.App, "-4", "route", "show", "table", "133")); got != "" {
		t.Fatalf("TPROXY route left behind: %s", got)
	}
	// Removing again is a no-op.
	if err := m.Remove(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyReportsDifferences tampers with installed rules and checks
// that Verify names each difference and Install repairs them.
func TestVerifyReportsDifferences(t *testing.T) {
	tp := newTopo(t)
	ctx := context.Background()
	cfg := DefaultConfig()
	cfg.InboundMode = InboundTProxy
	m := mustInstall(t, tp, cfg)
	ns := []string{"ip", "netns", "exec", tp.App}
	netnstest.Run(t, append(ns, "iptables", "-t", "nat", "-D", ChainOutput, "1")...)                           // the bypass-mark rule
	netnstest.Run(t, append(ns, "iptables", "-t", "nat", "-A", ChainRedirect, "-p", "udp", "-j", "RETURN")...) // a stray rule
	netnstest.Run(t, append(ns, "ip6tables", "-t", "mangle", "-D", "PREROUTING", "-p", "tcp", "-j", ChainInbound)...)
	netnstest.Run(t, append(ns, "iptables", "-t", "nat", "-N", "MESHAGENT_STALE")...)
	netnstest.Run(t, "ip", "-n", tp.App, "-6", "rule", "del", "fwmark", "0x53a", "lookup", "133")

	rep, err := m.Verify(ctx)
	if !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("verify: %v", err)
	}
	for _, want := range []string{
		`ipv4: table nat chain MESHAGENT_OUTPUT: missing rule "-m mark --mark 0x539 -j RETURN"`,
		`ipv4: table nat chain MESHAGENT_REDIRECT: unexpected rule "-p udp -j RETURN"`,
		`ipv6: table mangle: missing jump "-A PREROUTING -p tcp -j MESHAGENT_INBOUND"`,
		`ipv4: table nat: unexpected chain MESHAGENT_STALE`,
		`ipv6: missing policy routing "ip -6 rule add fwmark 0x53a lookup 133"`,
	} {
		if !strings.Contains(rep.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, rep)
		}
	}
	if len(rep.Diffs) != 5 {
		t.Errorf("report has %d differences, want 5:\n%s", len(rep.Diffs), rep)
	}
	if err := m.Install(ctx); err != nil {
		t.Fatal(err)
	}
	if rep, err := m.Verify(ctx); err != nil {
		t.Fatalf("verify after repair: %v\n%s", err, rep)
	}
}

// TestShutdownModes: ShutdownKeep leaves the rules (init-container style),
// ShutdownRemove takes them away (self-managed).
func TestShutdownModes(t *testing.T) {
	for _, mode := range []ShutdownMode{ShutdownKeep, ShutdownRemove} {
		t.Run(mode.String(), func(t *testing.T) {
			tp := newTopo(t)
			before := tp.save(tp.App, IPv4)
			cfg := DefaultConfig()
			cfg.Shutdown = mode
			m := mustInstall(t, tp, cfg)
			if err := m.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			_, err := m.Verify(context.Background())
			switch mode {
			case ShutdownKeep:
				if err != nil {
					t.Fatalf("rules gone after a keep shutdown: %v", err)
				}
			case ShutdownRemove:
				if got := tp.save(tp.App, IPv4); got != before {
					t.Fatalf("rules left after a remove shutdown:\n%s", got)
				}
			}
		})
	}
}

func TestManagerOpenGateNeedsGate(t *testing.T) {
	m, err := NewManager(DefaultConfig(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.OpenGate(); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("OpenGate without Gate: %v", err)
	}
}
