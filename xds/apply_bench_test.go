package xds

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"

	"github.com/meshagent/meshagent/etcdcompat/apisix"
	"github.com/meshagent/meshagent/etcdcompat/store"
	"github.com/meshagent/meshagent/xds/controlplane"
	"github.com/meshagent/meshagent/xds/translate"
)

func benchResources(n int) (cds, eds []translate.Resource) {
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("outbound|8080||svc-%d.ns-%d.svc.cluster.local", i, i%50)
		c := controlplane.EDSCluster(name)
		cds = append(cds, translate.Resource{Name: name, Version: "1", Msg: c})
		eds = append(eds, translate.Resource{Name: name, Version: "1", Msg: controlplane.Endpoints(name,
			controlplane.Endpoint{Addr: fmt.Sprintf("10.%d.%d.1:8080", i/250, i%250)},
			controlplane.Endpoint{Addr: fmt.Sprintf("10.%d.%d.2:8080", i/250, i%250)},
			controlplane.Endpoint{Addr: fmt.Sprintf("10.%d.%d.3:8080", i/250, i%250), Priority: 1})})
	}
	return cds, eds
}

func newBenchApplier(b *testing.B) (*Applier, store.Store) {
	st, err := store.New(store.Options{Decoder: apisix.Decode})
	if err != nil {
		b.Fatal(err)
	}
	return NewApplier(st, ApplierOptions{}), st
}

func fullPush(b *testing.B, a *Applier, cds, eds []translate.Resource) {
	ctx := context.Background()
	if err := a.Apply(ctx, translate.KindCluster, cds, nil); err != nil {
		b.Fatal(err)
	}
	if err := a.Apply(ctx, translate.KindEndpoints, eds, nil); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkEDSChange is the push-to-store time of one changed endpoint
// in one cluster among 1,000 (translate, diff, one store txn).
func BenchmarkEDSChange(b *testing.B) {
	a, st := newBenchApplier(b)
	defer st.Close()
	cds, eds := benchResources(1000)
	fullPush(b, a, cds, eds)
	name := cds[500].Name
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cla := controlplane.Endpoints(name, controlplane.Endpoint{Addr: "10.99.0.1:" + strconv.Itoa(1000+i%2)})
		if err := a.Apply(context.Background(), translate.KindEndpoints, []translate.Resource{{Name: name, Version: strconv.Itoa(i), Msg: cla}}, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFullPush is a full CDS+EDS push of N clusters into an empty
// store (3 endpoints each).
func BenchmarkFullPush(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			cds, eds := benchResources(n)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				a, st := newBenchApplier(b)
				b.StartTimer()
				fullPush(b, a, cds, eds)
				b.StopTimer()
				st.Close()
				b.StartTimer()
			}
		})
	}
}

func rssMB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// BenchmarkTranslatedMemory reports the live heap held by the translated
// config of N clusters (translator state and the store with its decoded
// objects), and the process RSS after the push.
func BenchmarkTranslatedMemory(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				runtime.GC()
				debug.FreeOSMemory()
				rss0 := rssMB()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				// The decoded resources are retained by the translator, as
				// the ones received over the wire are: count them.
				cds, eds := benchResources(n)
				a, st := newBenchApplier(b)
				fullPush(b, a, cds, eds)
				runtime.GC()
				runtime.ReadMemStats(&after)
				// Steady state: return freed pages as the scavenger would.
				debug.FreeOSMemory()
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "heap-MB")
				b.ReportMetric(rssMB(), "rss-MB")
				b.ReportMetric(rssMB()-rss0, "rss-delta-MB")
				runtime.KeepAlive(a)
				st.Close()
			}
		})
	}
}
