// Command meshagent is the service-mesh sidecar: one static binary holding
// the xDS client, the revisioned store, the etcd v3 emulation, the data
// plane and the traffic-capture tooling. This package only parses flags and
// wires packages together; each subcommand lives in its own file and
// registers itself from init.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// command is one subcommand of meshagent.
type command struct {
	name    string
	summary string
	// run executes the command; ctx is canceled on SIGINT/SIGTERM.
	run func(ctx context.Context, args []string) error
}

var commands = map[string]*command{}

// register adds a subcommand; it is called from init functions only.
func register(c *command) {
	if _, dup := commands[c.name]; dup {
		panic("meshagent: duplicate command " + c.name)
	}
	commands[c.name] = c
}

// errUsage marks an error already explained to the user by a FlagSet.
var errUsage = errors.New("usage")

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: meshagent <command> [flags]")
	fmt.Fprintln(w, "\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'meshagent <command> -h' for a command's flags.")
}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage(os.Stderr)
		if len(os.Args) < 2 {
			os.Exit(2)
		}
		return
	}
	c, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "meshagent: unknown command %q\n\n", os.Args[1])
		usage(os.Stderr)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := c.run(ctx, os.Args[2:]); err != nil {
		if errors.Is(err, errUsage) || errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintf(os.Stderr, "meshagent %s: %v\n", c.name, err)
		os.Exit(1)
	}
}
