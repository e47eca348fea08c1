package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/meshagent/meshagent/dataplane"
	"github.com/meshagent/meshagent/dataplane/admin"
	"github.com/meshagent/meshagent/etcdcompat/store"
	"github.com/meshagent/meshagent/xds"

	// Plugins the xDS translation emits besides run.go's built-ins.
	_ "github.com/meshagent/meshagent/plugins/proxymirror"
	_ "github.com/meshagent/meshagent/plugins/redirect"
	_ "github.com/meshagent/meshagent/plugins/responserewrite"
)

// xdsConfig is the xDS part of `meshagent run` (--xds and friends).
type xdsConfig struct {
	addr      string
	tlsCA     string
	tls       bool
	tokenFile string
	delta     bool
	fetchWait time.Duration
	nodeID    string
	cluster   string
	preset    string
	meta      string
	// Kuma preset.
	mesh, dataplaneName, dataplaneFile string
	// Istio preset.
	podIP, podName, podNamespace string

	client  *xds.Client
	applier *xds.Applier
}

func (c *xdsConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.addr, "xds", "", "xDS (ADS) control plane host:port, e.g. istiod:15012 or kuma-cp:5678")
	fs.StringVar(&c.tlsCA, "xds-tls-ca", "", "PEM CA file to verify the control plane (enables TLS)")
	fs.BoolVar(&c.tls, "xds-tls", false, "TLS to the control plane with the system roots")
	fs.StringVar(&c.tokenFile, "xds-token", "", "file holding a bearer token sent to the control plane (re-read when it changes)")
	fs.BoolVar(&c.delta, "delta", false, "use delta (incremental) xDS instead of state of the world")
	fs.DurationVar(&c.fetchWait, "xds-initial-fetch-timeout", 15*time.Second, "how long readiness waits for the endpoints, route tables and secrets named by CDS/LDS (negative: forever)")
	fs.StringVar(&c.nodeID, "node-id", "", "xDS node id (default from --preset)")
	fs.StringVar(&c.cluster, "node-cluster", "", "xDS node cluster")
	fs.StringVar(&c.preset, "preset", "", "node identity preset: istio or kuma")
	fs.StringVar(&c.meta, "node-metadata", "", "extra node metadata as a JSON object")
	fs.StringVar(&c.mesh, "kuma-mesh", "default", "kuma preset: mesh name")
	fs.StringVar(&c.dataplaneName, "kuma-dataplane", "", "kuma preset: dataplane name (node id <mesh>.<name>)")
	fs.StringVar(&c.dataplaneFile, "kuma-dataplane-file", "", "kuma preset: inline Dataplane resource file sent in node metadata")
	fs.StringVar(&c.podIP, "istio-ip", os.Getenv("INSTANCE_IP"), "istio preset: pod IP (default $INSTANCE_IP)")
	fs.StringVar(&c.podName, "istio-pod", os.Getenv("POD_NAME"), "istio preset: pod name (default $POD_NAME)")
	fs.StringVar(&c.podNamespace, "istio-namespace", os.Getenv("POD_NAMESPACE"), "istio preset: namespace (default $POD_NAMESPACE)")
}

// startXDS starts the ADS client writing translated config into st.
func startXDS(ctx context.Context, cfg *runConfig, st store.Store, log *slog.Logger, errc chan<- error) error {
	c := &cfg.xds
	if cfg.apisixYAML != "" {
		// The standalone sync makes /apisix equal the file: it would delete
		// every translated object on each sync.
		return fmt.Errorf("--xds and --apisix-yaml are exclusive: each owns the store's /apisix objects")
	}
	preset, err := xds.ParsePreset(c.preset)
	if err != nil {
		return fmt.Errorf("--preset: %w", err)
	}
	nc := xds.NodeConfig{
		Preset: preset, ID: c.nodeID, Cluster: c.cluster,
		IP: c.podIP, Pod: c.podName, Namespace: c.podNamespace,
		Mesh: c.mesh, Dataplane: c.dataplaneName,
	}
	if c.meta != "" {
		if err := jsonObject(c.meta, &nc.Metadata); err != nil {
			return fmt.Errorf("--node-metadata: %w", err)
		}
	}
	if c.dataplaneFile != "" {
		b, err := os.ReadFile(c.dataplaneFile)
		if err != nil {
			return fmt.Errorf("--kuma-dataplane-file: %w", err)
		}
		nc.DataplaneResource = string(b)
	}
	node, err := xds.BuildNode(nc, version)
	if err != nil {
		return fmt.Errorf("--node-id/--preset: %w", err)
	}
	c.applier = xds.NewApplier(st, xds.ApplierOptions{Logger: log.With("component", "xds")})
	c.client, err = xds.New(xds.Options{
		Addr: c.addr, TLS: c.tls, TLSCAFile: c.tlsCA, TokenFile: c.tokenFile, Delta: c.delta, InitialFetchTimeout: c.fetchWait,
		Node: node, Handler: c.applier, Logger: log.With("component", "xds"),
	})
	if err != nil {
		return err
	}
	log.Info("xds: connecting", "server", c.addr, "node", node.GetId(), "delta", c.delta)
	go func() {
		if err := c.client.Run(ctx); err != nil && ctx.Err() == nil {
			errc <- fmt.Errorf("xds: %w", err)
		}
	}()
	return nil
}

// startAdminServer serves dataplane/admin: readiness is the data plane's
// and, with --xds, the first complete xDS config applied.
func startAdminServer(cfg *runConfig, st store.Store, dp *dataplane.Dataplane, log *slog.Logger, quit func()) (func(), error) {
	o := admin.Options{
		Listen: cfg.adminListen, Store: st, Logger: log.With("component", "admin"), Quit: quit,
		Ready: dp.Ready,
		Stats: func() any {
			s := map[string]any{"dataplane": dp.Stats().Snapshot()}
			if a, cl := cfg.xds.applier, cfg.xds.client; a != nil && cl != nil {
				x := map[string]int64{"pushes": a.Pushes(), "writes": a.Writes(), "ignored_fields": a.Warnings()}
				st := cl.Status()
				x["reconnects"] = st.Reconnect
				for _, ts := range st.Types {
					x["acks"] += ts.ACKs
					x["nacks"] += ts.NACKs
				}
				s["xds"] = x
			}
			return s
		},
	}
	if cl := cfg.xds.client; cl != nil {
		o.Ready = func() bool { return cl.Ready() && dp.Ready() }
		o.XDSStatus = func() any { return cl.Status() }
	}
	s, err := admin.New(o)
	if err != nil {
		return nil, fmt.Errorf("--admin-listen: %w", err)
	}
	log.Info("admin listening", "address", s.Addr().String())
	return func() { _ = s.Close() }, nil
}

func jsonObject(s string, out *map[string]any) error {
	if err := json.Unmarshal([]byte(s), out); err != nil {
		return fmt.Errorf("must be a JSON object: %w", err)
	}
	return nil
}
