package apisix

import (
	"errors"
	"strings"
	"testing"
)

const sampleYAML = `
routes:
  - id: r1
    uri: /hello
    upstream_id: u1
    vars:
      - [arg_a, "==", "1"]
  - uri: /bye              # no id: APISIX's arr_<n>
    upstream:
      nodes:
        "127.0.0.1:1980": 1
        "[::1]:1981": 2
      type: roundrobin
upstreams:
  - id: u1
    nodes:
      - host: 127.0.0.1
        port: 1980
        weight: 1
services:
  - id: 1
    hosts: [a.com]
    upstream_id: u1
plugin_configs:
  - id: pc1
    plugins:
      cors: {}
global_rules:
  - id: g1
    plugins:
      prometheus: {}
consumers:
  - username: jack
    plugins:
      key-auth:
        key: k1
  - id: jack/credentials/c1
    plugins:
      key-auth:
        key: k2
consumer_groups:
  - id: cg1
    plugins:
      limit-count: {count: 2, time_window: 60}
stream_routes:
  - id: sr1
    server_port: 9100
    upstream_id: u1
plugin_metadata:
  - id: http-logger
    log_format:
      host: "$host"
protos:
  - id: p1
    content: |
      syntax = "proto3";
plugins:
  - name: key-auth
  - name: ip-restriction
    stream: true
routes_conf_version: 3
#END
`

func TestLoadStandalone(t *testing.T) {
	s, err := LoadStandalone([]byte(sampleYAML))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Routes) != 2 || s.Routes[0].ID != "r1" || s.Routes[1].ID != "arr_2" {
		t.Fatalf("routes %+v", s.Routes)
	}
	if n := s.Routes[1].Upstream.Nodes; len(n) != 2 || n[1].Host != "[::1]" || n[1].Port != 1981 || n[1].Weight != 2 {
		t.Fatalf("map nodes %+v", n)
	}
	if s.Services[0].ID != "1" || s.Consumers[0].Username != "jack" || s.Credentials[0].ID != "jack/credentials/c1" {
		t.Fatalf("ids: service %q consumer %q credential %q", s.Services[0].ID, s.Consumers[0].Username, s.Credentials[0].ID)
	}
	if len(s.PluginConfigs) != 1 || len(s.GlobalRules) != 1 || len(s.ConsumerGroups) != 1 || len(s.StreamRoutes) != 1 ||
		len(s.PluginMetadata) != 1 || len(s.Protos) != 1 || len(s.Upstreams) != 1 || len(s.Plugins) != 2 || !s.Plugins[1].Stream {
		t.Fatalf("sections missing: %+v", s)
	}
	keys := map[string]string{}
	for _, it := range s.Items() {
		keys[Key(DefaultPrefix, it.Kind, it.ID)] = string(it.JSON)
		// Every stored JSON decodes through the store decoder to the same id.
		v, err := Decode([]byte(Key(DefaultPrefix, it.Kind, it.ID)), it.JSON)
		if err != nil {
			t.Fatalf("stored form of %v %s does not decode: %v", it.Kind, it.ID, err)
		}
		if v.(Object).ObjectID() != ID(it.ID) {
			t.Fatalf("id %q != %q", v.(Object).ObjectID(), it.ID)
		}
	}
	if got := keys["/apisix/routes/arr_2"]; !strings.HasPrefix(got, `{"id":"arr_2","uri":"/bye"`) {
		t.Fatalf("route JSON %s", got)
	}
	if got := keys["/apisix/services/1"]; got != `{"id":"1","hosts":["a.com"],"upstream_id":"u1"}` {
		t.Fatalf("service JSON %s", got)
	}
	if _, ok := keys["/apisix/consumers/jack/credentials/c1"]; !ok {
		t.Fatalf("credential key missing: %v", keys)
	}
}

func TestLoadStandaloneErrors(t *testing.T) {
	cases := []struct {
		name, doc, wantErr string
	}{
		{"no end marker", "routes: []\n", "missing valid end flag"},
		{"end marker not last", "#END\nroutes: []\n", "missing valid end flag"},
		{"yaml syntax", "routes: [\n#END", "apisix: standalone: yaml:"},
		{"root not mapping", "- a\n#END", "(root) (line 1): must be a mapping"},
		{"unknown section", "routez: []\n#END", "routez (line 1): unknown section"},
		{"section not list", "routes: {uri: /a}\n#END", "routes (line 1): must be a list"},
		{"item not object", "routes:\n  - 5\n#END", "routes[0] (line 2): must be an object"},
		{"bad route field", "routes:\n  - id: r1\n    uri: /a\n    plugins: {}\n  - id: r2\n    uri: /b\n    upstream:\n      nodes: {\"a:70000\": 1}\n#END",
			`routes[1] (id "r2", line 5): upstream.nodes["a:70000"]: port must be in 1..65535`},
		{"unknown field", "upstreams:\n  - id: u\n    nodes: {\"a:1\": 1}\n    retry: 1\n#END", `upstreams[0] (id "u", line 2): retry: unknown field`},
		{"duplicate id", "routes:\n  - {id: r1, uri: /a, plugins: {}}\n  - {id: r1, uri: /b, plugins: {}}\n#END",
			`routes[1] (id "r1", line 3): duplicate id "r1" (also routes[0])`},
		{"duplicate username", "consumers:\n  - username: a\n  - username: a\n#END", `consumers[1] (id "a", line 3): duplicate id "a"`},
		{"plugin_config needs id", "plugin_configs:\n  - plugins: {}\n#END", `plugin_configs[0] (line 2): id: is required`},
		{"plugin_metadata needs id", "plugin_metadata:\n  - log_format: {}\n#END", `plugin_metadata[0] (line 2): id: is required`},
		{"nan", "upstreams:\n  - id: u\n    nodes: {\"a:1\": 1}\n    retry_timeout: .nan\n#END", "is not a JSON number"},
		{"merge key", "upstreams:\n  - &x {id: u, nodes: {\"a:1\": 1}}\n  - <<: *x\n    id: v\n#END", "merge keys are not supported"},
		{"plugins list bad", "plugins:\n  - stream: true\n#END", "plugins (line 2): [0].name: is required"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadStandalone([]byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want %q", err, tc.wantErr)
			}
		})
	}
	// Field errors of items still match ErrInvalid.
	_, err := LoadStandalone([]byte("routes:\n  - uri: /a\n#END"))
	var se *StandaloneError
	if !errors.Is(err, ErrInvalid) || !errors.As(err, &se) || se.Section != "routes" || se.Index != 0 {
		t.Fatalf("error %v: want a StandaloneError wrapping ErrInvalid", err)
	}
	if _, err := LoadStandalone([]byte("#END")); err != nil {
		t.Fatalf("empty file: %v", err)
	}
	if _, err := LoadStandalone([]byte("routes:\n#END   \n")); err != nil {
		t.Fatalf("trailing whitespace after #END: %v", err)
	}
}

func TestExpandEnv(t *testing.T) {
	env := map[string]string{"HOST": "10.0.0.1", "PORT": "8080"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	doc := "upstreams:\n  - id: u\n    nodes:\n      - {host: \"${{HOST}}\", port: ${{ PORT }}, weight: ${{W:= 3 }}}\n#END\n"
	out, err := ExpandEnv([]byte(doc), lookup)
	if err != nil {
		t.Fatal(err)
	}
	s, err := LoadStandalone(out)
	if err != nil {
		t.Fatalf("%s: %v", out, err)
	}
	if n := s.Upstreams[0].Nodes[0]; n.Host != "10.0.0.1" || n.Port != 8080 || n.Weight != 3 {
		t.Fatalf("node %+v", n)
	}
	if _, err := ExpandEnv([]byte("a: ${{NOPE}}\n#END"), lookup); err == nil || !strings.Contains(err.Error(), "NOPE") {
		t.Fatalf("missing variable: %v", err)
	}
}

func TestMarshal(t *testing.T) {
	r := &Route{ID: "r1", URI: "/a", UpstreamID: "u1", Upstream: nil}
	b, err := Marshal(r)
	if err != nil || string(b) != `{"id":"r1","uri":"/a","upstream_id":"u1"}` {
		t.Fatalf("Marshal = %s, %v", b, err)
	}
	if KeyOf(DefaultPrefix, r) != "/apisix/routes/r1" {
		t.Fatal(KeyOf(DefaultPrefix, r))
	}
	if _, err := Marshal(&Route{ID: "r|1", URI: "/a", UpstreamID: "u1"}); err == nil || !strings.Contains(err.Error(), "id: must be") {
		t.Fatalf("invalid id accepted: %v", err)
	}
	if _, err := Marshal(&Upstream{Nodes: Nodes{{Host: "a", Port: 70000, Weight: 1}}}); err == nil ||
		!strings.Contains(err.Error(), "nodes[0].port: must be in 1..65535") {
		t.Fatalf("bad port accepted: %v", err)
	}
}
