//go:build cgo

package goplugin

import (
	"plugin"

	"github.com/meshagent/meshagent/plugins"
)

// Load opens the .so at path and returns its plugin without registering it.
func Load(path string) (plugins.Plugin, error) {
	so, err := plugin.Open(path)
	if err != nil {
		return plugins.Plugin{}, explain(path, err)
	}
	v, err := so.Lookup(SymbolAPIVersion)
	if err != nil {
		return plugins.Plugin{}, symbolErr(path, SymbolAPIVersion, err)
	}
	f, err := so.Lookup(SymbolFactory)
	if err != nil {
		return plugins.Plugin{}, symbolErr(path, SymbolFactory, err)
	}
	if fp, ok := f.(func() plugins.Plugin); ok {
		return check(path, v, fp)
	}
	return check(path, v, f)
}
