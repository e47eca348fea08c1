package xds

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
)

func TestBuildNode(t *testing.T) {
	cases := []struct {
		name    string
		cfg     NodeConfig
		id      string
		cluster string
		meta    map[string]string // JSON path (dot separated) -> JSON value
		err     error
	}{
		{"istio", NodeConfig{Preset: PresetIstio, IP: "10.1.2.3", Pod: "reviews-v1-abc", Namespace: "bookinfo", Labels: map[string]string{"app": "reviews"}},
			"sidecar~10.1.2.3~reviews-v1-abc.bookinfo~bookinfo.svc.cluster.local", "reviews.bookinfo",
			map[string]string{"NAMESPACE": `"bookinfo"`, "INSTANCE_IPS": `"10.1.2.3"`, "CLUSTER_ID": `"Kubernetes"`, "LABELS.app": `"reviews"`, "INTERCEPTION_MODE": `"REDIRECT"`}, nil},
		{"istio explicit id and metadata", NodeConfig{Preset: PresetIstio, ID: "sidecar~1.1.1.1~x.y~y.svc.cluster.local", Metadata: map[string]any{"CLUSTER_ID": "east"}},
			"sidecar~1.1.1.1~x.y~y.svc.cluster.local", "meshagent.default", map[string]string{"CLUSTER_ID": `"east"`}, nil},
		{"kuma", NodeConfig{Preset: PresetKuma, Mesh: "default", Dataplane: "web-1", DataplaneResource: "type: Dataplane\nname: web-1\n"},
			"default.web-1", "", map[string]string{"version.kumaDp.version": `"2.14.3"`, "version.envoy.kumaDpCompatible": "true", "dataplane.resource": `"type: Dataplane\nname: web-1\n"`}, nil},
		{"kuma without dataplane", NodeConfig{Preset: PresetKuma}, "", "", nil, ErrNode},
		{"none without id", NodeConfig{}, "", "", nil, ErrNode},
		{"whitespace id", NodeConfig{ID: "a b"}, "", "", nil, ErrNode},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n, err := BuildNode(c.cfg, "v9")
			if c.err != nil {
				if !errors.Is(err, c.err) {
					t.Fatalf("err %v, want %v", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if n.GetId() != c.id || n.GetCluster() != c.cluster || n.GetUserAgentName() != "meshagent" || n.GetUserAgentVersion() != "v9" {
				t.Fatalf("node %v", n)
			}
			var md map[string]any
			b, _ := protojson.Marshal(n.GetMetadata())
			if err := json.Unmarshal(b, &md); err != nil {
				t.Fatal(err)
			}
			for path, want := range c.meta {
				var v any = md
				// Keys may themselves contain dots ("dataplane.resource").
				if direct, ok := md[path]; ok {
					v = direct
				} else {
					for _, k := range splitPath(path) {
						v = v.(map[string]any)[k]
					}
				}
				got, _ := json.Marshal(v)
				if string(got) != want {
					t.Errorf("metadata %s = %s, want %s", path, got, want)
				}
			}
		})
	}
}

func splitPath(p string) []string {
	var out []string
	start := 0
	for i := 0; i < len(p); i++ {
		if p[i] == '.' {
			out = append(out, p[start:i])
			start = i + 1
		}
	}
	return append(out, p[start:])
}

// TestKumaNodeShape checks the kuma preset against the node kuma-cp
// 2.14.3 accepted in the captured fixtures.
func TestKumaNodeShape(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "kuma-2.14.3", "plain", "node.json"))
	if err != nil {
		t.Fatal(err)
	}
	var want struct {
		ID       string `json:"id"`
		Metadata struct {
			Version map[string]map[string]any `json:"version"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	n, err := BuildNode(NodeConfig{Preset: PresetKuma, Dataplane: "web-1"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if n.GetId() != want.ID {
		t.Errorf("id %q, fixture %q", n.GetId(), want.ID)
	}
	got := n.GetMetadata().GetFields()["version"].GetStructValue().GetFields()
	for section, fields := range want.Metadata.Version {
		gs := got[section].GetStructValue().GetFields()
		for f := range fields {
			if _, ok := gs[f]; !ok {
				t.Errorf("metadata version.%s.%s missing", section, f)
			}
		}
	}
}
