// Command hello is a test .so plugin: built with -buildmode=plugin by the
// goplugin tests. It answers requests to /hello-so itself and tags others.
package main

import (
	"encoding/json"

	"github.com/meshagent/meshagent/plugins"
)

// MeshagentAPIVersion is the plugins API this plugin is built for.
var MeshagentAPIVersion = 1

type conf struct {
	Tag string `json:"tag"`
}

type filter struct{ tag string }

func (f *filter) Access(c plugins.Ctx) plugins.Status {
	if string(c.Path()) == "/hello-so" {
		c.Respond(200, []byte("hello from a .so plugin"))
		return plugins.Stop
	}
	c.SetHeader("x-so-plugin", f.tag)
	return plugins.Continue
}

// MeshagentPlugin returns the plugin registration.
func MeshagentPlugin() plugins.Plugin {
	return plugins.Plugin{Name: "hello-so", Priority: 1000, New: func(raw json.RawMessage, _ plugins.Builder) (any, error) {
		var c conf
		if err := plugins.Decode(raw, &c); err != nil {
			return nil, err
		}
		return &filter{tag: c.Tag}, nil
	}}
}

func main() {}
