package translate

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshagent/meshagent/etcdcompat/apisix"

	// Types referenced from Any fields of the fixtures.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// loadResponse reads a protojson DiscoveryResponse (as the fixtures hold)
// and returns its kind, version and resources.
func loadResponse(t testing.TB, path string) (Kind, string, []Resource) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var dr struct {
		Resources []json.RawMessage `json:"resources"`
		TypeURL   string            `json:"typeUrl"`
		Version   string            `json:"version"`
	}
	if err := json.Unmarshal(b, &dr); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	k, ok := KindOf(dr.TypeURL)
	if !ok {
		t.Fatalf("%s: type %s", path, dr.TypeURL)
	}
	var out []Resource
	for _, raw := range dr.Resources {
		var a anypb.Any
		if err := protojson.Unmarshal(raw, &a); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		m := k.NewMessage()
		if err := a.UnmarshalTo(m); err != nil {
			t.Fatal(err)
		}
		out = append(out, Resource{Name: ResourceName(m), Version: dr.Version, Msg: m})
	}
	return k, dr.Version, out
}

func TestKumaPrint(t *testing.T) {
	tr := New(nil)
	dir := "../testdata/kuma-2.14.3/plain"
	for _, f := range []string{"cds.json", "lds.json", "eds.json"} {
		k, _, rs := loadResponse(t, filepath.Join(dir, f))
		p, err := tr.Stage(k, rs, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range p.Puts {
			t.Logf("%s %s", o.Key, o.Value)
			if _, err := apisix.Decode([]byte(o.Key), o.Value); err != nil {
				t.Errorf("%s: %v", o.Key, err)
			}
		}
		t.Logf("warnings %v", p.Warnings)
		p.Commit()
	}
}
