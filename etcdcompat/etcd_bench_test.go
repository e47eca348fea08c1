package etcdcompat

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/meshagent/meshagent/etcdcompat/apisix"
	"github.com/meshagent/meshagent/etcdcompat/store"
)

// Benchmarks run etcdcompat and the embedded reference etcd side by side:
//
//	go test -run '^$' -bench . -benchmem -benchtime 1s -count 1 ./etcdcompat/
//
// The figures are recorded in docs/benchmarks/etcd.md.

// benchTarget is a server under benchmark, with its gRPC clients.
type benchTarget struct {
	name string
	url  string
	clis []*clientv3.Client
}

func (bt *benchTarget) kv(i int) pb.KVClient {
	return pb.NewKVClient(bt.clis[i%len(bt.clis)].ActiveConnection())
}

var (
	benchMu      sync.Mutex
	benchTargets = map[string]*benchTarget{}
	benchServer  *Server // the etcdcompat target's server
)

// targets returns the reference etcd and one etcdcompat server (APISIX
// decoder), created once per benchmark binary and reused by every
// benchmark; each has 8 client connections.
func targets(b *testing.B) []*benchTarget {
	b.Helper()
	benchMu.Lock()
	defer benchMu.Unlock()
	if len(benchTargets) == 0 {
		st, err := store.New(store.Options{Decoder: apisix.Decode})
		if err != nil {
			b.Fatal(err)
		}
		srv, err := New(Options{Store: st})
		if err != nil {
			b.Fatal(err)
		}
		benchServer = srv
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		go func() { _ = srv.Serve(l) }()
		for name, url := range map[string]string{"etcd": refEtcd.clientURL, "etcdcompat": "http://" + l.Addr().String()} {
			bt := &benchTarget{name: name, url: url}
			for i := 0; i < 8; i++ {
				// The gogo codec on the client too, so that client-side decoding
				// (the same for both servers) weighs as little as possible.
				cli, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 5 * time.Second,
					Logger: zap.NewNop(), MaxCallRecvMsgSize: 1 << 30,
					DialOptions: []grpc.DialOption{grpc.WithDefaultCallOptions(grpc.ForceCodec(codec{}))}})
				if err != nil {
					b.Fatal(err)
				}
				bt.clis = append(bt.clis, cli)
			}
			benchTargets[name] = bt
		}
	}
	return []*benchTarget{benchTargets["etcd"], benchTargets["etcdcompat"]}
}

// routeJSON is a typical APISIX route as the Admin API or the xDS
// translation stores it.
func routeJSON(i int) []byte {
	return []byte(fmt.Sprintf(`{"id":"%d","uri":"/svc-%d/*","hosts":["svc-%d.default.svc.cluster.local","svc-%d"],"methods":["GET","POST"],`+
		`"upstream":{"type":"roundrobin","nodes":{"10.0.%d.%d:8080":1,"10.1.%d.%d:8080":1}},"labels":{"meshagent.xds.name":"svc-%d"}}`,
		i, i, i, i, i/250%250, i%250, i/250%250, i%250, i))
}

// load writes n routes under prefix with txns of 100 puts.
func load(b testing.TB, kv pb.KVClient, prefix string, n int) {
	b.Helper()
	for i := 0; i < n; i += 100 {
		var ops []*pb.RequestOp
		for j := i; j < i+100 && j < n; j++ {
			ops = append(ops, reqPut(&pb.PutRequest{Key: []byte(fmt.Sprintf("%s%06d", prefix, j)), Value: routeJSON(j)}))
		}
		if _, err := kv.Txn(context.Background(), &pb.TxnRequest{Success: ops}); err != nil {
			b.Fatal(err)
		}
	}
}

var rangeLoaded sync.Map

// rawReply receives a response's wire bytes without decoding them, so
// that the benchmark client spends the same small effort on both servers.
type rawReply struct{ b []byte }

// rawCodec encodes requests like codec and keeps replies as bytes.
type rawCodec struct{ codec }

func (rawCodec) Unmarshal(data []byte, v any) error {
	if r, ok := v.(*rawReply); ok {
		r.b = append(r.b[:0], data...)
		return nil
	}
	return codec{}.Unmarshal(data, v)
}

// BenchmarkRange10k reads 10,000 APISIX routes in one Range over gRPC,
// from 8 connections in parallel (APISIX's readdir of /apisix/routes).
// The client keeps the reply's bytes; one reply per target is decoded and
// checked before timing.
func BenchmarkRange10k(b *testing.B) {
	const prefix = "/apisix/routes/"
	req := &pb.RangeRequest{Key: []byte(prefix), RangeEnd: prefixEnd(prefix)}
	for _, bt := range targets(b) {
		b.Run(bt.name, func(b *testing.B) {
			if _, done := rangeLoaded.LoadOrStore(bt.name, true); !done {
				load(b, bt.kv(0), prefix, 10000)
			}
			r, err := bt.kv(0).Range(context.Background(), req)
			if err != nil || len(r.Kvs) != 10000 {
				b.Fatalf("range: %d kvs, %v", len(r.GetKvs()), err)
			}
			size := r.Size()
			var next atomic.Int64
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb2 *testing.PB) {
				conn := bt.clis[int(next.Add(1))%len(bt.clis)].ActiveConnection()
				var reply rawReply
				for pb2.Next() {
					if err := conn.Invoke(context.Background(), "/etcdserverpb.KV/Range", req, &reply, grpc.ForceCodec(rawCodec{})); err != nil {
						b.Error(err)
						return
					}
					if len(reply.b) < size-64 {
						b.Errorf("reply of %d bytes, want about %d", len(reply.b), size)
						return
					}
				}
			})
		})
	}
}

// BenchmarkRange10kServer is BenchmarkRange10k without the gRPC transport
// (shared by both servers and dominant on loopback): the server's Range
// handler and the encoding of its reply, called in-process, in parallel.
// For etcd that is EtcdServer.Range (a linearizable read, as over gRPC)
// plus gogo encoding; for etcdcompat the KV service's Range plus the
// server's codec, with the reply cache (the same revision is read again,
// as APISIX's workers do) and without it (every read builds and encodes
// the 10,000 kvs).
func BenchmarkRange10kServer(b *testing.B) {
	const prefix = "/apisix/routes/"
	req := &pb.RangeRequest{Key: []byte(prefix), RangeEnd: prefixEnd(prefix)}
	ts := targets(b)
	for _, bt := range ts {
		if _, done := rangeLoaded.LoadOrStore(bt.name, true); !done {
			load(b, bt.kv(0), prefix, 10000)
		}
	}
	uncached, err := New(Options{Store: benchServer.st, RangeCacheBytes: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer uncached.Close()
	cases := []struct {
		name  string
		rng   func(context.Context, *pb.RangeRequest) (*pb.RangeResponse, error)
		codec codec
	}{
		{"etcd", refEtcd.e.Server.Range, codec{}},
		{"etcdcompat", (&kvServer{s: benchServer}).Range, codec{rc: benchServer.rc}},
		{"etcdcompat-nocache", (&kvServer{s: uncached}).Range, codec{}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb2 *testing.PB) {
				for pb2.Next() {
					r, err := c.rng(context.Background(), req)
					if err != nil || len(r.Kvs) != 10000 {
						b.Errorf("range: %d kvs, %v", len(r.GetKvs()), err)
						return
					}
					if _, err := c.codec.Marshal(r); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkPut writes an APISIX route per operation over gRPC, from 8
// connections in parallel.
func BenchmarkPut(b *testing.B) {
	for _, bt := range targets(b) {
		b.Run(bt.name, func(b *testing.B) {
			var next atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb2 *testing.PB) {
				kv := bt.kv(int(next.Add(1)))
				for pb2.Next() {
					i := int(next.Add(1))
					if _, err := kv.Put(context.Background(), &pb.PutRequest{
						Key: []byte(fmt.Sprintf("/apisix/routes/p%04d", i%1000)), Value: routeJSON(i % 1000)}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkWatchDelivery measures, for 100 and 1000 watchers (one gRPC
// watch stream each, over 8 connections), the time from the start of a
// put to its event's arrival at every watcher; it reports the p50 and p99
// over all deliveries.
func BenchmarkWatchDelivery(b *testing.B) {
	for _, n := range []int{100, 1000} {
		for _, bt := range targets(b) {
			b.Run(fmt.Sprintf("%s/watchers=%d", bt.name, n), func(b *testing.B) { benchWatch(b, bt, n) })
		}
	}
}

func benchWatch(b *testing.B, bt *benchTarget, n int) {
	key := []byte(fmt.Sprintf("/apisix/routes/w%d", n))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		mu   sync.Mutex
		lat  []time.Duration
		t0   atomic.Int64 // unix nanos of the current put's start
		got  = make(chan struct{}, n)
		wg   sync.WaitGroup
		errs atomic.Int64
	)
	for i := 0; i < n; i++ {
		w, err := pb.NewWatchClient(bt.clis[i%len(bt.clis)].ActiveConnection()).Watch(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := w.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{Key: key}}}); err != nil {
			b.Fatal(err)
		}
		if r, err := w.Recv(); err != nil || !r.Created {
			b.Fatalf("create: %v %v", r, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				r, err := w.Recv()
				if err != nil {
					return
				}
				if len(r.Events) == 0 {
					continue
				}
				d := time.Duration(time.Now().UnixNano() - t0.Load())
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
				got <- struct{}{}
			}
		}()
	}
	kv := bt.kv(0)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0.Store(time.Now().UnixNano())
		if _, err := kv.Put(context.Background(), &pb.PutRequest{Key: key, Value: routeJSON(i)}); err != nil {
			b.Fatal(err)
		}
		for j := 0; j < n; j++ {
			select {
			case <-got:
			case <-time.After(10 * time.Second):
				errs.Add(1)
				b.Fatalf("put %d: %d of %d watchers got the event", i, j, n)
			}
		}
	}
	b.StopTimer()
	cancel()
	wg.Wait()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	}
}

// rssHelperEnv makes the test binary a helper process that loads 10,000
// routes into a fresh store behind an etcdcompat server and prints its
// heap and resident set size (see TestMain).
const rssHelperEnv = "ETCDCOMPAT_RSS_HELPER"

// rssHelper is run instead of the tests when rssHelperEnv is set.
func rssHelper() {
	st, err := store.New(store.Options{Decoder: apisix.Decode})
	if err != nil {
		fmt.Println("error", err)
		return
	}
	srv, err := New(Options{Store: st})
	if err != nil {
		fmt.Println("error", err)
		return
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("error", err)
		return
	}
	go func() { _ = srv.Serve(l) }()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"http://" + l.Addr().String()}, Logger: zap.NewNop()})
	if err != nil {
		fmt.Println("error", err)
		return
	}
	base := rss()
	load(helperTB{}, pb.NewKVClient(cli.ActiveConnection()), "/apisix/routes/", 10000)
	_ = cli.Close()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	objs, _ := st.Objects("/apisix/routes/")
	fmt.Printf("objects %d heap_inuse_mb %.1f rss_mb %.1f rss_before_mb %.1f\n", len(objs),
		float64(ms.HeapInuse)/(1<<20), rss(), base)
}

// rss is this process's resident set size in MiB.
func rss() float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return -1
}

// helperTB lets load run outside a test.
type helperTB struct{ testing.TB }

func (helperTB) Helper()               {}
func (helperTB) Fatal(args ...any)     { fmt.Println(append([]any{"error"}, args...)...); os.Exit(1) }
func (helperTB) Fatalf(string, ...any) { os.Exit(1) }

// BenchmarkMemory10kRoutes reports the heap and RSS of a fresh process
// holding an etcdcompat server and a store with 10,000 APISIX routes
// (decoded once by the APISIX decoder), written through gRPC.
func BenchmarkMemory10kRoutes(b *testing.B) {
	var out []byte
	for i := 0; i < b.N; i++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), rssHelperEnv+"=1")
		var err error
		out, err = cmd.Output()
		if err != nil {
			b.Fatalf("helper: %v: %s", err, out)
		}
	}
	var objs int
	var heap, rssMB, before float64
	if _, err := fmt.Sscanf(strings.TrimSpace(string(out)), "objects %d heap_inuse_mb %f rss_mb %f rss_before_mb %f", &objs, &heap, &rssMB, &before); err != nil || objs != 10000 {
		b.Fatalf("helper output %q: %v", out, err)
	}
	b.ReportMetric(heap, "heap-MB")
	b.ReportMetric(rssMB, "rss-MB")
}

// BenchmarkRange10kHTTP is BenchmarkRange10k through the JSON gateway, as
// APISIX reads: POST /v3/kv/range without Content-Type, from 8 clients in
// parallel; the client reads the body without decoding it.
func BenchmarkRange10kHTTP(b *testing.B) {
	const prefix = "/apisix/routes/"
	body := fmt.Sprintf(`{"key":"%s","range_end":"%s"}`, b64(prefix), b64(string(prefixEnd(prefix))))
	for _, bt := range targets(b) {
		b.Run(bt.name, func(b *testing.B) {
			if _, done := rangeLoaded.LoadOrStore(bt.name, true); !done {
				load(b, bt.kv(0), prefix, 10000)
			}
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb2 *testing.PB) {
				for pb2.Next() {
					resp, err := client.Post(bt.url+"/v3/kv/range", "", strings.NewReader(body))
					if err != nil {
						b.Error(err)
						return
					}
					n, _ := io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK || n < 3<<20 {
						b.Errorf("status %d, %d bytes", resp.StatusCode, n)
						return
					}
				}
			})
		})
	}
}
