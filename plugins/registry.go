package plugins

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync/atomic"
)

// Plugin describes a registered plugin.
type Plugin struct {
	// Name is APISIX's plugin name (the key under "plugins").
	Name string
	// Priority orders filters in a phase, higher first (APISIX values).
	Priority int
	// New builds a filter from one config; see Factory.
	New Factory
	// Auth marks authentication plugins (APISIX type "auth"): on a consumer
	// their config is a credential, not a plugin merged into the route.
	Auth bool
}

var (
	registry = map[string]Plugin{}
	// sealed is set by the first lookup; Register panics afterwards, so
	// the registry is only written by init functions and read lock-free.
	sealed atomic.Bool
)

// Register adds a plugin. It must be called from an init function: it
// panics on a duplicate name, an empty name, a nil factory, or once the
// registry has been read (Lookup).
func Register(p Plugin) {
	if sealed.Load() {
		panic("plugins: Register(" + p.Name + ") after the registry was read; register from init")
	}
	if p.Name == "" || p.New == nil {
		panic("plugins: Register needs a name and a factory")
	}
	if _, dup := registry[p.Name]; dup {
		panic("plugins: duplicate plugin " + p.Name)
	}
	registry[p.Name] = p
}

// Lookup returns the plugin registered under name.
func Lookup(name string) (Plugin, bool) {
	sealed.Store(true)
	p, ok := registry[name]
	return p, ok
}

// Build decodes one plugin config with the registered factory. Errors
// name the plugin and wrap ErrUnknownPlugin or ErrInvalidConfig.
func Build(name string, cfg json.RawMessage, b Builder) (Entry, error) {
	p, ok := Lookup(name)
	if !ok {
		return Entry{}, fmt.Errorf("%w %q", ErrUnknownPlugin, name)
	}
	f, err := p.New(cfg, b)
	if err != nil {
		return Entry{}, fmt.Errorf("plugin %s: %w", name, err)
	}
	if f == nil {
		return Entry{}, fmt.Errorf("plugin %s: %w: factory returned no filter", name, ErrInvalidConfig)
	}
	return Entry{Name: name, Priority: p.Priority, Filter: f}, nil
}

// Decode strictly decodes a plugin config into v: unknown fields and
// trailing data are errors, and every error wraps ErrInvalidConfig and
// names the offending field where the JSON decoder reports it. An empty
// config decodes as {}.
func Decode(cfg json.RawMessage, v any) error {
	if len(bytes.TrimSpace(cfg)) == 0 {
		cfg = json.RawMessage("{}")
	}
	d := json.NewDecoder(bytes.NewReader(cfg))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if ok := asTypeErr(err, &te); ok {
			return fmt.Errorf("%w: field %q: want %s, got %s", ErrInvalidConfig, te.Field, te.Type, te.Value)
		}
		return fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	if d.More() {
		return fmt.Errorf("%w: trailing data after the config object", ErrInvalidConfig)
	}
	return nil
}

func asTypeErr(err error, te **json.UnmarshalTypeError) bool {
	t, ok := err.(*json.UnmarshalTypeError)
	if ok {
		*te = t
	}
	return ok
}

// Invalid returns an ErrInvalidConfig error naming field and the rule it
// broke, e.g. Invalid("rules[0].weighted_upstreams", "at most 20 items").
func Invalid(field, rule string) error {
	return fmt.Errorf("%w: field %q: %s", ErrInvalidConfig, field, rule)
}
