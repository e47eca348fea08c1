package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/meshagent/meshagent/redirect"
	"github.com/meshagent/meshagent/redirect/netnstest"
)

// roleEnv makes the test binary act as `meshagent redirect` (TestMain), so
// the tests can run the real command inside a namespace with ip netns exec.
const roleEnv = "MESHAGENT_REDIRECT_CLI_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(roleEnv) == "1" {
		err := Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr)
		switch {
		case err == nil:
			os.Exit(0)
		case errors.Is(err, ErrUsage), errors.Is(err, flag.ErrHelp):
			fmt.Fprintln(os.Stderr, "meshagent redirect:", err)
			os.Exit(2)
		default:
			fmt.Fprintln(os.Stderr, "meshagent redirect:", err)
			os.Exit(1)
		}
	}
	os.Exit(m.Run())
}

func TestMainInProcess(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		want    error
		stdout  string
		message string
	}{
		{[]string{"show", "--ipv6=false", "--exclude-outbound-ports", "22"}, nil, "-A MESHAGENT_OUTPUT -p tcp -m tcp --dport 22 -j RETURN", ""},
		{[]string{"install", "--dry-run", "--inbound-mode", "tproxy", "--ipv4=false"}, nil, "ip -6 rule add fwmark 0x53a lookup 133", ""},
		{[]string{"remove", "--dry-run", "--inbound-mode", "tproxy"}, nil, "would delete: ip -4 route add local 0.0.0.0/0 dev lo table 133", ""},
		{nil, ErrUsage, "", "missing action"},
		{[]string{"frob"}, ErrUsage, "", `unknown action "frob"`},
		{[]string{"-h"}, flag.ErrHelp, "", ""},
		{[]string{"install", "-h"}, flag.ErrHelp, "", ""},
		{[]string{"install", "--outbound-port", "70000"}, ErrUsage, "", `port "70000" is out of range 1-65535`},
		{[]string{"install", "--exclude-outbound-cidrs", "10.0.0.0/33"}, ErrUsage, "", `bad CIDR "10.0.0.0/33"`},
		{[]string{"install", "--include-inbound-ports", "80,http"}, ErrUsage, "", `port "http" is out of range`},
		{[]string{"install", "extra"}, ErrUsage, "", "unexpected arguments"},
		{[]string{"show", "--inbound-port", "15001"}, redirect.ErrInvalidConfig, "", "inbound-port: 15001 equals outbound-port"},
		{[]string{"show", "--ipv4=false", "--exclude-outbound-cidrs", "10.0.0.0/8"}, redirect.ErrInvalidConfig, "", "10.0.0.0/8 is of a disabled IP family"},
	} {
		var stdout, stderr bytes.Buffer
		err := Main(context.Background(), tc.args, &stdout, &stderr)
		if !errors.Is(err, tc.want) && !(tc.want == nil && err == nil) {
			t.Errorf("%q: error %v, want %v", tc.args, err, tc.want)
			continue
		}
		if tc.message != "" && (err == nil || !strings.Contains(err.Error(), tc.message)) {
			t.Errorf("%q: error %v does not say %q", tc.args, err, tc.message)
		}
		if !strings.Contains(stdout.String(), tc.stdout) {
			t.Errorf("%q: stdout lacks %q:\n%s", tc.args, tc.stdout, stdout.String())
		}
	}
}

// nsCLI runs the command in namespace ns via ip netns exec.
func nsCLI(t *testing.T, ns string, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := netnstest.Cmd(ns, append([]string{exe}, args...)...)
	cmd.Env = append(append(os.Environ(), roleEnv+"=1"), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

// TestCommandInNamespace runs install, verify, show, remove through
// `ip netns exec` in a namespace the test creates, and checks that remove
// leaves iptables-save and ip6tables-save exactly as before.
func TestCommandInNamespace(t *testing.T) {
	netnstest.NeedRoot(t, "network namespaces and iptables")
	netnstest.NeedBinaries(t, "ip", "iptables-save", "ip6tables-save", "iptables-restore", "ip6tables-restore")
	if netnstest.LegacyIptables() {
		t.Skip("skipping: the legacy iptables backend keeps empty tables, so remove cannot restore an empty iptables-save")
	}
	ns := netnstest.NewNamespace(t, "ma-cli")
	save := func() string {
		return redirect.NormalizeSave([]byte(netnstest.Run(t, "ip", "netns", "exec", ns, "iptables-save"))) +
			redirect.NormalizeSave([]byte(netnstest.Run(t, "ip", "netns", "exec", ns, "ip6tables-save"))) +
			netnstest.Run(t, "ip", "-n", ns, "-4", "rule") + netnstest.Run(t, "ip", "-n", ns, "-6", "rule")
	}
	before := save()

	flags := []string{"--inbound-mode", "tproxy", "--gate", "--exclude-outbound-ports", "22", "--exclude-uids", "2000"}
	if out, errs, code := nsCLI(t, ns, nil, append([]string{"install"}, flags...)...); code != 0 {
		t.Fatalf("install: exit %d\n%s%s", code, out, errs)
	}
	installed := save()
	if out, _, code := nsCLI(t, ns, nil, append([]string{"verify"}, flags...)...); code != 0 || !strings.Contains(out, "rules in place") {
		t.Fatalf("verify: exit %d: %s", code, out)
	}
	out, _, code := nsCLI(t, ns, nil, "verify")
	if code != 1 || !strings.Contains(out, "unexpected chain MESHAGENT_TPROXY") || !strings.Contains(out, "missing chain MESHAGENT_INBOUND") {
		t.Fatalf("verify with other flags: exit %d:\n%s", code, out)
	}
	// show prints exactly what the library renders; dry runs change nothing.
	cfg := redirect.DefaultConfig()
	cfg.InboundMode, cfg.Gate, cfg.ExcludeOutboundPorts, cfg.ExcludeUIDs = redirect.InboundTProxy, true, []uint16{22}, []uint32{2000}
	plan, err := redirect.Render(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if out, _, _ := nsCLI(t, ns, nil, append([]string{"show"}, flags...)...); out != plan.String() {
		t.Fatalf("show printed:\n%s\nwant:\n%s", out, plan)
	}
	nsCLI(t, ns, nil, "install", "--dry-run", "--outbound-port", "16001")
	nsCLI(t, ns, nil, "remove", "--dry-run")
	if got := save(); got != installed {
		t.Fatalf("a dry run changed the ruleset:\n%s", got)
	}
	// A missing binary names the package to install.
	_, errs, code := nsCLI(t, ns, []string{"PATH=/nonexistent"}, "verify")
	if code != 1 || !strings.Contains(errs, `install the Debian package "iptables"`) {
		t.Fatalf("missing iptables: exit %d: %s", code, errs)
	}
	if out, errs, code := nsCLI(t, ns, nil, "remove"); code != 0 {
		t.Fatalf("remove: exit %d\n%s%s", code, out, errs)
	}
	if got := save(); got != before {
		t.Fatalf("after remove:\n%s\nbefore install:\n%s", got, before)
	}
}
