package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"

	"gopkg.in/yaml.v3"

	"github.com/meshagent/meshagent/plugins/external"
	"github.com/meshagent/meshagent/plugins/goplugin"

	// The built-in plugin catalogue registers itself from init.
	_ "github.com/meshagent/meshagent/plugins/auth"
	_ "github.com/meshagent/meshagent/plugins/consumerrestriction"
	_ "github.com/meshagent/meshagent/plugins/cors"
	_ "github.com/meshagent/meshagent/plugins/faultinjection"
	_ "github.com/meshagent/meshagent/plugins/iprestriction"
	_ "github.com/meshagent/meshagent/plugins/limit"
	_ "github.com/meshagent/meshagent/plugins/proxymirror"
	_ "github.com/meshagent/meshagent/plugins/proxyrewrite"
	_ "github.com/meshagent/meshagent/plugins/rbac"
	_ "github.com/meshagent/meshagent/plugins/redirect"
	_ "github.com/meshagent/meshagent/plugins/requestid"
	_ "github.com/meshagent/meshagent/plugins/responserewrite"
	_ "github.com/meshagent/meshagent/plugins/trafficsplit"
)

// pluginsConfig is the file given to --plugins: the extension plugins to
// load before the data plane starts.
type pluginsConfig struct {
	// External are out-of-process plugins, started and supervised.
	External []external.Spec `yaml:"external"`
	// SO are paths of Go .so plugins (cgo builds only).
	SO []string `yaml:"so"`
}

// pluginFlags holds run's extension flags.
type pluginFlags struct {
	file string
}

func (p *pluginFlags) flags(fs *flag.FlagSet) {
	fs.StringVar(&p.file, "plugins", "", "YAML file declaring out-of-process plugins (external:) and Go .so plugins (so:) to load")
}

// loadPlugins registers the declared plugins; it must run before the data
// plane reads the registry. It returns a function stopping the children.
// A child whose first start fails is reported and kept being restarted;
// a malformed file, a duplicate name or an unloadable .so is fatal.
func loadPlugins(p *pluginFlags, log *slog.Logger) (func(), error) {
	if p.file == "" {
		return func() {}, nil
	}
	data, err := os.ReadFile(p.file)
	if err != nil {
		return nil, fmt.Errorf("--plugins: %w", err)
	}
	var cfg pluginsConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		return nil, fmt.Errorf("--plugins %s: %w", p.file, err)
	}
	var running []*external.Registered
	stop := func() {
		for _, r := range running {
			r.Process.Close()
		}
	}
	for i, s := range cfg.External {
		r, err := external.Register(s, log.With("component", "plugin"))
		if r == nil {
			stop()
			return nil, fmt.Errorf("--plugins %s: external[%d]: %w", p.file, i, err)
		}
		running = append(running, r)
		if err != nil {
			log.Error("plugin did not start; retrying in the background", "plugin", s.Name, "err", err)
		}
	}
	for i, path := range cfg.SO {
		pl, err := goplugin.LoadAndRegister(path)
		if err != nil {
			stop()
			if errors.Is(err, goplugin.ErrNotCompiled) {
				return nil, fmt.Errorf("--plugins %s: so[%d]: %w", p.file, i, err)
			}
			return nil, fmt.Errorf("--plugins %s: so[%d] %s: %w", p.file, i, path, err)
		}
		log.Info("loaded .so plugin", "plugin", pl.Name, "path", path)
	}
	return stop, nil
}
