package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	"github.com/meshagent/meshagent/dataplane"
	"github.com/meshagent/meshagent/etcdcompat/apisix"
	"github.com/meshagent/meshagent/etcdcompat/store"
	"github.com/meshagent/meshagent/xds"
	"github.com/meshagent/meshagent/xds/controlplane"
	"github.com/meshagent/meshagent/xds/translate"
)

// BenchmarkXDSClustersMemory is the live heap `meshagent run --xds` holds
// for N EDS clusters of 3 endpoints each (Istio-like names), with every
// part of the run path but the gRPC wire: the xDS translator's state, the
// store (raw JSON and decoded objects) and the data plane's compiled
// upstreams. MEMPROF=file writes a heap profile of the loaded state.
// Issue 4's targets: 1k clusters <= 30 MB, 10k <= 120 MB RSS.
func BenchmarkXDSClustersMemory(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			for range b.N {
				base := liveHeap()
				cds, eds := xdsClusters(n)
				st, err := store.New(store.Options{Decoder: apisix.Decode})
				if err != nil {
					b.Fatal(err)
				}
				dp, err := dataplane.New(dataplane.Options{Source: st, Logger: slog.New(slog.DiscardHandler)})
				if err != nil {
					b.Fatal(err)
				}
				if err := dp.Start(context.Background()); err != nil {
					b.Fatal(err)
				}
				a := xds.NewApplier(st, xds.ApplierOptions{})
				ctx := context.Background()
				if err := a.Apply(ctx, translate.KindCluster, cds, nil); err != nil {
					b.Fatal(err)
				}
				if err := a.Apply(ctx, translate.KindEndpoints, eds, nil); err != nil {
					b.Fatal(err)
				}
				deadline := time.Now().Add(30 * time.Second)
				for dp.Revision() < st.Rev() {
					if time.Now().After(deadline) {
						b.Fatalf("data plane at revision %d, store at %d", dp.Revision(), st.Rev())
					}
					time.Sleep(time.Millisecond)
				}
				objs, _ := st.Objects(dataplane.APISIXPrefix + "upstreams/")
				if len(objs) < n {
					b.Fatalf("%d upstreams in the store, want >= %d", len(objs), n)
				}
				loaded := liveHeap()
				if f := os.Getenv("MEMPROF"); f != "" {
					w, err := os.Create(fmt.Sprintf("%s.%d", f, n))
					if err != nil {
						b.Fatal(err)
					}
					if err := pprof.WriteHeapProfile(w); err != nil {
						b.Fatal(err)
					}
					w.Close()
				}
				b.ReportMetric(float64(loaded-base)/(1<<20), "heap-MB")
				b.ReportMetric(float64(loaded-base)/float64(n), "B/cluster")
				runtime.KeepAlive(a)
				runtime.KeepAlive(cds)
				dp.Close()
				st.Close()
			}
		})
	}
}

// xdsClusters returns n EDS clusters and their assignments; the messages
// stay referenced, as a real ADS client's received resources are.
func xdsClusters(n int) (cds, eds []translate.Resource) {
	for i := range n {
		name := fmt.Sprintf("outbound|8080||svc-%d.ns-%d.svc.cluster.local", i, i%50)
		cds = append(cds, translate.Resource{Name: name, Version: "1", Msg: controlplane.EDSCluster(name)})
		eds = append(eds, translate.Resource{Name: name, Version: "1", Msg: controlplane.Endpoints(name,
			controlplane.Endpoint{Addr: fmt.Sprintf("10.%d.%d.1:8080", i/250, i%250)},
			controlplane.Endpoint{Addr: fmt.Sprintf("10.%d.%d.2:8080", i/250, i%250)},
			controlplane.Endpoint{Addr: fmt.Sprintf("10.%d.%d.3:8080", i/250, i%250), Priority: 1})})
	}
	return cds, eds
}

func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
