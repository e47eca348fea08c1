package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/meshagent/meshagent/dataplane"
	"github.com/meshagent/meshagent/etcdcompat"
	"github.com/meshagent/meshagent/etcdcompat/apisix"
	"github.com/meshagent/meshagent/etcdcompat/store"
	"github.com/meshagent/meshagent/redirect"
)

func init() {
	register(&command{name: "run", summary: "run the sidecar: config source -> store -> data plane", run: runRun})
}

// runConfig is the parsed command line of `meshagent run`. Config sources
// other than the standalone file (xDS) add their fields and flags in
// their own file and are started from startSources.
type runConfig struct {
	apisixYAML   string
	httpListen   string
	streamListen string
	etcdListen   string
	adminListen  string
	logLevel     string
	sniffTimeout time.Duration
	http1Engine  string
	opaquePorts  []int
	originalDst  bool
	tcpAccel     string
	xds          xdsConfig     // --- xDS (run_xds.go) ---
	plugins      pluginFlags   // --- extension plugins (plugins.go) ---
	capture      captureConfig // --- capture (run_capture.go) ---
	mem          memConfig     // --- memory tuning (memory.go) ---
}

func (c *runConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.apisixYAML, "apisix-yaml", "", "APISIX standalone file (apisix.yaml) to load and follow")
	fs.StringVar(&c.httpListen, "http-listen", "127.0.0.1:9080", "static HTTP listener (HTTP/1.1, h2c, TLS by SNI, sniffed on one port; empty: none)")
	fs.StringVar(&c.streamListen, "stream-listen", "", "static TCP listener for stream_routes (empty: none)")
	fs.StringVar(&c.etcdListen, "etcd-listen", "", "serve the store through the etcd v3 emulation on this address (empty: off)")
	fs.StringVar(&c.adminListen, "admin-listen", "", "admin endpoints address, e.g. 127.0.0.1:9901 (empty: off)")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.DurationVar(&c.sniffTimeout, "sniff-timeout", 200*time.Millisecond, "wait for a client's first bytes before treating a connection as opaque TCP")
	fs.StringVar(&c.http1Engine, "http1-engine", dataplane.EngineEvloop, "plaintext HTTP/1.1 engine: evloop (epoll event loops for routes without plugins, fasthttp for the rest) or fasthttp (all requests)")
	fs.Func("opaque-ports", "comma-separated destination ports never sniffed (always TCP)", func(s string) error {
		for _, p := range strings.Split(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(p))
			if err != nil || n < 1 || n > 65535 {
				return fmt.Errorf("bad port %q", p)
			}
			c.opaquePorts = append(c.opaquePorts, n)
		}
		return nil
	})
	fs.BoolVar(&c.originalDst, "original-dst", true, "recover original destinations (SO_ORIGINAL_DST) for listeners with use_original_dst")
	fs.Func("tcp-accel", "relay bulk TCP in the kernel (sockmap, experimental): auto (when root on Linux 6.1+, else splice) or off (default off)", func(s string) error {
		if s != "auto" && s != "off" {
			return fmt.Errorf("want auto or off, got %q", s)
		}
		c.tcpAccel = s
		return nil
	})
	c.xds.flags(fs)     // --- xDS (run_xds.go) ---
	c.plugins.flags(fs) // --- extension plugins (plugins.go) ---
	c.capture.flags(fs) // --- capture (run_capture.go) ---
	c.mem.flags(fs)     // --- memory tuning (memory.go) ---
}

// validate checks the combination of flags.
func (c *runConfig) validate() error {
	if c.apisixYAML == "" && !c.hasOtherSource() {
		return errors.New("a config source is required: --apisix-yaml FILE or --xds ADDR")
	}
	for _, a := range []struct{ flag, v string }{{"http-listen", c.httpListen}, {"stream-listen", c.streamListen},
		{"etcd-listen", c.etcdListen}, {"admin-listen", c.adminListen}} {
		if a.v == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.v); err != nil {
			return fmt.Errorf("--%s %q: must be host:port", a.flag, a.v)
		}
	}
	return c.capture.validate(c.originalDst) // --- capture (run_capture.go) ---
}

// hasOtherSource reports whether a source other than --apisix-yaml is
// configured (xDS adds itself here).
func (c *runConfig) hasOtherSource() bool { return c.xds.addr != "" /* --- xDS (run_xds.go) --- */ }

func runRun(ctx context.Context, args []string) error {
	var cfg runConfig
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	cfg.flags(fs)
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(os.Stderr, "meshagent run: unexpected arguments %q\n", fs.Args())
		return errUsage
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if stop := cfg.mem.applyGC(log); stop != nil { // --- memory tuning (memory.go) ---
		defer stop()
	}

	// --- capture (run_capture.go): the startup gate binds its queue
	// before anything else, then self-managed rules are installed. ---
	stopCapture, err := cfg.capture.start(ctx, log)
	if err != nil {
		return err
	}
	defer stopCapture()
	// --- end capture ---

	// 1. The store: the single source of truth, validating every write.
	st, err := store.New(store.Options{Decoder: apisix.Decode, Logger: log.With("component", "store"),
		HistoryLimit: cfg.mem.historyLimit}) // --- memory tuning (memory.go) ---
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer st.Close()

	// 2. Config sources write into the store (a bad file at startup is
	// fatal; later a bad file is logged and the last good config stays).
	errc := make(chan error, 4)
	if err := startSources(ctx, &cfg, st, log, errc); err != nil {
		return err
	}
	if err := cfg.capture.putListeners(ctx, st); err != nil { // --- capture (run_capture.go) ---
		return err
	}

	// 3. The etcd emulation, so objects written through etcd (etcdctl,
	// APISIX's Admin API pointed here) take effect at once.
	if cfg.etcdListen != "" {
		srv, err := etcdcompat.New(etcdcompat.Options{Store: st, Logger: log.With("component", "etcd")})
		if err != nil {
			return fmt.Errorf("etcd: %w", err)
		}
		l, err := net.Listen("tcp", cfg.etcdListen)
		if err != nil {
			return fmt.Errorf("--etcd-listen: %w", err)
		}
		defer srv.Close()
		go func() {
			if err := srv.Serve(l); err != nil && !errors.Is(err, etcdcompat.ErrServerClosed) {
				errc <- err
			}
		}()
	}

	// 4. Extension plugins register before the data plane reads the registry.
	stopPlugins, err := loadPlugins(&cfg.plugins, log)
	if err != nil {
		return err
	}
	defer stopPlugins()

	// 5. The data plane.
	opts := dataplane.Options{
		Source: st, Logger: log.With("component", "dataplane"),
		HTTPListen: cfg.httpListen, StreamListen: cfg.streamListen,
		SniffTimeout: cfg.sniffTimeout, OpaquePorts: cfg.opaquePorts,
		HTTP1Engine: cfg.http1Engine,
		TCPAccel:    cfg.tcpAccel == "auto",
	}
	if cfg.originalDst {
		opts.OriginalDst = redirect.OriginalDst
	}
	cfg.capture.dataplaneOptions(&opts) // --- capture (run_capture.go) ---
	dp, err := dataplane.New(opts)
	if err != nil {
		return err
	}
	if err := dp.Start(ctx); err != nil {
		return fmt.Errorf("dataplane: %w", err)
	}
	defer dp.Close()
	for _, a := range dp.Addrs() {
		log.Info("data plane listening", "address", a.String())
	}

	// 6. Admin endpoints.
	if cfg.adminListen != "" {
		stop, err := startAdminServer(&cfg, st, dp, log, cancel) // --- dataplane/admin (run_xds.go) ---
		if err != nil {
			return err
		}
		defer stop()
	}

	// --- capture (run_capture.go): release the startup gate once ready ---
	go cfg.capture.awaitReady(ctx, dp, func() bool {
		return dp.Ready() && (cfg.xds.client == nil || cfg.xds.client.Ready())
	}, log)
	// --- end capture ---
	cfg.mem.startReclaim(ctx, dp.Ready, dp.Revision, log) // --- memory tuning (memory.go) ---

	select {
	case <-ctx.Done():
		log.Info("shutting down")
		return nil
	case err := <-errc:
		return err
	}
}

// startSources starts every configured config source writing into st.
// Sources run until ctx ends; fatal runtime errors go to errc.
func startSources(ctx context.Context, cfg *runConfig, st store.Store, log *slog.Logger, errc chan<- error) error {
	if cfg.apisixYAML != "" {
		// Parsed once: the follower only re-syncs when the file changes
		// (a 10k-route file is ~1 s of CPU and ~80 MB of garbage).
		since := apisix.StatStandaloneFile(cfg.apisixYAML)
		if _, err := apisix.SyncStandaloneFile(ctx, cfg.apisixYAML, st); err != nil {
			return fmt.Errorf("--apisix-yaml: %w", err)
		}
		log.Info("standalone config loaded", "component", "standalone", "path", cfg.apisixYAML)
		go func() {
			if err := apisix.FollowStandaloneFile(ctx, cfg.apisixYAML, st, log.With("component", "standalone"), since); err != nil {
				errc <- fmt.Errorf("--apisix-yaml: %w", err)
			}
		}()
	}
	// --- xDS (run_xds.go) ---
	if cfg.xds.addr != "" {
		if err := startXDS(ctx, cfg, st, log, errc); err != nil {
			return err
		}
	}
	// --- end xDS ---
	return nil
}
