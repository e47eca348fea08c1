package store

import (
	"context"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// routeValue is an APISIX-sized route (~600 bytes of JSON).
func routeValue(i int) []byte {
	v := fmt.Sprintf(`{"id":"%d","uri":"/api/v1/service-%d/*","methods":["GET","POST","PUT","DELETE"],"hosts":["svc-%d.default.svc.cluster.local"],"upstream":{"type":"roundrobin","scheme":"http","pass_host":"pass","nodes":[{"host":"10.0.%d.%d","port":8080,"weight":100},{"host":"10.1.%d.%d","port":8080,"weight":100}],"timeout":{"connect":6,"send":6,"read":6},"keepalive_pool":{"size":320,"idle_timeout":60,"requests":1000}},"plugins":{"proxy-rewrite":{"regex_uri":["^/api/v1/service-%d/(.*)","/$1"]}},"labels":{"meshagent.xds.name":"route-%d","meshagent.xds.version":"v1"},"status":1,"priority":0,"create_time":1700000000,"update_time":1700000000}`,
		i, i, i, i/256, i%256, i/256, i%256, i, i)
	if n := 600 - len(v); n > 0 {
		v = v[:len(v)-1] + `,"desc":"` + strings.Repeat("x", n) + `"}`
	}
	return []byte(v)
}

func benchStore(b *testing.B) *memStore {
	b.Helper()
	s, err := newStore(Options{}, time.Now)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

func BenchmarkPut(b *testing.B) {
	ctx := context.Background()
	s := benchStore(b)
	keys := make([][]byte, 1000)
	vals := make([][]byte, len(keys))
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("/apisix/routes/%05d", i))
		vals[i] = routeValue(i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		j := i % len(keys)
		if _, err := s.Put(ctx, &pb.PutRequest{Key: keys[j], Value: vals[j]}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRangePrefix10k(b *testing.B) {
	ctx := context.Background()
	s := benchStore(b)
	for i := 0; i < 10000; i++ {
		if _, err := s.Put(ctx, &pb.PutRequest{Key: []byte(fmt.Sprintf("/apisix/routes/%05d", i)), Value: routeValue(i)}); err != nil {
			b.Fatal(err)
		}
	}
	req := &pb.RangeRequest{Key: []byte("/apisix/routes/"), RangeEnd: []byte("/apisix/routes0")}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r, err := s.Range(ctx, req)
		if err != nil || len(r.Kvs) != 10000 {
			b.Fatalf("range: %d kvs, %v", len(r.GetKvs()), err)
		}
	}
}

// BenchmarkWatchLatency measures put-to-delivery latency with N watchers
// on the written prefix: each op is one put, waited for by every watcher;
// p99 (and p50) over all deliveries are reported.
func BenchmarkWatchLatency(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("watchers=%d", n), func(b *testing.B) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			s := benchStore(b)
			var sent atomic.Int64 // UnixNano of the last put
			lat := make([][]time.Duration, n)
			var got sync.WaitGroup
			var ready sync.WaitGroup
			for i := 0; i < n; i++ {
				w, err := s.Watch(ctx, WatchOptions{Key: []byte("/apisix/routes/"), RangeEnd: []byte("/apisix/routes0")})
				if err != nil {
					b.Fatal(err)
				}
				ready.Add(1)
				go func() {
					ready.Done()
					for r := range w.C() {
						d := time.Since(time.Unix(0, sent.Load()))
						lat[i] = append(lat[i], d)
						for range r.Events {
							got.Done()
						}
					}
				}()
			}
			ready.Wait()
			val := routeValue(1)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				got.Add(n)
				sent.Store(time.Now().UnixNano())
				if _, err := s.Put(ctx, &pb.PutRequest{Key: []byte("/apisix/routes/1"), Value: val}); err != nil {
					b.Fatal(err)
				}
				got.Wait()
			}
			b.StopTimer()
			var all []time.Duration
			for _, l := range lat {
				all = append(all, l...)
			}
			sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
			if len(all) > 0 {
				b.ReportMetric(float64(all[len(all)*99/100].Nanoseconds()), "p99-ns")
				b.ReportMetric(float64(all[len(all)/2].Nanoseconds()), "p50-ns")
			}
		})
	}
}

// BenchmarkMemory10kRoutes reports the heap held by a store of 10k
// APISIX-sized routes (values ~600 bytes, no Decoder), after compacting the
// watch history, as bytes in total and per key.
func BenchmarkMemory10kRoutes(b *testing.B) {
	ctx := context.Background()
	vals := make([][]byte, 10000)
	for i := range vals {
		vals[i] = routeValue(i)
	}
	var ms runtime.MemStats
	for i := 0; i < b.N; i++ {
		runtime.GC()
		runtime.ReadMemStats(&ms)
		before := ms.HeapAlloc
		s, err := newStore(Options{}, time.Now)
		if err != nil {
			b.Fatal(err)
		}
		for j, v := range vals {
			if _, err := s.Put(ctx, &pb.PutRequest{Key: []byte(fmt.Sprintf("/apisix/routes/%05d", j)), Value: v}); err != nil {
				b.Fatal(err)
			}
		}
		// Compact away the watch history to measure the steady state.
		if _, err := s.Compact(ctx, &pb.CompactionRequest{Revision: s.Rev()}); err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		runtime.ReadMemStats(&ms)
		used := int64(ms.HeapAlloc) - int64(before)
		b.ReportMetric(float64(used), "heap-bytes")
		b.ReportMetric(float64(used)/10000, "bytes/key")
		runtime.KeepAlive(s)
		_ = s.Close()
	}
}
