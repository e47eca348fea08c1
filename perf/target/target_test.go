package target

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/meshagent/meshagent/etcdcompat/apisix"
	"github.com/meshagent/meshagent/perf/load"
	"gopkg.in/yaml.v3"
)

func TestStandaloneYAML(t *testing.T) {
	b := Backend{HTTPAddr: "127.0.0.1:1001", GRPCAddr: "127.0.0.1:1002", TCPAddr: "127.0.0.1:1003"}
	cfg, err := DefaultConfig(b)
	if err != nil {
		t.Fatal(err)
	}
	y, err := cfg.YAML()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(y, []byte("\n#END\n")) {
		t.Errorf("no #END marker:\n%s", y)
	}
	var doc struct {
		Routes       []map[string]any `yaml:"routes"`
		Upstreams    []map[string]any `yaml:"upstreams"`
		StreamRoutes []map[string]any `yaml:"stream_routes"`
	}
	if err := yaml.Unmarshal(y, &doc); err != nil {
		t.Fatal(err)
	}
	// Each object decodes strictly back into the APISIX types.
	var routes []apisix.Route
	var ups []apisix.Upstream
	for _, c := range []struct {
		in  any
		out any
	}{{doc.Routes, &routes}, {doc.Upstreams, &ups}} {
		j, _ := json.Marshal(c.in)
		dec := json.NewDecoder(bytes.NewReader(j))
		dec.DisallowUnknownFields()
		if err := dec.Decode(c.out); err != nil {
			t.Fatalf("decode %s: %v", j, err)
		}
	}
	if len(routes) != 2 || routes[0].URI != "/perf.Echo/*" || routes[1].URI != "/*" || routes[0].Priority <= routes[1].Priority {
		t.Errorf("routes = %+v", routes)
	}
	if len(ups) != 3 || ups[1].Scheme != "grpc" || ups[0].Nodes[0].Port != 1001 || ups[2].Nodes[0].Port != 1003 {
		t.Errorf("upstreams = %+v", ups)
	}
	if len(doc.StreamRoutes) != 1 || doc.StreamRoutes[0]["upstream_id"] != RouteTCP {
		t.Errorf("stream routes = %+v", doc.StreamRoutes)
	}
	empty, err := (&StandaloneConfig{}).YAML()
	if err != nil || string(empty) != "routes: []\n#END\n" {
		t.Errorf("empty config = %q %v", empty, err)
	}
	if _, err := NodeOf("nohostport"); err == nil {
		t.Error("NodeOf accepted an address without port")
	}
}

func TestEndpointsFor(t *testing.T) {
	e := Endpoints{HTTP1: "a", H2: "b", GRPC: "c", TCP: "d"}
	for p, want := range map[load.Protocol]string{load.HTTP1: "a", load.H2: "b", load.GRPC: "c", load.GRPCStream: "c", load.TCP: "d", load.TCPBulk: "d"} {
		if got := e.For(p); got != want {
			t.Errorf("For(%v) = %q, want %q", p, got, want)
		}
	}
}

func TestStartFailuresAreUnavailable(t *testing.T) {
	tests := []struct {
		name string
		t    Target
		want string
	}{
		{"missing meshagent", &Meshagent{Bin: "/nonexistent/meshagent"}, "not found"},
		{"meshagent exits", &Meshagent{Bin: "/bin/false"}, "exited"},
		{"missing nginx", &Nginx{Bin: "/nonexistent/nginx"}, "not installed"},
		{"missing haproxy", &HAProxy{Bin: "/nonexistent/haproxy"}, "not installed"},
	}
	for _, tc := range tests {
		_, err := tc.t.Start(context.Background(), Backend{HTTPAddr: "127.0.0.1:1", GRPCAddr: "127.0.0.1:2", TCPAddr: "127.0.0.1:3"})
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want ErrUnavailable with %q", tc.name, err, tc.want)
		}
		if err := tc.t.Stop(); err != nil {
			t.Errorf("%s: stop after failed start: %v", tc.name, err)
		}
	}
}

func TestFreeAddrsDiffer(t *testing.T) {
	a, err := freeAddrs(5)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, x := range a {
		if seen[x] || !strings.HasPrefix(x, "127.0.0.1:") {
			t.Errorf("addrs %v", a)
		}
		seen[x] = true
	}
}
