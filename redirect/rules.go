package redirect

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Family is an IP family the rules are rendered for.
type Family int

const (
	// IPv4 is rendered for iptables-restore and `ip -4`.
	IPv4 Family = iota
	// IPv6 is rendered for ip6tables-restore and `ip -6`.
	IPv6
)

// String returns "ipv4" or "ipv6".
func (f Family) String() string {
	switch f {
	case IPv4:
		return "ipv4"
	case IPv6:
		return "ipv6"
	}
	return "Family(" + strconv.Itoa(int(f)) + ")"
}

// binary returns the iptables binary of f with the given suffix ("-save",
// "-restore" or "").
func (f Family) binary(suffix string) string {
	if f == IPv6 {
		return "ip6tables" + suffix
	}
	return "iptables" + suffix
}

// loopback is the host prefix of the loopback address of f.
func (f Family) loopback() string {
	if f == IPv6 {
		return "::1/128"
	}
	return "127.0.0.1/32"
}

// inboundPassthroughSrc is the source address a proxy binds to when it
// forwards inbound connections to the app over lo (istio's 127.0.0.6), so
// that those connections are never captured again.
func (f Family) inboundPassthroughSrc() string {
	if f == IPv6 {
		return "::6/128"
	}
	return "127.0.0.6/32"
}

func (f Family) any() string {
	if f == IPv6 {
		return "::"
	}
	return "0.0.0.0"
}

func (f Family) has(p netip.Prefix) bool {
	return p.Addr().Is4() == (f == IPv4)
}

// The chains meshagent owns. Install creates them, Remove deletes them;
// nothing else in the ruleset is touched except one jump per chain that is
// reached from a built-in chain.
const (
	ChainOutput     = "MESHAGENT_OUTPUT"      // nat: outbound selection
	ChainRedirect   = "MESHAGENT_REDIRECT"    // nat: REDIRECT to the outbound port
	ChainInbound    = "MESHAGENT_INBOUND"     // nat (REDIRECT) or mangle (TPROXY): inbound selection
	ChainInRedirect = "MESHAGENT_IN_REDIRECT" // nat: REDIRECT to the inbound port
	ChainDivert     = "MESHAGENT_DIVERT"      // mangle: mark packets of TPROXYed connections
	ChainTProxy     = "MESHAGENT_TPROXY"      // mangle: TPROXY to the inbound port
	ChainGate       = "MESHAGENT_GATE"        // mangle: new outbound SYNs to NFQUEUE
	// ChainTableMarker is an empty chain Install adds to a table that did
	// not exist before, so that Remove knows to delete the table again
	// (iptables-save then prints exactly what it printed before).
	ChainTableMarker = "MESHAGENT_TABLE"
	chainPrefix      = "MESHAGENT_"
)

// Rule is one iptables rule in the canonical form iptables-save prints, so
// that rendered and installed rules compare as strings.
type Rule struct {
	// Table is nat or mangle.
	Table string
	// Chain is the chain the rule is appended to.
	Chain string
	// Spec is the rule after "-A CHAIN ".
	Spec string
}

// String returns the rule as an iptables command line without the binary.
func (r Rule) String() string { return "-t " + r.Table + " -A " + r.Chain + " " + r.Spec }

// TableChain names one of our chains in a table.
type TableChain struct {
	// Table and Chain are the table's and the chain's names.
	Table, Chain string
}

// Ruleset is the rendered rules of one family.
type Ruleset struct {
	// Family is the IP family the rules are for.
	Family Family
	// Chains lists our chains in creation order.
	Chains []TableChain
	// Rules lists the rules in our chains, in order within each chain.
	Rules []Rule
	// Jumps lists the rules appended to built-in chains (one per entry
	// point into our chains).
	Jumps []Rule
}

// RouteCmd is one policy-routing object TPROXY needs, as `ip` arguments.
type RouteCmd struct {
	// Family selects `ip -4` or `ip -6`.
	Family Family
	// Object is "rule" or "route".
	Object string
	// Selector is the object's arguments ("fwmark 0x53a lookup 133").
	Selector []string
}

// Args returns the `ip` arguments for verb ("add" or "del").
func (c RouteCmd) Args(verb string) []string {
	fam := "-4"
	if c.Family == IPv6 {
		fam = "-6"
	}
	return append([]string{fam, c.Object, verb}, c.Selector...)
}

// String returns the add command line.
func (c RouteCmd) String() string { return "ip " + strings.Join(c.Args("add"), " ") }

// Plan is a rendered Config: what Install applies and Verify expects.
type Plan struct {
	// Rulesets holds one Ruleset per enabled family.
	Rulesets []Ruleset
	// Routes holds the policy-routing objects (TPROXY only).
	Routes []RouteCmd
}

// Render turns a valid Config into a Plan. It validates c first.
func Render(c Config) (*Plan, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	p := &Plan{}
	for _, f := range []Family{IPv4, IPv6} {
		if f == IPv4 && !c.IPv4 || f == IPv6 && !c.IPv6 {
			continue
		}
		p.Rulesets = append(p.Rulesets, renderFamily(&c, f))
		if c.InboundMode == InboundTProxy {
			def := "0.0.0.0/0"
			if f == IPv6 {
				def = "::/0"
			}
			table := strconv.FormatUint(uint64(c.TProxyTable), 10)
			p.Routes = append(p.Routes,
				RouteCmd{Family: f, Object: "rule", Selector: []string{"fwmark", hexMark(c.TProxyMark), "lookup", table}},
				RouteCmd{Family: f, Object: "route", Selector: []string{"local", def, "dev", "lo", "table", table}},
			)
		}
	}
	return p, nil
}

func hexMark(m uint32) string { return "0x" + strconv.FormatUint(uint64(m), 16) }

type builder struct {
	rs Ruleset
}

func (b *builder) chain(table, chain string) {
	b.rs.Chains = append(b.rs.Chains, TableChain{table, chain})
}

func (b *builder) add(table, chain string, parts ...string) {
	b.rs.Rules = append(b.rs.Rules, Rule{table, chain, strings.Join(nonEmpty(parts), " ")})
}

func (b *builder) jump(table, chain string, parts ...string) {
	b.rs.Jumps = append(b.rs.Jumps, Rule{table, chain, strings.Join(nonEmpty(parts), " ")})
}

func nonEmpty(parts []string) []string {
	out := parts[:0:0]
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

func dport(p uint16) string { return "-m tcp --dport " + strconv.Itoa(int(p)) }

func owner(kind string, id uint32, negate bool) string {
	n := ""
	if negate {
		n = "! "
	}
	return "-m owner " + n + "--" + kind + "-owner " + strconv.FormatUint(uint64(id), 10)
}

// selection yields the (destination, port) matches a captured outbound
// connection must satisfy, for family f; nil means nothing is captured.
func selection(c *Config, f Family) [][2]string {
	var dsts []string
	if len(c.IncludeOutboundCIDRs) == 0 {
		dsts = []string{""}
	} else {
		for _, p := range c.IncludeOutboundCIDRs {
			if f.has(p) {
				dsts = append(dsts, "-d "+p.String())
			}
		}
	}
	ports := []string{""}
	if len(c.IncludeOutboundPorts) > 0 {
		ports = ports[:0]
		for _, p := range c.IncludeOutboundPorts {
			ports = append(ports, dport(p))
		}
	}
	var out [][2]string
	for _, d := range dsts {
		for _, p := range ports {
			out = append(out, [2]string{d, p})
		}
	}
	return out
}

// exclusions appends the RETURN rules shared by the outbound chain and the
// gate: excluded owners, loopback, excluded ports and prefixes.
func exclusions(b *builder, c *Config, f Family, table, chain string) {
	for _, u := range c.ExcludeUIDs {
		b.add(table, chain, owner("uid", u, false), "-j RETURN")
	}
	for _, g := range c.ExcludeGIDs {
		b.add(table, chain, owner("gid", g, false), "-j RETURN")
	}
	b.add(table, chain, "-d "+f.loopback(), "-j RETURN")
	for _, p := range c.ExcludeOutboundPorts {
		b.add(table, chain, "-p tcp", dport(p), "-j RETURN")
	}
	for _, p := range c.ExcludeOutboundCIDRs {
		if f.has(p) {
			b.add(table, chain, "-d "+p.String(), "-j RETURN")
		}
	}
}

func renderFamily(c *Config, f Family) Ruleset {
	b := &builder{rs: Ruleset{Family: f}}
	inbound := c.InboundMode != InboundNone

	// nat: outbound capture.
	b.chain("nat", ChainOutput)
	b.chain("nat", ChainRedirect)
	if inbound {
		b.chain("nat", ChainInRedirect)
	}
	b.add("nat", ChainRedirect, "-p tcp -j REDIRECT --to-ports "+strconv.Itoa(int(c.OutboundPort)))
	if inbound {
		b.add("nat", ChainInRedirect, "-p tcp -j REDIRECT --to-ports "+strconv.Itoa(int(c.InboundPort)))
	}
	b.jump("nat", "OUTPUT", "-p tcp -j "+ChainOutput)
	out := ChainOutput
	// Sockets marked by the proxy (the pass-through helper) never loop back.
	b.add("nat", out, "-m mark --mark "+hexMark(c.BypassMark), "-j RETURN")
	// The proxy's inbound pass-through to the app over lo.
	b.add("nat", out, "-s "+f.inboundPassthroughSrc(), "-o lo", "-j RETURN")
	for _, o := range []struct {
		kind string
		id   uint32
	}{{"uid", c.ProxyUID}, {"gid", c.ProxyGID}} {
		if inbound {
			// The proxy calling a local non-loopback address (the app
			// calling itself through the mesh) is inbound traffic.
			b.add("nat", out, "! -d "+f.loopback(), "-o lo", "-p tcp", owner(o.kind, o.id, false), "-j "+ChainInRedirect)
		}
		// The app talking to itself over lo is never captured.
		b.add("nat", out, "-o lo", owner(o.kind, o.id, true), "-j RETURN")
		// The proxy's own outbound traffic is never captured.
		b.add("nat", out, owner(o.kind, o.id, false), "-j RETURN")
	}
	exclusions(b, c, f, "nat", out)
	for _, s := range selection(c, f) {
		b.add("nat", out, s[0], "-p tcp", s[1], "-j "+ChainRedirect)
	}

	// Inbound capture.
	switch c.InboundMode {
	case InboundRedirect:
		b.chain("nat", ChainInbound)
		b.jump("nat", "PREROUTING", "-p tcp -j "+ChainInbound)
		for _, p := range c.ExcludeInboundPorts {
			b.add("nat", ChainInbound, "-p tcp", dport(p), "-j RETURN")
		}
		if len(c.IncludeInboundPorts) == 0 {
			b.add("nat", ChainInbound, "-p tcp -j "+ChainInRedirect)
		}
		for _, p := range c.IncludeInboundPorts {
			b.add("nat", ChainInbound, "-p tcp", dport(p), "-j "+ChainInRedirect)
		}
	case InboundTProxy:
		mark := hexMark(c.TProxyMark) + "/0xffffffff"
		b.chain("mangle", ChainInbound)
		b.chain("mangle", ChainDivert)
		b.chain("mangle", ChainTProxy)
		b.jump("mangle", "PREROUTING", "-p tcp -j "+ChainInbound)
		b.add("mangle", ChainDivert, "-j MARK --set-xmark "+mark)
		b.add("mangle", ChainDivert, "-j ACCEPT")
		b.add("mangle", ChainTProxy, "! -d "+f.loopback(), "-p tcp -j TPROXY --on-port "+strconv.Itoa(int(c.InboundPort))+
			" --on-ip "+f.any()+" --tproxy-mark "+mark)
		// Local traffic (the proxy forwarding to the app) is never diverted.
		b.add("mangle", ChainInbound, "-i lo -p tcp -j RETURN")
		for _, p := range c.ExcludeInboundPorts {
			b.add("mangle", ChainInbound, "-p tcp", dport(p), "-j RETURN")
		}
		// Packets of connections already diverted go to the local socket.
		b.add("mangle", ChainInbound, "-p tcp -m conntrack --ctstate RELATED,ESTABLISHED -j "+ChainDivert)
		if len(c.IncludeInboundPorts) == 0 {
			b.add("mangle", ChainInbound, "-p tcp -j "+ChainTProxy)
		}
		for _, p := range c.IncludeInboundPorts {
			b.add("mangle", ChainInbound, "-p tcp", dport(p), "-j "+ChainTProxy)
		}
	}

	// The startup gate: new outbound SYNs that would be captured go to
	// NFQUEUE without --queue-bypass until a Gate releases them.
	if c.Gate {
		b.chain("mangle", ChainGate)
		b.jump("mangle", "OUTPUT", gateJumpSpec)
		g := ChainGate
		b.add("mangle", g, "-m mark --mark "+hexMark(c.BypassMark), "-j RETURN")
		b.add("mangle", g, "-o lo -j RETURN")
		b.add("mangle", g, owner("uid", c.ProxyUID, false), "-j RETURN")
		b.add("mangle", g, owner("gid", c.ProxyGID, false), "-j RETURN")
		exclusions(b, c, f, "mangle", g)
		for _, s := range selection(c, f) {
			b.add("mangle", g, s[0], "-p tcp", s[1], "-j NFQUEUE --queue-num "+strconv.Itoa(int(c.GateQueue)))
		}
	}
	return b.rs
}

const gateJumpSpec = "-p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j " + ChainGate

// tables returns the tables the ruleset touches, in a stable order.
func (rs *Ruleset) tables() []string {
	var out []string
	for _, t := range []string{"mangle", "nat"} {
		for _, c := range rs.Chains {
			if c.Table == t {
				out = append(out, t)
				break
			}
		}
	}
	return out
}

// RestoreInput returns the iptables-restore --noflush input that installs
// the ruleset into a ruleset holding none of our chains. Install computes
// its own input from the live ruleset; this form is for show and dry runs.
func (rs *Ruleset) RestoreInput() string {
	var sb strings.Builder
	for _, t := range rs.tables() {
		fmt.Fprintf(&sb, "*%s\n", t)
		for _, c := range rs.Chains {
			if c.Table == t {
				fmt.Fprintf(&sb, ":%s - [0:0]\n", c.Chain)
			}
		}
		for _, r := range rs.Rules {
			if r.Table == t {
				fmt.Fprintf(&sb, "-A %s %s\n", r.Chain, r.Spec)
			}
		}
		for _, r := range rs.Jumps {
			if r.Table == t {
				fmt.Fprintf(&sb, "-A %s %s\n", r.Chain, r.Spec)
			}
		}
		sb.WriteString("COMMIT\n")
	}
	return sb.String()
}

// String renders the whole plan as it would be applied: per family the
// restore input, then the ip commands.
func (p *Plan) String() string {
	var sb strings.Builder
	for _, rs := range p.Rulesets {
		fmt.Fprintf(&sb, "# %s: %s --noflush\n", rs.Family, rs.Family.binary("-restore"))
		sb.WriteString(rs.RestoreInput())
	}
	for _, r := range p.Routes {
		sb.WriteString(r.String())
		sb.WriteByte('\n')
	}
	return sb.String()
}
