package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/meshagent/meshagent/redirect"
)

func init() {
	register(&command{name: "redirect", summary: "install, remove, show or verify the traffic capture rules", run: runRedirect})
}

const redirectUsage = `usage: meshagent redirect install|remove|show|verify [flags]

  install  apply the capture rules (idempotent; atomic per IP family)
  remove   delete meshagent's chains, jumps and TPROXY routing, nothing else
  show     print the rules install would apply
  verify   check the rules are in place; exit 1 listing every difference

Run it inside the network namespace to capture (e.g. ip netns exec NAME
meshagent redirect install). See docs/capture.md.`

func runRedirect(ctx context.Context, args []string) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") && args[0] != "-" {
		fmt.Fprintln(os.Stderr, redirectUsage)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
			return flag.ErrHelp
		}
		return errUsage
	}
	action := args[0]
	switch action {
	case "install", "remove", "show", "verify":
	default:
		fmt.Fprintf(os.Stderr, "meshagent redirect: unknown action %q\n\n%s\n", action, redirectUsage)
		return errUsage
	}
	fs := flag.NewFlagSet("meshagent redirect "+action, flag.ContinueOnError)
	cfg := redirect.DefaultConfig()
	cfg.RegisterFlags(fs)
	dryRun := fs.Bool("dry-run", false, "print what install or remove would do and change nothing")
	verbose := fs.Bool("v", false, "log every iptables-restore input")
	// Parse errors are returned (and printed once by main); the flag list
	// is printed only for -h.
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(os.Stderr)
			fmt.Fprintln(os.Stderr, redirectUsage+"\n\nflags:")
			fs.PrintDefaults()
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	m, err := redirect.NewManager(cfg, redirect.ExecRunner{}, log)
	if err != nil {
		return err
	}
	switch action {
	case "show":
		fmt.Print(m.Plan())
	case "install":
		if *dryRun {
			fmt.Print(m.Plan())
			return nil
		}
		if err := m.Install(ctx); err != nil {
			return err
		}
	case "remove":
		if *dryRun {
			fmt.Println("# would delete every MESHAGENT_* chain and every jump to one (iptables and ip6tables)")
			for _, r := range m.Plan().Routes {
				fmt.Println("# would delete: " + r.String())
			}
			return nil
		}
		if err := m.Remove(ctx); err != nil {
			return err
		}
	case "verify":
		rep, err := m.Verify(ctx)
		if rep == nil {
			return err
		}
		fmt.Println(rep)
		if err != nil {
			return fmt.Errorf("rules differ from the configuration (%d differences)", len(rep.Diffs))
		}
	}
	return nil
}
