package translate

import (
	"encoding/json"
	"testing"

	dpexpr "github.com/meshagent/meshagent/dataplane/expr"
	"github.com/meshagent/meshagent/plugins"

	_ "github.com/meshagent/meshagent/plugins/cors"
	_ "github.com/meshagent/meshagent/plugins/faultinjection"
	_ "github.com/meshagent/meshagent/plugins/limit"
	_ "github.com/meshagent/meshagent/plugins/proxymirror"
	_ "github.com/meshagent/meshagent/plugins/proxyrewrite"
	_ "github.com/meshagent/meshagent/plugins/redirect"
	_ "github.com/meshagent/meshagent/plugins/responserewrite"
	_ "github.com/meshagent/meshagent/plugins/trafficsplit"
)

// checkPlugins builds every plugin of a translated route with the data
// plane's plugin factories (strict decoding, APISIX schema).
func checkPlugins(t *testing.T, obj string) {
	t.Helper()
	var r struct {
		Plugins map[string]json.RawMessage `json:"plugins"`
	}
	if err := json.Unmarshal([]byte(obj), &r); err != nil {
		t.Fatal(err)
	}
	for name, cfg := range r.Plugins {
		if _, ok := plugins.Lookup(name); !ok {
			t.Errorf("plugin %q is not registered", name)
			continue
		}
		if _, err := plugins.Build(name, cfg, testBuilder{}); err != nil {
			t.Errorf("plugin %q rejects %s: %v", name, cfg, err)
		}
	}
}

// testBuilder resolves any upstream id and compiles vars with the data
// plane's expression compiler.
type testBuilder struct{}

type testUpstream string

func (u testUpstream) UpstreamID() string { return string(u) }

func (testBuilder) Upstream(id string) (plugins.Upstream, error) { return testUpstream(id), nil }

func (testBuilder) InlineUpstream(key string, _ json.RawMessage) (plugins.Upstream, error) {
	return testUpstream(""), nil
}

type testVars struct{}

func (testVars) Match(plugins.Ctx) bool { return true }

func (testBuilder) Vars(raw json.RawMessage) (plugins.VarsMatcher, error) {
	if _, err := dpexpr.Compile(raw); err != nil {
		return nil, err
	}
	return testVars{}, nil
}
