package redirect

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
)

// RegisterFlags defines one flag per Config field on fs, writing into c;
// c's current values are the defaults shown. Every flag rejects a bad
// value at parse time with a message naming the flag and the rule; call
// Validate after fs.Parse for the rules that span fields.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	port := func(name, usage string, dst *uint16) {
		fs.Func(name, fmt.Sprintf("%s (default %d)", usage, *dst), func(s string) error {
			n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 32)
			if err != nil || n < 1 || n > 65535 {
				return fmt.Errorf("port %q is out of range 1-65535", s)
			}
			*dst = uint16(n)
			return nil
		})
	}
	u32 := func(name, usage string, dst *uint32, hex bool) {
		def := strconv.FormatUint(uint64(*dst), 10)
		if hex {
			def = hexMark(*dst)
		}
		fs.Func(name, fmt.Sprintf("%s (default %s)", usage, def), func(s string) error {
			n, err := strconv.ParseUint(strings.TrimSpace(s), 0, 32)
			if err != nil {
				return fmt.Errorf("%q is not a 32-bit unsigned integer", s)
			}
			*dst = uint32(n)
			return nil
		})
	}
	ports := func(name, usage string, dst *[]uint16) {
		fs.Func(name, usage+" (comma-separated; empty or * for none/all)", parsedInto(dst, ParsePorts))
	}
	ids := func(name, usage string, dst *[]uint32) {
		fs.Func(name, usage+" (comma-separated)", parsedInto(dst, ParseIDs))
	}
	port("outbound-port", "port captured outbound TCP is redirected to", &c.OutboundPort)
	port("inbound-port", "port captured inbound TCP is delivered to", &c.InboundPort)
	u32("proxy-uid", "uid of the proxy; its traffic is never captured", &c.ProxyUID, false)
	u32("proxy-gid", "gid of the proxy; its traffic is never captured", &c.ProxyGID, false)
	ids("exclude-uids", "more uids whose outbound TCP is never captured", &c.ExcludeUIDs)
	ids("exclude-gids", "more gids whose outbound TCP is never captured", &c.ExcludeGIDs)
	u32("bypass-mark", "SO_MARK exempting a socket from capture", &c.BypassMark, true)
	fs.Func("include-outbound-cidrs", "destination CIDRs to capture (comma-separated; empty or * for all)", parsedInto(&c.IncludeOutboundCIDRs, ParseCIDRs))
	fs.Func("exclude-outbound-cidrs", "destination CIDRs never captured (comma-separated)", parsedInto(&c.ExcludeOutboundCIDRs, ParseCIDRs))
	ports("include-outbound-ports", "destination ports to capture", &c.IncludeOutboundPorts)
	ports("exclude-outbound-ports", "destination ports never captured", &c.ExcludeOutboundPorts)
	fs.Func("inbound-mode", "inbound capture: redirect, tproxy or none (default "+c.InboundMode.String()+")", parsedInto(&c.InboundMode, ParseInboundMode))
	ports("include-inbound-ports", "local ports whose inbound TCP is captured", &c.IncludeInboundPorts)
	ports("exclude-inbound-ports", "local ports never captured inbound", &c.ExcludeInboundPorts)
	u32("tproxy-mark", "fwmark set by TPROXY", &c.TProxyMark, true)
	u32("tproxy-table", "routing table for TPROXY-marked packets", &c.TProxyTable, false)
	fs.BoolVar(&c.IPv4, "ipv4", c.IPv4, "apply iptables (IPv4) rules")
	fs.BoolVar(&c.IPv6, "ipv6", c.IPv6, "apply ip6tables (IPv6) rules")
	fs.BoolVar(&c.Gate, "gate", c.Gate, "add the startup gate: hold the app's new outbound connections in an NFQUEUE until the proxy is ready")
	fs.Func("gate-queue", fmt.Sprintf("NFQUEUE number of the startup gate (default %d)", c.GateQueue), func(s string) error {
		n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
		if err != nil {
			return fmt.Errorf("queue %q is out of range 0-65535", s)
		}
		c.GateQueue = uint16(n)
		return nil
	})
	fs.DurationVar(&c.GateTimeout, "gate-timeout", c.GateTimeout, "release the startup gate after this long even without readiness (0: never)")
	fs.Func("shutdown", "on exit: keep the rules (init-container style) or remove them (default "+c.Shutdown.String()+")", func(s string) error {
		switch strings.TrimSpace(s) {
		case "keep":
			c.Shutdown = ShutdownKeep
		case "remove":
			c.Shutdown = ShutdownRemove
		default:
			return fmt.Errorf("%q: must be keep or remove", s)
		}
		return nil
	})
}

// parsedInto returns a flag.Func callback that stores parse's result in
// *dst; a value parse rejects leaves *dst alone and fails the flag.
func parsedInto[T any](dst *T, parse func(string) (T, error)) func(string) error {
	return func(s string) error {
		v, err := parse(s)
		if err == nil {
			*dst = v
		}
		return err
	}
}
