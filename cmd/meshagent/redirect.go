package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/meshagent/meshagent/redirect/cli"
)

func init() {
	register(&command{name: "redirect", summary: "install, remove, show or verify the traffic capture rules", run: runRedirect})
}

// runRedirect wires `meshagent redirect` to package redirect/cli, which
// holds the flags (one per redirect.Config field) and the actions.
func runRedirect(ctx context.Context, args []string) error {
	err := cli.Main(ctx, args, os.Stdout, os.Stderr)
	if errors.Is(err, cli.ErrUsage) {
		fmt.Fprintf(os.Stderr, "meshagent redirect: %s\n", strings.TrimPrefix(err.Error(), cli.ErrUsage.Error()+": "))
		return errUsage
	}
	return err
}
