package redirect

import (
	"errors"
	"flag"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(*Config)
		field string // "" means valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"outbound port zero", func(c *Config) { c.OutboundPort = 0 }, "outbound-port"},
		{"inbound port zero", func(c *Config) { c.InboundPort = 0 }, "inbound-port"},
		{"inbound port zero without inbound", func(c *Config) { c.InboundPort = 0; c.InboundMode = InboundNone }, ""},
		{"same ports", func(c *Config) { c.InboundPort = c.OutboundPort }, "inbound-port"},
		{"no family", func(c *Config) { c.IPv4, c.IPv6 = false, false }, "ip-families"},
		{"bypass mark zero", func(c *Config) { c.BypassMark = 0 }, "bypass-mark"},
		{"tproxy mark zero", func(c *Config) { c.InboundMode = InboundTProxy; c.TProxyMark = 0 }, "tproxy-mark"},
		{"tproxy mark equals bypass", func(c *Config) { c.InboundMode = InboundTProxy; c.TProxyMark = c.BypassMark }, "tproxy-mark"},
		{"tproxy table main", func(c *Config) { c.InboundMode = InboundTProxy; c.TProxyTable = 254 }, "tproxy-table"},
		{"tproxy table zero", func(c *Config) { c.InboundMode = InboundTProxy; c.TProxyTable = 0 }, "tproxy-table"},
		{"tproxy table ignored in redirect mode", func(c *Config) { c.TProxyTable = 0 }, ""},
		{"unknown inbound mode", func(c *Config) { c.InboundMode = 9 }, "inbound-mode"},
		{"port zero in list", func(c *Config) { c.ExcludeInboundPorts = []uint16{80, 0} }, "exclude-inbound-ports"},
		{"v6 cidr with v6 off", func(c *Config) {
			c.IPv6 = false
			c.ExcludeOutboundCIDRs = []netip.Prefix{netip.MustParsePrefix("fd00::/8")}
		}, "exclude-outbound-cidrs"},
		{"invalid prefix", func(c *Config) { c.IncludeOutboundCIDRs = []netip.Prefix{{}} }, "include-outbound-cidrs"},
		{"negative gate timeout", func(c *Config) { c.Gate = true; c.GateTimeout = -1 }, "gate-timeout"},
		{"unknown shutdown", func(c *Config) { c.Shutdown = 7 }, "shutdown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.edit(&c)
			err := c.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.field+":") {
				t.Fatalf("error %v, want ErrInvalidConfig naming %s", err, tc.field)
			}
		})
	}
}

func TestParsePorts(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []uint16
		bad  bool
	}{
		{"", nil, false},
		{"*", nil, false},
		{"80", []uint16{80}, false},
		{" 80, 443 ,80", []uint16{80, 443}, false},
		{"65535", []uint16{65535}, false},
		{"0", nil, true},
		{"65536", nil, true},
		{"-1", nil, true},
		{"http", nil, true},
		{"80,", nil, true},
	} {
		got, err := ParsePorts(tc.in)
		if (err != nil) != tc.bad || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParsePorts(%q) = %v, %v", tc.in, got, err)
		}
		if err != nil && (!errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "out of range")) {
			t.Errorf("ParsePorts(%q) error %v does not state the rule", tc.in, err)
		}
	}
}

func TestParseCIDRs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		bad  bool
	}{
		{"", "[]", false},
		{"10.0.0.0/8", "[10.0.0.0/8]", false},
		{"10.1.2.3/8,10.0.0.0/8", "[10.0.0.0/8]", false},
		{"192.0.2.1", "[192.0.2.1/32]", false},
		{"fd00::1/8, ::1", "[fd00::/8 ::1/128]", false},
		{"10.0.0.0/33", "", true},
		{"10.0.0", "", true},
		{"::ffff:10.0.0.1/128", "", true},
		{"fe80::1%eth0", "", true},
	} {
		got, err := ParseCIDRs(tc.in)
		if (err != nil) != tc.bad {
			t.Errorf("ParseCIDRs(%q) error %v", tc.in, err)
			continue
		}
		if err != nil {
			if !strings.Contains(err.Error(), "bad CIDR") {
				t.Errorf("ParseCIDRs(%q) error %v does not say bad CIDR", tc.in, err)
			}
			continue
		}
		s := "["
		for i, p := range got {
			if i > 0 {
				s += " "
			}
			s += p.String()
		}
		if s += "]"; s != tc.want {
			t.Errorf("ParseCIDRs(%q) = %s, want %s", tc.in, s, tc.want)
		}
	}
}

func TestParseIDs(t *testing.T) {
	if got, err := ParseIDs("0, 1337,4294967294"); err != nil || !reflect.DeepEqual(got, []uint32{0, 1337, 4294967294}) {
		t.Fatalf("got %v %v", got, err)
	}
	for _, bad := range []string{"4294967295", "-1", "root", "1,,2"} {
		if _, err := ParseIDs(bad); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("ParseIDs(%q): %v", bad, err)
		}
	}
}

func TestRegisterFlags(t *testing.T) {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(new(strings.Builder))
	cfg.RegisterFlags(fs)
	err := fs.Parse([]string{
		"--outbound-port", "16001", "--inbound-mode", "tproxy", "--exclude-outbound-cidrs", "10.0.0.0/8,fd00::/8",
		"--exclude-uids", "2000,2001", "--tproxy-mark", "0x100", "--ipv6=false", "--gate", "--gate-queue", "9",
		"--shutdown", "remove", "--include-inbound-ports", "80,443",
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.OutboundPort != 16001 || cfg.InboundMode != InboundTProxy || len(cfg.ExcludeOutboundCIDRs) != 2 ||
		!reflect.DeepEqual(cfg.ExcludeUIDs, []uint32{2000, 2001}) || cfg.TProxyMark != 0x100 || cfg.IPv6 ||
		!cfg.Gate || cfg.GateQueue != 9 || cfg.Shutdown != ShutdownRemove || !reflect.DeepEqual(cfg.IncludeInboundPorts, []uint16{80, 443}) {
		t.Fatalf("flags not applied: %+v", cfg)
	}
	for _, bad := range [][]string{
		{"--outbound-port", "70000"}, {"--inbound-port", "x"}, {"--exclude-outbound-cidrs", "10.0.0.0/99"},
		{"--inbound-mode", "nat"}, {"--shutdown", "maybe"}, {"--gate-queue", "65536"}, {"--proxy-uid", "-3"},
	} {
		c := DefaultConfig()
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(new(strings.Builder))
		c.RegisterFlags(fs)
		if err := fs.Parse(bad); err == nil || !strings.Contains(err.Error(), strings.TrimLeft(bad[0], "-")) {
			t.Errorf("%v: error %v does not name the flag", bad, err)
		}
	}
}

func FuzzParsePorts(f *testing.F) {
	for _, s := range []string{"", "*", "80", "1,2,3", "65535", "0", "99999", " 8 , 9 "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ports, err := ParsePorts(s)
		if err != nil {
			return
		}
		seen := map[uint16]bool{}
		var parts []string
		for _, p := range ports {
			if p == 0 || seen[p] {
				t.Fatalf("ParsePorts(%q) = %v: zero or duplicate", s, ports)
			}
			seen[p] = true
			parts = append(parts, strconv.Itoa(int(p)))
		}
		again, err := ParsePorts(strings.Join(parts, ","))
		if err != nil || !reflect.DeepEqual(again, ports) {
			t.Fatalf("round trip of %v: %v %v", ports, again, err)
		}
	})
}

func FuzzParseCIDRs(f *testing.F) {
	for _, s := range []string{"", "10.0.0.0/8", "fd00::/8,1.2.3.4", "::ffff:1.2.3.4", "1.2.3.4/33", "a/b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := ParseCIDRs(s)
		if err != nil {
			return
		}
		var parts []string
		for _, p := range ps {
			if !p.IsValid() || p != p.Masked() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
				t.Fatalf("ParseCIDRs(%q) yielded %v", s, p)
			}
			parts = append(parts, p.String())
		}
		again, err := ParseCIDRs(strings.Join(parts, ","))
		if err != nil || !reflect.DeepEqual(again, ps) {
			t.Fatalf("round trip of %v: %v %v", ps, again, err)
		}
	})
}

func FuzzParseIDs(f *testing.F) {
	for _, s := range []string{"", "0", "1337,2000", "4294967295", "-1", "a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ids, err := ParseIDs(s)
		if err != nil {
			return
		}
		var parts []string
		for _, id := range ids {
			if id == 1<<32-1 {
				t.Fatalf("ParseIDs(%q) accepted the invalid id -1", s)
			}
			parts = append(parts, strconv.FormatUint(uint64(id), 10))
		}
		again, err := ParseIDs(strings.Join(parts, ","))
		if err != nil || !reflect.DeepEqual(again, ids) {
			t.Fatalf("round trip of %v: %v %v", ids, again, err)
		}
	})
}
