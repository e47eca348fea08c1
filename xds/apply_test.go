package xds

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/meshagent/meshagent/etcdcompat/apisix"
	"github.com/meshagent/meshagent/etcdcompat/store"
	"github.com/meshagent/meshagent/xds/controlplane"
	"github.com/meshagent/meshagent/xds/translate"
)

func clusters(n int, bad string) []translate.Resource {
	var out []translate.Resource
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("c-%03d", i)
		addr := fmt.Sprintf("10.0.%d.%d:80", i/200, i%200+1)
		c := controlplane.StaticCluster(name, addr)
		if name == bad {
			c.LoadAssignment.Endpoints[0].LbEndpoints[0].GetEndpoint().Address.GetSocketAddress().Address = "bad host!"
		}
		out = append(out, translate.Resource{Name: name, Version: "v", Msg: c})
	}
	return out
}

// TestApplySplitPushRejected: a push too big for one etcd transaction
// whose last object the store rejects is NACKed with the resource named,
// and the store and the translator keep the previous config.
func TestApplySplitPushRejected(t *testing.T) {
	st, err := store.New(store.Options{Decoder: apisix.Decode})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a := NewApplier(st, ApplierOptions{})
	ctx := context.Background()
	if err := a.Apply(ctx, translate.KindCluster, clusters(10, ""), nil); err != nil {
		t.Fatal(err)
	}
	before := storeJSON(t, st, "/apisix/")
	err = a.Apply(ctx, translate.KindCluster, clusters(300, "c-299"), nil)
	if err == nil || !strings.Contains(err.Error(), `cluster "c-299"`) || !strings.Contains(err.Error(), "nodes[0].host") {
		t.Fatalf("err = %v", err)
	}
	after := storeJSON(t, st, "/apisix/")
	if len(after) != len(before) {
		t.Fatalf("store has %d objects after a rejected push, want the previous %d", len(after), len(before))
	}
	for k, v := range before {
		if fmt.Sprint(after[k]) != fmt.Sprint(v) {
			t.Errorf("%s changed: %v -> %v", k, v, after[k])
		}
	}
	// The translator rolled back too: a good big push applies in full.
	if err := a.Apply(ctx, translate.KindCluster, clusters(300, ""), nil); err != nil {
		t.Fatal(err)
	}
	if got := len(storeJSON(t, st, "/apisix/upstreams/")); got != 300 {
		t.Fatalf("%d upstreams after the good push", got)
	}
}
