// Package iprestriction is APISIX's ip-restriction plugin: it allows or
// denies requests by client address against lists of IPs and CIDRs (v4
// and v6). It owns its schema and filter only.
package iprestriction

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	"github.com/meshagent/meshagent/plugins"
)

// Name and Priority are APISIX's.
const (
	Name     = "ip-restriction"
	Priority = 3000
)

// Config is the plugin's schema: exactly one of Whitelist and Blacklist.
type Config struct {
	Whitelist    []string `json:"whitelist,omitempty"`
	Blacklist    []string `json:"blacklist,omitempty"`
	Message      *string  `json:"message,omitempty"`
	ResponseCode *int     `json:"response_code,omitempty"`
}

func init() {
	plugins.Register(plugins.Plugin{Name: Name, Priority: Priority, New: New})
}

type filter struct {
	allow    bool // true: whitelist
	prefixes []netip.Prefix
	msg      string
	code     int
}

// New validates cfg and builds the filter.
func New(raw json.RawMessage, _ plugins.Builder) (any, error) {
	var c Config
	if err := plugins.Decode(raw, &c); err != nil {
		return nil, err
	}
	if (len(c.Whitelist) == 0) == (len(c.Blacklist) == 0) {
		return nil, plugins.Invalid("whitelist|blacklist", "exactly one of whitelist and blacklist is required (non-empty)")
	}
	f := &filter{allow: len(c.Whitelist) > 0, msg: "Your IP address is not allowed", code: 403}
	if c.Message != nil {
		if len(*c.Message) < 1 || len(*c.Message) > 1024 {
			return nil, plugins.Invalid("message", "length must be 1..1024")
		}
		f.msg = *c.Message
	}
	if c.ResponseCode != nil {
		if *c.ResponseCode < 403 || *c.ResponseCode > 404 {
			return nil, plugins.Invalid("response_code", "must be 403 or 404")
		}
		f.code = *c.ResponseCode
	}
	list, field := c.Blacklist, "blacklist"
	if f.allow {
		list, field = c.Whitelist, "whitelist"
	}
	for i, s := range list {
		p, err := ParsePrefix(s)
		if err != nil {
			return nil, plugins.Invalid(fmt.Sprintf("%s[%d]", field, i), err.Error())
		}
		f.prefixes = append(f.prefixes, p)
	}
	return f, nil
}

// ParsePrefix accepts an IP (a /32 or /128) or a CIDR.
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, fmt.Errorf("%q is not a valid IP or CIDR", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a valid IP or CIDR", s)
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

func (f *filter) contains(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range f.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Access allows or denies by remote_addr.
func (f *filter) Access(c plugins.Ctx) plugins.Status {
	ra, _ := c.Var("remote_addr")
	a, err := netip.ParseAddr(ra)
	if err != nil {
		return plugins.RespondMessage(c, f.code, f.msg)
	}
	if f.contains(a) != f.allow {
		return plugins.RespondMessage(c, f.code, f.msg)
	}
	return plugins.Continue
}

var _ plugins.Accessor = (*filter)(nil)
