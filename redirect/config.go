// Package redirect owns meshagent's traffic capture: the iptables and
// ip6tables rules that steer the application's TCP to the sidecar
// (REDIRECT for outbound, REDIRECT or TPROXY for inbound), their atomic
// install, verification and removal, the recovery of a captured
// connection's original destination, a pass-through helper for connections
// nothing else wants, and the netfilter-queue startup gate that holds the
// application's first connections until the sidecar is ready.
//
// Rules are data: a Config is validated, rendered into a Plan (one
// iptables-restore input per IP family plus the policy-routing commands
// TPROXY needs), and the Plan is applied with `iptables-restore --noflush`
// into chains named MESHAGENT_*, reached by one jump each from the built-in
// PREROUTING and OUTPUT chains. Built-in chains are never flushed, and
// Remove deletes exactly the jumps and chains Install added.
//
// It does not own: proxying itself (package dataplane takes OriginalDst as
// an injected hook), the process lifecycle (cmd/meshagent), nor network
// namespaces (the caller runs meshagent inside the namespace to capture).
package redirect

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Sentinel errors; callers match them with errors.Is.
var (
	// ErrInvalidConfig reports a Config field that breaks a rule; the
	// wrapping error names the field and the rule.
	ErrInvalidConfig = errors.New("redirect: invalid config")
	// ErrMissingBinary reports an iptables or iproute2 binary missing from
	// PATH; the wrapping error names the Debian package that provides it.
	ErrMissingBinary = errors.New("redirect: required binary not found")
	// ErrNotInstalled reports that Verify found the rules absent or
	// different; the wrapping error lists every difference.
	ErrNotInstalled = errors.New("redirect: rules not in place")
	// ErrNoOriginalDst reports a connection whose original destination
	// cannot be recovered.
	ErrNoOriginalDst = errors.New("redirect: no original destination")
	// ErrLoop reports a connection whose original destination is the proxy
	// itself; forwarding it would loop.
	ErrLoop = errors.New("redirect: original destination is the proxy itself")
	// ErrRefused reports a connection refused by a PassThrough configured
	// to refuse unmatched traffic.
	ErrRefused = errors.New("redirect: pass-through refused")
)

// InboundMode selects how inbound TCP reaches the proxy.
type InboundMode int

const (
	// InboundRedirect NATs inbound connections to the inbound port (nat
	// table REDIRECT). The proxy sees the client's address; the original
	// destination comes from SO_ORIGINAL_DST.
	InboundRedirect InboundMode = iota
	// InboundTProxy diverts inbound connections with the mangle table's
	// TPROXY target and fwmark policy routing, without NAT. The proxy
	// listens with IP_TRANSPARENT and its accepted socket's local address is
	// the original destination.
	InboundTProxy
	// InboundNone leaves inbound traffic alone.
	InboundNone
)

// String returns the flag spelling of m.
func (m InboundMode) String() string {
	switch m {
	case InboundRedirect:
		return "redirect"
	case InboundTProxy:
		return "tproxy"
	case InboundNone:
		return "none"
	}
	return "InboundMode(" + strconv.Itoa(int(m)) + ")"
}

// ParseInboundMode parses "redirect", "tproxy" or "none" (case-insensitive).
func ParseInboundMode(s string) (InboundMode, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "redirect", "":
		return InboundRedirect, nil
	case "tproxy":
		return InboundTProxy, nil
	case "none":
		return InboundNone, nil
	}
	return 0, fmt.Errorf("%w: inbound mode %q: must be redirect, tproxy or none", ErrInvalidConfig, s)
}

// ShutdownMode says what happens to the rules when the sidecar exits.
type ShutdownMode int

const (
	// ShutdownKeep leaves the rules in place (init-container style: the
	// rules belong to the pod, not to the sidecar process).
	ShutdownKeep ShutdownMode = iota
	// ShutdownRemove removes the rules when the sidecar exits
	// (self-managed capture).
	ShutdownRemove
)

// String returns the flag spelling of m.
func (m ShutdownMode) String() string {
	switch m {
	case ShutdownKeep:
		return "keep"
	case ShutdownRemove:
		return "remove"
	}
	return "ShutdownMode(" + strconv.Itoa(int(m)) + ")"
}

// Defaults, matching the ports and ids istio-iptables uses so that existing
// pod specs and images keep working.
const (
	// DefaultOutboundPort is where captured outbound connections go.
	DefaultOutboundPort = 15001
	// DefaultInboundPort is where captured inbound connections go.
	DefaultInboundPort = 15006
	// DefaultProxyUID is the uid the proxy runs as; its own connections
	// are not captured.
	DefaultProxyUID = 1337
	// DefaultProxyGID is the proxy's gid.
	DefaultProxyGID = 1337
	// DefaultBypassMark is the SO_MARK that exempts a socket from capture.
	DefaultBypassMark = 0x539
	// DefaultTProxyMark is the fwmark TPROXY sets and policy routing reads.
	DefaultTProxyMark = 0x53a
	// DefaultTProxyTable is the routing table holding the local route for
	// TPROXY-marked packets.
	DefaultTProxyTable = 133
	// DefaultGateQueue is the NFQUEUE number the startup gate uses.
	DefaultGateQueue = 15000
)

// Config describes the capture rules. The zero value is not usable; start
// from DefaultConfig and change fields. A Config is plain data: it is safe
// to copy and is never mutated by this package.
type Config struct {
	// OutboundPort is where captured outbound TCP is redirected (1-65535).
	OutboundPort uint16
	// InboundPort is where captured inbound TCP is delivered (1-65535).
	InboundPort uint16
	// ProxyUID is the uid the proxy runs as; its sockets are never captured
	// as outbound. Its connections over lo to a non-loopback local address
	// are sent to the inbound port (the app calling itself through the mesh).
	ProxyUID uint32
	// ProxyGID is the gid the proxy runs as, with the same meaning as
	// ProxyUID.
	ProxyGID uint32
	// ExcludeUIDs lists more uids whose outbound TCP is never captured (for
	// example an init container that needs the network before the proxy).
	ExcludeUIDs []uint32
	// ExcludeGIDs lists more gids whose outbound TCP is never captured.
	ExcludeGIDs []uint32
	// BypassMark is the SO_MARK that exempts a socket from capture; the
	// pass-through helper dials with it. Must be non-zero and differ from
	// TProxyMark.
	BypassMark uint32
	// IncludeOutboundCIDRs lists destination prefixes to capture; empty
	// means every destination. When it is non-empty, a family with no
	// prefix in the list has no outbound capture at all.
	IncludeOutboundCIDRs []netip.Prefix
	// ExcludeOutboundCIDRs lists destination prefixes never captured; they
	// win over IncludeOutboundCIDRs.
	ExcludeOutboundCIDRs []netip.Prefix
	// IncludeOutboundPorts lists destination ports to capture; empty means
	// every port.
	IncludeOutboundPorts []uint16
	// ExcludeOutboundPorts lists destination ports never captured.
	ExcludeOutboundPorts []uint16
	// InboundMode selects REDIRECT, TPROXY or no inbound capture.
	InboundMode InboundMode
	// IncludeInboundPorts lists local ports whose inbound TCP is captured;
	// empty means every port.
	IncludeInboundPorts []uint16
	// ExcludeInboundPorts lists local ports never captured inbound (for
	// example ssh or the proxy's own health port).
	ExcludeInboundPorts []uint16
	// TProxyMark is the fwmark TPROXY sets on diverted packets (non-zero).
	TProxyMark uint32
	// TProxyTable is the routing table `ip rule fwmark TProxyMark lookup`
	// uses; it holds only `local default dev lo` (1-2^31, not 253-255).
	TProxyTable uint32
	// IPv4 renders and applies iptables rules.
	IPv4 bool
	// IPv6 renders and applies ip6tables rules.
	IPv6 bool
	// Gate adds the startup-gate rule: the app's new outbound TCP SYNs go
	// to NFQUEUE GateQueue (no bypass) until a Gate releases them.
	Gate bool
	// GateQueue is the NFQUEUE number of the startup gate.
	GateQueue uint16
	// GateTimeout bounds how long a Gate holds connections when readiness
	// never comes; zero means no bound.
	GateTimeout time.Duration
	// Shutdown says whether the rules stay or go when the sidecar exits.
	Shutdown ShutdownMode
}

// DefaultConfig returns the istio-compatible defaults: outbound 15001,
// inbound 15006 by REDIRECT, proxy uid/gid 1337, IPv4 and IPv6, no gate,
// rules kept on exit.
func DefaultConfig() Config {
	return Config{
		OutboundPort: DefaultOutboundPort,
		InboundPort:  DefaultInboundPort,
		ProxyUID:     DefaultProxyUID,
		ProxyGID:     DefaultProxyGID,
		BypassMark:   DefaultBypassMark,
		InboundMode:  InboundRedirect,
		TProxyMark:   DefaultTProxyMark,
		TProxyTable:  DefaultTProxyTable,
		IPv4:         true,
		IPv6:         true,
		GateQueue:    DefaultGateQueue,
		Shutdown:     ShutdownKeep,
	}
}

// Validate reports the first rule c breaks, wrapped in ErrInvalidConfig and
// naming the field.
func (c *Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrInvalidConfig, field, fmt.Sprintf(format, args...))
	}
	if c.OutboundPort == 0 {
		return bad("outbound-port", "must be 1-65535")
	}
	if c.InboundPort == 0 && c.InboundMode != InboundNone {
		return bad("inbound-port", "must be 1-65535")
	}
	if c.OutboundPort == c.InboundPort {
		return bad("inbound-port", "%d equals outbound-port; they must differ", c.InboundPort)
	}
	if !c.IPv4 && !c.IPv6 {
		return bad("ip-families", "at least one of IPv4 and IPv6 must be enabled")
	}
	if c.BypassMark == 0 {
		return bad("bypass-mark", "must be non-zero")
	}
	if c.InboundMode < InboundRedirect || c.InboundMode > InboundNone {
		return bad("inbound-mode", "unknown mode %d", int(c.InboundMode))
	}
	if c.InboundMode == InboundTProxy {
		if c.TProxyMark == 0 {
			return bad("tproxy-mark", "must be non-zero")
		}
		if c.TProxyMark == c.BypassMark {
			return bad("tproxy-mark", "%#x equals bypass-mark; they must differ", c.TProxyMark)
		}
		if c.TProxyTable == 0 || c.TProxyTable >= 1<<31 || (c.TProxyTable >= 253 && c.TProxyTable <= 255) {
			return bad("tproxy-table", "%d: must be 1-2147483647 and not a reserved table (253 default, 254 main, 255 local)", c.TProxyTable)
		}
	}
	for _, pl := range []struct {
		field string
		ports []uint16
	}{
		{"include-outbound-ports", c.IncludeOutboundPorts},
		{"exclude-outbound-ports", c.ExcludeOutboundPorts},
		{"include-inbound-ports", c.IncludeInboundPorts},
		{"exclude-inbound-ports", c.ExcludeInboundPorts},
	} {
		for _, p := range pl.ports {
			if p == 0 {
				return bad(pl.field, "port 0 is out of range 1-65535")
			}
		}
	}
	for _, cl := range []struct {
		field string
		cidrs []netip.Prefix
	}{
		{"include-outbound-cidrs", c.IncludeOutboundCIDRs},
		{"exclude-outbound-cidrs", c.ExcludeOutboundCIDRs},
	} {
		for _, p := range cl.cidrs {
			if !p.IsValid() {
				return bad(cl.field, "invalid prefix %v", p)
			}
			if p.Addr().Is4() && !c.IPv4 || p.Addr().Is6() && !c.IPv6 {
				return bad(cl.field, "%v is of a disabled IP family", p)
			}
		}
	}
	if c.Gate && c.GateTimeout < 0 {
		return bad("gate-timeout", "must not be negative")
	}
	if c.Shutdown < ShutdownKeep || c.Shutdown > ShutdownRemove {
		return bad("shutdown", "unknown mode %d", int(c.Shutdown))
	}
	return nil
}

// ParsePorts parses a comma-separated list of TCP ports ("80,443,8080").
// The empty string and "*" yield nil (meaning "all" for include lists).
// Every entry must be a decimal integer in 1-65535; duplicates are removed,
// order is kept.
func ParsePorts(s string) ([]uint16, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "*" {
		return nil, nil
	}
	var out []uint16
	seen := map[uint16]bool{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		n, err := strconv.ParseUint(f, 10, 32)
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("%w: port %q is out of range 1-65535", ErrInvalidConfig, f)
		}
		if !seen[uint16(n)] {
			seen[uint16(n)] = true
			out = append(out, uint16(n))
		}
	}
	return out, nil
}

// ParseCIDRs parses a comma-separated list of IPv4 or IPv6 prefixes
// ("10.0.0.0/8,fd00::/8"); a bare address means a host prefix. The empty
// string and "*" yield nil. Host bits are cleared (10.1.2.3/8 becomes
// 10.0.0.0/8), as iptables itself does; IPv4-mapped IPv6 addresses are
// rejected because ip6tables would never see them.
func ParseCIDRs(s string) ([]netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "*" {
		return nil, nil
	}
	var out []netip.Prefix
	seen := map[netip.Prefix]bool{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		var p netip.Prefix
		var err error
		if strings.Contains(f, "/") {
			p, err = netip.ParsePrefix(f)
		} else {
			var a netip.Addr
			a, err = netip.ParseAddr(f)
			if err == nil && a.Zone() != "" {
				return nil, fmt.Errorf("%w: bad CIDR %q: zones are not allowed", ErrInvalidConfig, f)
			}
			if err == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%w: bad CIDR %q: %v", ErrInvalidConfig, f, err)
		}
		if !p.IsValid() || p.Addr().Zone() != "" || p.Addr().Is4In6() {
			return nil, fmt.Errorf("%w: bad CIDR %q: zones and IPv4-mapped addresses are not allowed", ErrInvalidConfig, f)
		}
		p = p.Masked()
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out, nil
}

// ParseIDs parses a comma-separated list of uids or gids (decimal, 0 to
// 2^32-2). The empty string yields nil.
func ParseIDs(s string) ([]uint32, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var out []uint32
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		n, err := strconv.ParseUint(f, 10, 32)
		if err != nil || n == 1<<32-1 {
			return nil, fmt.Errorf("%w: id %q must be a decimal integer 0-4294967294", ErrInvalidConfig, f)
		}
		out = append(out, uint32(n))
	}
	return out, nil
}
