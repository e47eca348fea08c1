// Command perf is meshagent's load-test harness: `perf compare|churn|scale|tcp`
// run one scenario each against targets perf starts itself (the backend it
// serves, meshagent, nginx, haproxy) and print a table, optionally writing
// JSON and HTML reports. `perf backend` is the backend server alone (perf
// runs it as a child process so its CPU is measured apart from the load
// generator). This package only parses flags and wires perf/... together.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/meshagent/meshagent/perf/backend"
	"github.com/meshagent/meshagent/perf/load"
	"github.com/meshagent/meshagent/perf/report"
	"github.com/meshagent/meshagent/perf/scenario"
	"github.com/meshagent/meshagent/perf/target"
	"github.com/meshagent/meshagent/perf/wrk"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if errors.Is(err, flag.ErrHelp) || errors.Is(err, errUsage) {
			os.Exit(2)
		}
		fmt.Fprintf(os.Stderr, "perf: %v\n", err)
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

const usageText = `usage: perf <command> [flags]

commands:
  compare   the same load against direct, meshagent, nginx, haproxy (rounds interleaved)
  tcp       bulk TCP throughput (MB/s) direct vs meshagent's stream route vs haproxy/nginx
  churn     meshagent under load while config is pushed through its etcd emulation
  scale     1k/10k routes+upstreams: apply time and RSS of meshagent
  report    re-render a saved JSON report as text and/or HTML
  backend   run only the backend servers (used by perf itself)

Run 'perf <command> -h' for a command's flags.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usageText)
		if len(args) == 0 {
			return errUsage
		}
		return nil
	}
	switch args[0] {
	case "compare", "tcp", "churn", "scale":
		return runScenario(ctx, args[0], args[1:], stdout, stderr)
	case "backend":
		return runBackend(ctx, args[1:], stdout, stderr)
	case "report":
		return runReport(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "perf: unknown command %q\n\n%s", args[0], usageText)
	return errUsage
}

// options are the flags shared by the scenarios.
type options struct {
	protocol, targets, path, jsonFile, htmlFile string
	meshagent, meshagentArgs, nginx, haproxy    string
	client, wrk                                 string
	wrkThreads                                  int
	sizes, methods                              string
	connections, rounds, payload, pushes, procs int
	backendProcs                                int
	rate                                        float64
	duration, warmup, timeout                   time.Duration
	requests                                    int64
	inProcessBackend, quiet                     bool
}

func (o *options) flags(name string, fs *flag.FlagSet) {
	defProto, defConns, defDur := "http1", 16, 5*time.Second
	switch name {
	case "tcp":
		defProto, defConns = "tcp-bulk", 1
	case "churn":
		defDur = 5 * time.Second
	}
	fs.StringVar(&o.protocol, "protocol", defProto, "load protocol: http1, h2, grpc, grpc-stream, tcp (echo) or tcp-bulk")
	fs.IntVar(&o.connections, "connections", defConns, "concurrent connections (closed loop: each as fast as it goes)")
	fs.Float64Var(&o.rate, "rate", 0, "open loop: total requests per second (0: closed loop)")
	fs.DurationVar(&o.duration, "duration", defDur, "measured duration per round (after warm-up)")
	fs.Int64Var(&o.requests, "requests", 0, "measured requests per round instead of a duration")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "warm-up per round, excluded from results")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Second, "per-request timeout")
	fs.IntVar(&o.rounds, "rounds", 3, "interleaved rounds (compare, tcp)")
	if name == "compare" {
		fs.StringVar(&o.client, "client", "perf", "load generator: perf (its own clients) or wrk (HTTP/1.1, closed loop, whole seconds)")
		fs.StringVar(&o.wrk, "wrk", "wrk", "wrk binary (--client wrk)")
		fs.IntVar(&o.wrkThreads, "wrk-threads", 1, "wrk threads (-t), at most --connections")
	}
	fs.IntVar(&o.payload, "payload", 0, "payload bytes: gRPC message / TCP echo (64) or one bulk transfer (1 MiB)")
	fs.StringVar(&o.path, "path", "/", "HTTP request path")
	fs.StringVar(&o.targets, "targets", "direct,meshagent,nginx,haproxy", "comma-separated targets, in round order")
	fs.StringVar(&o.meshagent, "meshagent", "./bin/meshagent", "meshagent binary")
	fs.StringVar(&o.meshagentArgs, "meshagent-args", "", "extra space-separated arguments for `meshagent run`")
	fs.IntVar(&o.procs, "meshagent-gomaxprocs", 1, "GOMAXPROCS of meshagent")
	fs.StringVar(&o.nginx, "nginx", "nginx", "nginx binary")
	fs.StringVar(&o.haproxy, "haproxy", "haproxy", "haproxy binary")
	fs.IntVar(&o.pushes, "pushes", 20, "churn: config pushes during the second phase")
	fs.StringVar(&o.sizes, "sizes", "1000,10000", "scale: route counts")
	fs.StringVar(&o.methods, "methods", "etcd,yaml", "scale: how routes are applied (etcd, yaml)")
	fs.StringVar(&o.jsonFile, "json", "", "also write the report as JSON to this file")
	fs.StringVar(&o.htmlFile, "html", "", "also write an HTML report (inline SVG plots) to this file")
	fs.BoolVar(&o.inProcessBackend, "backend-inprocess", false, "serve the backend inside perf instead of a child process (its CPU is then not measured)")
	fs.IntVar(&o.backendProcs, "backend-gomaxprocs", 1, "GOMAXPROCS of the backend child process")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress line on stderr")
}

func runScenario(ctx context.Context, name string, args []string, stdout, stderr io.Writer) error {
	var o options
	fs := flag.NewFlagSet("perf "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	o.flags(name, fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	proto, err := load.ParseProtocol(o.protocol)
	if err != nil {
		return fmt.Errorf("--protocol: %w", err)
	}
	lo := load.Options{Connections: o.connections, Rate: o.rate, Duration: o.duration, Requests: o.requests, Warmup: o.warmup}
	var driver scenario.Driver
	switch o.client {
	case "", "perf":
	case "wrk":
		w := &wrk.Runner{Bin: o.wrk, Threads: o.wrkThreads, Path: o.path, Timeout: o.timeout}
		if err := w.Check(proto, lo); err != nil {
			return fmt.Errorf("--client wrk: %w", err)
		}
		driver = w
	default:
		return fmt.Errorf("--client: unknown load generator %q (want perf or wrk)", o.client)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	prog := report.NewProgress(stderr)
	if o.quiet {
		prog = nil
	}
	b, stopBackend, err := startBackend(ctx, o)
	if err != nil {
		return err
	}
	defer stopBackend()

	cc := load.ClientConfig{Path: o.path, Payload: o.payload, Timeout: o.timeout}
	newMesh := func() *target.Meshagent {
		return &target.Meshagent{Bin: o.meshagent, Args: strings.Fields(o.meshagentArgs), GOMAXPROCS: o.procs}
	}
	var rep *report.Report
	switch name {
	case "compare", "tcp":
		var ts []target.Target
		for _, n := range strings.Split(o.targets, ",") {
			switch strings.TrimSpace(n) {
			case "direct":
				ts = append(ts, &target.Direct{})
			case "meshagent":
				ts = append(ts, newMesh())
			case "nginx":
				ts = append(ts, &target.Nginx{Bin: o.nginx})
			case "haproxy":
				ts = append(ts, &target.HAProxy{Bin: o.haproxy})
			default:
				return fmt.Errorf("--targets: unknown target %q (want direct, meshagent, nginx, haproxy)", n)
			}
		}
		rep, err = scenario.Compare(ctx, scenario.CompareConfig{Backend: b, Targets: ts, Protocol: proto, Load: lo,
			Rounds: o.rounds, Client: cc, Driver: driver, Progress: prog, Log: log})
	case "churn":
		rep, err = scenario.Churn(ctx, scenario.ChurnConfig{Backend: b, Meshagent: newMesh(), Protocol: proto, Load: lo,
			Client: cc, Pushes: o.pushes, Progress: prog, Log: log})
	case "scale":
		var sizes []int
		for _, s := range strings.Split(o.sizes, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || n < 1 {
				return fmt.Errorf("--sizes: %q is not a positive integer", s)
			}
			sizes = append(sizes, n)
		}
		var methods []string
		for _, m := range strings.Split(o.methods, ",") {
			methods = append(methods, strings.TrimSpace(m))
		}
		rep, err = scenario.Scale(ctx, scenario.ScaleConfig{Backend: b, NewMeshagent: newMesh, Sizes: sizes, Methods: methods,
			Progress: prog, Log: log})
	}
	prog.Done()
	if err != nil {
		return err
	}
	if o.inProcessBackend {
		rep.Notes = append(rep.Notes, "backend served in-process: direct has no CPU/RSS figures")
	}
	if err := rep.WriteText(stdout); err != nil {
		return err
	}
	if o.jsonFile != "" {
		if err := rep.WriteFile(o.jsonFile, (*report.Report).WriteJSON); err != nil {
			return err
		}
	}
	if o.htmlFile != "" {
		if err := rep.WriteFile(o.htmlFile, (*report.Report).WriteHTML); err != nil {
			return err
		}
	}
	return nil
}

// startBackend serves the backend in-process or as `perf backend` child.
func startBackend(ctx context.Context, o options) (target.Backend, func(), error) {
	if o.inProcessBackend {
		s, err := backend.Start(backend.Config{})
		if err != nil {
			return target.Backend{}, nil, err
		}
		return target.Backend{HTTPAddr: s.HTTPAddr, GRPCAddr: s.GRPCAddr, TCPAddr: s.TCPAddr}, func() { _ = s.Close() }, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return target.Backend{}, nil, fmt.Errorf("find own executable for the backend child: %w", err)
	}
	cmd := exec.CommandContext(ctx, exe, "backend")
	cmd.Env = append(os.Environ(), "GOMAXPROCS="+strconv.Itoa(o.backendProcs))
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return target.Backend{}, nil, err
	}
	if err := cmd.Start(); err != nil {
		return target.Backend{}, nil, fmt.Errorf("start backend child: %w", err)
	}
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		stop()
		return target.Backend{}, nil, fmt.Errorf("backend child: no ready line: %w", err)
	}
	b, err := parseReady(line)
	if err != nil {
		stop()
		return target.Backend{}, nil, err
	}
	b.PID = cmd.Process.Pid
	return b, stop, nil
}

// The backend child announces itself with one line on stdout.
const readyFormat = "ready http=%s grpc=%s tcp=%s\n"

func parseReady(line string) (target.Backend, error) {
	var b target.Backend
	if _, err := fmt.Sscanf(line, readyFormat, &b.HTTPAddr, &b.GRPCAddr, &b.TCPAddr); err != nil {
		return b, fmt.Errorf("backend child: bad ready line %q: %w", line, err)
	}
	return b, nil
}

func runBackend(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("perf backend", flag.ContinueOnError)
	fs.SetOutput(stderr)
	httpAddr := fs.String("http", "127.0.0.1:0", "HTTP/1.1 and h2c listen address")
	grpcAddr := fs.String("grpc", "127.0.0.1:0", "gRPC listen address")
	tcpAddr := fs.String("tcp", "127.0.0.1:0", "TCP echo/bulk listen address")
	body := fs.Int("body", 128, "HTTP response body bytes")
	if err := fs.Parse(args); err != nil {
		return err
	}
	s, err := backend.Start(backend.Config{HTTPAddr: *httpAddr, GRPCAddr: *grpcAddr, TCPAddr: *tcpAddr, BodySize: *body,
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, readyFormat, s.HTTPAddr, s.GRPCAddr, s.TCPAddr)
	<-ctx.Done()
	return s.Close()
}

func runReport(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("perf report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	in := fs.String("in", "", "JSON report written by --json (required)")
	htmlFile := fs.String("html", "", "write the HTML report to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *in == "" {
		return fmt.Errorf("--in: required")
	}
	b, err := os.ReadFile(*in)
	if err != nil {
		return err
	}
	var rep report.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return fmt.Errorf("--in %s: %w", *in, err)
	}
	if rep.Schema != report.SchemaVersion {
		return fmt.Errorf("--in %s: schema %d, want %d", *in, rep.Schema, report.SchemaVersion)
	}
	if err := rep.WriteText(stdout); err != nil {
		return err
	}
	if *htmlFile != "" {
		return rep.WriteFile(*htmlFile, (*report.Report).WriteHTML)
	}
	return nil
}
