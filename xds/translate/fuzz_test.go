package translate

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/meshagent/meshagent/xds/controlplane"
)

// FuzzTranslate feeds arbitrary protobuf bytes, decoded as each resource
// type, through Stage, Commit and removal. It must never panic, every
// object written must be valid JSON, and a removal must delete everything
// the resource produced.
func FuzzTranslate(f *testing.F) {
	seed := func(k Kind, m proto.Message) {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(k), b)
	}
	for _, file := range []string{"cds.json", "eds.json", "lds.json"} {
		_, _, msgs, err := controlplane.LoadResponseJSON(filepath.Join("..", "testdata", "kuma-2.14.3", "plain", file))
		if err != nil {
			f.Fatal(err)
		}
		for _, m := range msgs {
			k := KindCluster
			switch ResourceName(m) {
			case "":
				continue
			}
			switch m.(type) {
			case *controlplane.CLA:
				k = KindEndpoints
			case *controlplane.Listener:
				k = KindListener
			}
			seed(k, m)
		}
	}
	seed(KindRouteConfig, controlplane.RouteConfig("rc", controlplane.VirtualHost("vh", []string{"a.com:80", "*.b.com"},
		controlplane.WeightedRoute("w", "/", controlplane.WeightedCluster{Name: "a", Weight: 1}, controlplane.WeightedCluster{Name: "b", Weight: 3}))))
	seed(KindCluster, controlplane.EDSCluster("svc"))
	f.Fuzz(func(t *testing.T, kind uint8, data []byte) {
		k := Kind(int(kind) % int(numKinds))
		m := k.NewMessage()
		if err := proto.Unmarshal(data, m); err != nil {
			return
		}
		name := ResourceName(m)
		tr := New(nil)
		// A cluster and endpoints the resource may refer to.
		if p, err := tr.Stage(KindCluster, []Resource{{Name: "svc", Msg: controlplane.EDSCluster("svc")}}, nil); err == nil {
			p.Commit()
		}
		p, err := tr.Stage(k, []Resource{{Name: name, Version: "1", Msg: m}}, nil)
		if err != nil {
			if tr.Has(k, name) && name != "svc" {
				t.Fatalf("rejected %s %q was kept", k, name)
			}
			return
		}
		for _, o := range p.Puts {
			if !json.Valid(o.Value) {
				t.Fatalf("%s: invalid JSON %q", o.Key, o.Value)
			}
		}
		p.Commit()
		keys := len(tr.Keys())
		p, err = tr.Stage(k, nil, []string{name})
		if err != nil {
			t.Fatalf("removal of %s %q failed: %v", k, name, err)
		}
		p.Commit()
		if k != KindEndpoints && len(tr.Keys()) > keys {
			t.Fatalf("removal added objects")
		}
	})
}
