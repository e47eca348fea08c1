// Package goplugin loads filters from Go .so plugins (go build
// -buildmode=plugin). A plugin exports two symbols:
//
//	const MeshagentAPIVersion = 1          // must equal APIVersion
//	func MeshagentPlugin() plugins.Plugin  // name, priority, factory
//
// Loading needs cgo: the static build (CGO_ENABLED=0) answers
// ErrNotCompiled. Go's plugin rules apply: the .so must be built by the
// same Go toolchain with the same versions of every package it shares with
// meshagent; a mismatch is reported naming it. A loaded plugin cannot be
// unloaded. This package owns loading and checking only; the registry and
// filter API are package plugins.
package goplugin

import (
	"errors"
	"fmt"
	"runtime"
	"strings"

	"github.com/meshagent/meshagent/plugins"
)

// APIVersion is the version of the plugins API a .so must be built for.
const APIVersion = 1

// Symbol names looked up in a .so.
const (
	SymbolFactory    = "MeshagentPlugin"
	SymbolAPIVersion = "MeshagentAPIVersion"
)

var (
	// ErrNotCompiled is returned by Load in builds without cgo.
	ErrNotCompiled = errors.New("goplugin: .so plugin loading is not compiled in (this meshagent was built with CGO_ENABLED=0; build it with `make build-plugins`)")
	// ErrMismatch wraps toolchain, package and API version mismatches.
	ErrMismatch = errors.New("goplugin: plugin does not match this meshagent")
	// ErrSymbol wraps missing or mistyped symbols.
	ErrSymbol = errors.New("goplugin: bad plugin symbol")
)

// explain turns plugin.Open's terse errors into one naming the mismatch.
func explain(path string, err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "different version of package"):
		pkg := msg[strings.Index(msg, "different version of package")+len("different version of package"):]
		return fmt.Errorf("%w: %s was built with a different version of package %s than meshagent (built with %s); rebuild the plugin with the same Go toolchain and the same module versions (go.mod) as meshagent",
			ErrMismatch, path, strings.TrimSpace(pkg), runtime.Version())
	case strings.Contains(msg, "different version of the Go toolchain"), strings.Contains(msg, "built with a different version"):
		return fmt.Errorf("%w: %s was built with a different Go toolchain than meshagent (%s): %v", ErrMismatch, path, runtime.Version(), err)
	}
	return fmt.Errorf("goplugin: open %s: %w", path, err)
}

// check validates the looked-up symbols of a plugin.
func check(path string, version, factory any) (plugins.Plugin, error) {
	v, ok := version.(*int)
	if !ok {
		if c, isConst := version.(int); isConst {
			v = &c
		} else {
			return plugins.Plugin{}, fmt.Errorf("%w: %s: %s must be an int variable, is %T", ErrSymbol, path, SymbolAPIVersion, version)
		}
	}
	if *v != APIVersion {
		return plugins.Plugin{}, fmt.Errorf("%w: %s is built for plugin API version %d, this meshagent supports %d", ErrMismatch, path, *v, APIVersion)
	}
	f, ok := factory.(func() plugins.Plugin)
	if !ok {
		return plugins.Plugin{}, fmt.Errorf("%w: %s: %s must be func() plugins.Plugin, is %T", ErrSymbol, path, SymbolFactory, factory)
	}
	p := f()
	if p.Name == "" || p.New == nil {
		return plugins.Plugin{}, fmt.Errorf("%w: %s: %s returned a plugin without a name or factory", ErrSymbol, path, SymbolFactory)
	}
	return p, nil
}

// LoadAndRegister loads the .so at path and registers its plugin; like
// plugins.Register it must run before the registry is first read.
func LoadAndRegister(path string) (plugins.Plugin, error) {
	p, err := Load(path)
	if err != nil {
		return p, err
	}
	if err := plugins.TryRegister(p); err != nil {
		return p, fmt.Errorf("goplugin: %s: %w", path, err)
	}
	return p, nil
}
