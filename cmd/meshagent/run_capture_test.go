package main

import (
	"flag"
	"io"
	"strings"
	"testing"

	"github.com/meshagent/meshagent/redirect"
)

// TestCaptureFlags: the capture flags are rejected where they enter, with
// the flag named, and the redirect.Config they complete follows them.
func TestCaptureFlags(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		wantErr string // substring; "" means valid
		check   func(*testing.T, *runConfig)
	}{
		{name: "off by default", args: nil, check: func(t *testing.T, c *runConfig) {
			if c.capture.enabled() {
				t.Fatal("capture enabled with no flag")
			}
		}},
		{name: "outbound sets the rules' port, no inbound", args: []string{"--capture-outbound", "0.0.0.0:16001"}, check: func(t *testing.T, c *runConfig) {
			if c.capture.rules.OutboundPort != 16001 || c.capture.rules.InboundMode != redirect.InboundNone {
				t.Fatalf("rules %+v", c.capture.rules)
			}
		}},
		{name: "tproxy inbound", args: []string{"--capture-inbound", ":16006", "--capture-tproxy", "--capture-mark", "0x539"}, check: func(t *testing.T, c *runConfig) {
			if c.capture.rules.InboundPort != 16006 || c.capture.rules.InboundMode != redirect.InboundTProxy {
				t.Fatalf("rules %+v", c.capture.rules)
			}
		}},
		{name: "install removes at exit, gate flags forwarded", args: []string{"--capture-outbound", ":15001", "--capture-install", "--capture-gate", "--capture-gate-queue", "9", "--capture-ipv6=false"}, check: func(t *testing.T, c *runConfig) {
			r := c.capture.rules
			if r.Shutdown != redirect.ShutdownRemove || !r.Gate || r.GateQueue != 9 || r.IPv6 {
				t.Fatalf("rules %+v", r)
			}
		}},
		{name: "refuse", args: []string{"--capture-outbound", ":15001", "--capture-passthrough", "refuse"}, check: func(t *testing.T, c *runConfig) {
			if c.capture.passthrough != redirect.PassThroughRefuse {
				t.Fatal(c.capture.passthrough)
			}
		}},
		{name: "bad address", args: []string{"--capture-outbound", "15001"}, wantErr: "--capture-outbound"},
		{name: "port 0", args: []string{"--capture-outbound", ":0"}, wantErr: "port must be 1-65535"},
		{name: "host not an IP", args: []string{"--capture-outbound", "example.com:15001"}, wantErr: "host must be an IP"},
		{name: "same ports", args: []string{"--capture-outbound", ":15001", "--capture-inbound", ":15001", "--capture-mark", "0x539"}, wantErr: "equals outbound-port"},
		{name: "tproxy without inbound", args: []string{"--capture-outbound", ":15001", "--capture-tproxy"}, wantErr: "--capture-tproxy needs --capture-inbound"},
		{name: "inbound without mark", args: []string{"--capture-inbound", ":15006"}, wantErr: "--capture-inbound needs --capture-mark"},
		{name: "mark differs from bypass mark", args: []string{"--capture-outbound", ":15001", "--capture-mark", "0x77"}, wantErr: "differs from the rules' bypass mark"},
		{name: "install without listeners", args: []string{"--capture-install"}, wantErr: "--capture-install needs"},
		{name: "no original dst", args: []string{"--capture-outbound", ":15001", "--original-dst=false"}, wantErr: "--original-dst=true"},
		{name: "bad passthrough", args: []string{"--capture-passthrough", "drop"}, wantErr: "must be forward or refuse"},
		{name: "zero mark", args: []string{"--capture-mark", "0"}, wantErr: "non-zero"},
	}
	for _, cs := range cases {
		t.Run(cs.name, func(t *testing.T) {
			var cfg runConfig
			fs := flag.NewFlagSet("run", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			cfg.flags(fs)
			err := fs.Parse(append([]string{"--apisix-yaml", "x.yaml"}, cs.args...))
			if err == nil {
				err = cfg.validate()
			}
			switch {
			case cs.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case cs.wantErr != "" && (err == nil || !strings.Contains(err.Error(), cs.wantErr)):
				t.Fatalf("error %v, want one containing %q", err, cs.wantErr)
			}
			if cs.check != nil && err == nil {
				cs.check(t, &cfg)
			}
		})
	}
}
