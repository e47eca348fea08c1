package dataplane

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/meshagent/meshagent/etcdcompat/apisix"
	"github.com/meshagent/meshagent/etcdcompat/store"
)

// heapInUse returns the live heap after two full collections.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// putScale writes n upstreams and n routes (route i uses upstream i), as
// `perf scale` does, in transactions of 64 puts; it returns the revision.
func putScale(tb testing.TB, st store.Store, n int) int64 {
	tb.Helper()
	var rev int64
	var ops []*pb.RequestOp
	flush := func() {
		if len(ops) == 0 {
			return
		}
		r, err := st.Txn(context.Background(), &pb.TxnRequest{Success: ops})
		if err != nil {
			tb.Fatal(err)
		}
		rev, ops = r.Header.Revision, nil
	}
	put := func(k, v string) {
		ops = append(ops, &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(k), Value: []byte(v)}}})
		if len(ops) == 64 {
			flush()
		}
	}
	for i := range n {
		id := "scale-" + strconv.Itoa(i)
		put("/apisix/upstreams/"+id, `{"id":"`+id+`","type":"roundrobin","nodes":{"127.0.0.1:18080":1}}`)
		put("/apisix/routes/"+id, `{"id":"`+id+`","uri":"/scale/`+strconv.Itoa(i)+`","upstream_id":"`+id+`"}`)
	}
	flush()
	return rev
}

// BenchmarkScaleMemory measures the live heap of n routes and n upstreams:
// held by the store alone (store-B/route) and added by the data plane's
// compiled snapshot (dp-B/route). MEMPROF=file writes a heap profile of
// the loaded state.
func BenchmarkScaleMemory(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			for range b.N {
				base := heapInUse()
				st, err := store.New(store.Options{Decoder: apisix.Decode})
				if err != nil {
					b.Fatal(err)
				}
				rev := putScale(b, st, n)
				withStore := heapInUse()
				dp, err := New(Options{Source: st, Logger: testLogger(b)})
				if err != nil {
					b.Fatal(err)
				}
				if err := dp.Start(context.Background()); err != nil {
					b.Fatal(err)
				}
				deadline := time.Now().Add(30 * time.Second)
				for dp.Revision() < rev {
					if time.Now().After(deadline) {
						b.Fatalf("data plane at revision %d, want %d", dp.Revision(), rev)
					}
					time.Sleep(time.Millisecond)
				}
				if got := len(dp.snap.Load().routes); got != n {
					b.Fatalf("snapshot has %d routes, want %d", got, n)
				}
				loaded := heapInUse()
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
				b.ReportMetric(float64(withStore-base)/float64(n), "store-B/route")
				b.ReportMetric(float64(loaded-withStore)/float64(n), "dp-B/route")
				runtime.KeepAlive(st)
				dp.Close()
				st.Close()
			}
		})
	}
}

// BenchmarkRebuild10k measures one snapshot rebuild with 10k routes and
// upstreams of which none changed: the garbage every config change costs
// while a bulk apply is under way.
func BenchmarkRebuild10k(b *testing.B) {
	st, err := store.New(store.Options{Decoder: apisix.Decode})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	putScale(b, st, 10000)
	dp, err := New(Options{Source: st, Logger: testLogger(b)})
	if err != nil {
		b.Fatal(err)
	}
	if err := dp.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer dp.Close()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		dp.rebuild()
	}
}

// BenchmarkConsumersMemory is the live heap of 2k routes and upstreams
// with 1k consumers: the global inputs (consumers, global rules) every
// route depends on must not be copied into every route.
func BenchmarkConsumersMemory(b *testing.B) {
	for range b.N {
		base := heapInUse()
		st, err := store.New(store.Options{Decoder: apisix.Decode})
		if err != nil {
			b.Fatal(err)
		}
		for i := range 1000 {
			u := "consumer" + strconv.Itoa(i)
			if _, err := st.Put(context.Background(), &pb.PutRequest{Key: []byte("/apisix/consumers/" + u), Value: []byte(`{"username":"` + u + `"}`)}); err != nil {
				b.Fatal(err)
			}
		}
		rev := putScale(b, st, 2000)
		dp, err := New(Options{Source: st, Logger: testLogger(b)})
		if err != nil {
			b.Fatal(err)
		}
		if err := dp.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for dp.Revision() < rev {
			if time.Now().After(deadline) {
				b.Fatalf("data plane at revision %d, want %d", dp.Revision(), rev)
			}
			time.Sleep(time.Millisecond)
		}
		b.ReportMetric(float64(heapInUse()-base)/(1<<20), "heap-MB")
		dp.Close()
		st.Close()
	}
}
