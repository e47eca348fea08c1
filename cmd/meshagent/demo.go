package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/meshagent/meshagent/xds/demo"
)

func init() {
	register(&command{name: "demo", summary: "run a demo mesh: embedded xDS control plane, two backends and the sidecar", run: runDemo})
}

// runDemo starts the demo environment, then the sidecar exactly as
// `meshagent run --xds` does, and prints curl lines to try.
func runDemo(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:10080", "sidecar HTTP listener pushed by the demo control plane")
	adminAddr := fs.String("admin-listen", "127.0.0.1:15000", "admin endpoints")
	delta := fs.Bool("delta", false, "use delta xDS")
	logLevel := fs.String("log-level", "warn", "sidecar log level")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	env, err := demo.Start(ctx, demo.Options{Listen: *listen})
	if err != nil {
		return err
	}
	defer env.Close()
	runArgs := []string{"--xds", env.ControlPlane.Addr(), "--node-id", demo.NodeID,
		"--admin-listen", *adminAddr, "--http-listen", "", "--log-level", *logLevel}
	if *delta {
		runArgs = append(runArgs, "--delta")
	}
	errc := make(chan error, 1)
	go func() { errc <- runRun(ctx, runArgs) }()
	go func() {
		if err := demo.WaitHTTP(ctx, "http://"+*adminAddr+"/ready", 15*time.Second); err != nil {
			fmt.Fprintln(os.Stderr, "meshagent demo:", err)
			return
		}
		fmt.Printf("meshagent demo: control plane %s, backends %s and %s, sidecar on %s\n\n",
			env.ControlPlane.Addr(), env.BackendA, env.BackendB, *listen)
		for _, l := range env.CurlLines(*adminAddr) {
			fmt.Println(l)
		}
		fmt.Println("\nCtrl-C to stop.")
	}()
	return <-errc
}
