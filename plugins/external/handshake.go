// Package external runs meshagent plugins as separate processes speaking
// gRPC (the protocol in pluginv1/plugin.proto). It owns starting a child,
// reading and checking its stdout handshake line, checking it with the
// standard gRPC health service, restarting a dead or unhealthy child with
// backoff, forwarding its stderr to the log, and calling it per phase with a
// timeout. It does not own the filter chain: package plugins adapts a
// Plugin to a filter, applying the fail-open or fail-closed policy.
package external

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Handshake constants shared with plugins (see pluginv1/plugin.proto).
const (
	// CookieKey is the environment variable meshagent sets for its children.
	CookieKey = "MESHAGENT_PLUGIN_MAGIC_COOKIE"
	// CookieValue is its value.
	CookieValue = "7c1d2e4f-meshagent-plugin"
	// CoreProtocolVersion is the handshake line format version.
	CoreProtocolVersion = 1
	// AppProtocolVersion is the version of pluginv1.
	AppProtocolVersion = 1
	// HealthService is the gRPC health service name a plugin must serve.
	HealthService = "plugin"
)

// ErrHandshake is wrapped by every handshake parsing error.
var ErrHandshake = errors.New("external: bad plugin handshake")

// Handshake is a parsed handshake line.
type Handshake struct {
	Core, App int
	// Network is "unix" or "tcp".
	Network string
	Addr    string
}

// ParseHandshake parses one handshake line, `CORE|APP|NETWORK|ADDR|grpc`
// (a trailing newline and further go-plugin fields are tolerated). Errors
// name the field that is wrong and quote the line.
func ParseHandshake(line string) (Handshake, error) {
	line = strings.TrimRight(line, "\r\n")
	f := strings.Split(line, "|")
	if len(f) < 5 {
		return Handshake{}, fmt.Errorf("%w: want CORE|APP|NETWORK|ADDR|grpc, got %d fields in %q", ErrHandshake, len(f), clip(line))
	}
	var h Handshake
	var err error
	if h.Core, err = strconv.Atoi(f[0]); err != nil || h.Core != CoreProtocolVersion {
		return Handshake{}, fmt.Errorf("%w: core protocol version %q, want %d (line %q)", ErrHandshake, f[0], CoreProtocolVersion, clip(line))
	}
	if h.App, err = strconv.Atoi(f[1]); err != nil || h.App != AppProtocolVersion {
		return Handshake{}, fmt.Errorf("%w: app protocol version %q, want %d (line %q)", ErrHandshake, f[1], AppProtocolVersion, clip(line))
	}
	h.Network = f[2]
	if h.Network != "unix" && h.Network != "tcp" {
		return Handshake{}, fmt.Errorf("%w: network %q, want unix or tcp (line %q)", ErrHandshake, f[2], clip(line))
	}
	h.Addr = f[3]
	if h.Addr == "" {
		return Handshake{}, fmt.Errorf("%w: empty address (line %q)", ErrHandshake, clip(line))
	}
	if f[4] != "grpc" {
		return Handshake{}, fmt.Errorf("%w: protocol %q, want grpc (line %q)", ErrHandshake, f[4], clip(line))
	}
	return h, nil
}

// String formats h as the line a plugin prints.
func (h Handshake) String() string {
	return fmt.Sprintf("%d|%d|%s|%s|grpc", h.Core, h.App, h.Network, h.Addr)
}

func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}
