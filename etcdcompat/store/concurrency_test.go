package store

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// TestConcurrentUse runs writers, readers, txns, lease churn, watchers and
// object watchers at once (meant for -race), with one watcher that never
// reads and one object callback that blocks, and checks that every live
// watcher saw strictly increasing revisions ending at the final revision.
func TestConcurrentUse(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var calls atomic.Int64
	s, _ := newTest(t, Options{Decoder: routeDecoder(&calls), HistoryLimit: 5000})

	stuck, err := s.Watch(ctx, WatchOptions{Key: []byte{0}, RangeEnd: []byte{0}})
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Cancel()
	block := make(chan struct{})
	defer close(block)
	s.WatchObjects(ctx, "/apisix/", 0, func([]ObjectEvent) { <-block })

	const watchers = 4
	lastSeen := make([]atomic.Int64, watchers)
	var wg sync.WaitGroup
	for i := 0; i < watchers; i++ {
		w, err := s.Watch(ctx, WatchOptions{Key: []byte("/apisix/"), RangeEnd: []byte("/apisix0")})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range w.C() {
				for _, ev := range r.Events {
					if prev := lastSeen[i].Load(); ev.Kv.ModRevision < prev {
						t.Errorf("watcher %d: revision %d after %d", i, ev.Kv.ModRevision, prev)
					}
					lastSeen[i].Store(ev.Kv.ModRevision)
				}
			}
		}()
	}

	var work sync.WaitGroup
	for g := 0; g < 4; g++ {
		work.Add(1)
		go func() {
			defer work.Done()
			for i := 0; i < 300; i++ {
				key := fmt.Sprintf("/apisix/routes/%d", (g*7+i)%40)
				switch i % 5 {
				case 0, 1:
					if _, err := s.Put(ctx, &pb.PutRequest{Key: []byte(key), Value: []byte(fmt.Sprintf(`{"uri":"/%d"}`, i))}); err != nil {
						t.Error(err)
						return
					}
				case 2:
					if _, err := s.Txn(ctx, &pb.TxnRequest{
						Compare: []*pb.Compare{cmpVersion(key, pb.Compare_GREATER, 0)},
						Success: []*pb.RequestOp{opDel(key, "")},
						Failure: []*pb.RequestOp{opPut(key, `{"uri":"/txn"}`)},
					}); err != nil {
						t.Error(err)
						return
					}
				case 3:
					if _, err := s.Range(ctx, &pb.RangeRequest{Key: []byte("/apisix/"), RangeEnd: []byte("/apisix0")}); err != nil {
						t.Error(err)
						return
					}
					s.Objects("/apisix/routes/")
				case 4:
					l, err := s.LeaseGrant(ctx, &pb.LeaseGrantRequest{TTL: 60})
					if err != nil {
						t.Error(err)
						return
					}
					if _, err := s.Put(ctx, &pb.PutRequest{Key: []byte("/apisix/leased/" + key), Value: []byte("x"), Lease: l.ID}); err != nil {
						t.Error(err)
						return
					}
					if _, err := s.LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: l.ID}); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { work.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("workload blocked")
	}
	final := s.Rev()
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < watchers; i++ {
		for lastSeen[i].Load() != final {
			if time.Now().After(deadline) {
				t.Fatalf("watcher %d stopped at %d, final %d", i, lastSeen[i].Load(), final)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	cancel()
	wg.Wait()
}
