// Package cli is the `meshagent redirect` command line: it parses the
// action and the flags (one per redirect.Config field) and drives a
// redirect.Manager. It lives beside the library rather than in cmd/ so that
// its tests can run the real command inside network namespaces (the test
// binary re-executes itself through `ip netns exec`).
//
// It owns argument parsing and output; it does not own the rules
// (package redirect) nor process wiring (cmd/meshagent).
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/meshagent/meshagent/redirect"
)

// ErrUsage reports a command line that is not a valid invocation; the
// usage text has already been written to stderr.
var ErrUsage = errors.New("cli: usage")

// ErrDiffers reports that `verify` found the rules absent or different;
// the differences have been written to stdout.
var ErrDiffers = errors.New("cli: rules differ from the configuration")

// Usage is the command's synopsis.
const Usage = `usage: meshagent redirect install|remove|show|verify [flags]

  install  apply the capture rules (idempotent; atomic per IP family)
  remove   delete meshagent's chains, jumps and TPROXY routing, nothing else
  show     print the rules install would apply
  verify   check the rules are in place; exit 1 listing every difference

Run it inside the network namespace to capture (for example
ip netns exec NAME meshagent redirect install). See docs/capture.md.`

// Main runs one `meshagent redirect` invocation; args excludes the
// "redirect" word. Results go to stdout, logs and usage to stderr. It
// returns flag.ErrHelp for -h, ErrUsage (wrapped) for a bad command line,
// ErrDiffers (wrapped) when verify finds differences, or the error of the
// failing step, which names the bad flag, the missing binary or the
// failing command.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, Usage)
		return fmt.Errorf("%w: missing action", ErrUsage)
	}
	action := args[0]
	switch action {
	case "install", "remove", "show", "verify":
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stderr, Usage)
		return flag.ErrHelp
	default:
		fmt.Fprintln(stderr, Usage)
		return fmt.Errorf("%w: unknown action %q", ErrUsage, action)
	}
	fs := flag.NewFlagSet("meshagent redirect "+action, flag.ContinueOnError)
	cfg := redirect.DefaultConfig()
	cfg.RegisterFlags(fs)
	dryRun := fs.Bool("dry-run", false, "print what install or remove would do and change nothing")
	verbose := fs.Bool("v", false, "log every iptables-restore input")
	// Parse errors are returned once (the caller prints them); the flag
	// list is printed only for -h.
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stderr)
			fmt.Fprintln(stderr, Usage+"\n\nflags:")
			fs.PrintDefaults()
			return err
		}
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", ErrUsage, fs.Args())
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	m, err := redirect.NewManager(cfg, redirect.ExecRunner{}, log)
	if err != nil {
		return err
	}
	switch action {
	case "show":
		fmt.Fprint(stdout, m.Plan())
	case "install":
		if *dryRun {
			fmt.Fprint(stdout, m.Plan())
			return nil
		}
		return m.Install(ctx)
	case "remove":
		if *dryRun {
			fmt.Fprintln(stdout, "# would delete every MESHAGENT_* chain and every jump to one (iptables and ip6tables)")
			for _, r := range m.Plan().Routes {
				fmt.Fprintln(stdout, "# would delete: "+r.String())
			}
			return nil
		}
		return m.Remove(ctx)
	case "verify":
		rep, err := m.Verify(ctx)
		if rep == nil {
			return err
		}
		fmt.Fprintln(stdout, rep)
		if err != nil {
			return fmt.Errorf("%w (%d differences)", ErrDiffers, len(rep.Diffs))
		}
	}
	return nil
}
