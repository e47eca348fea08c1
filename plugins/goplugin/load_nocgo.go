//go:build !cgo

package goplugin

import "github.com/meshagent/meshagent/plugins"

// Load always fails: this build has no cgo, so no plugin.Open.
func Load(path string) (plugins.Plugin, error) {
	return plugins.Plugin{}, ErrNotCompiled
}
