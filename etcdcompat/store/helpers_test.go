package store

import (
	"context"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// fakeClock is a settable clock for lease tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// newTest returns a store on a fake clock whose first revision is 1, like
// a fresh etcd, so expectations can be written as etcd's.
func newTest(t testing.TB, o Options) (*memStore, *fakeClock) {
	t.Helper()
	clk := &fakeClock{t: time.UnixMilli(1)}
	s, err := newStore(o, clk.Now)
	if err != nil {
		t.Fatalf("newStore: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, clk
}

func mustPut(t testing.TB, s Store, key, val string) *pb.PutResponse {
	t.Helper()
	r, err := s.Put(context.Background(), &pb.PutRequest{Key: []byte(key), Value: []byte(val)})
	if err != nil {
		t.Fatalf("put %q: %v", key, err)
	}
	return r
}

func mustGet(t testing.TB, s Store, key string) *mvccpb.KeyValue {
	t.Helper()
	r, err := s.Range(context.Background(), &pb.RangeRequest{Key: []byte(key)})
	if err != nil {
		t.Fatalf("get %q: %v", key, err)
	}
	if len(r.Kvs) == 0 {
		return nil
	}
	return r.Kvs[0]
}

func keysOf(kvs []*mvccpb.KeyValue) []string {
	out := make([]string, len(kvs))
	for i, kv := range kvs {
		out[i] = string(kv.Key)
	}
	return out
}

// recv waits for one watch response.
func recv(t testing.TB, w Watcher) WatchResponse {
	t.Helper()
	select {
	case r, ok := <-w.C():
		if !ok {
			t.Fatalf("watch channel closed")
		}
		return r
	case <-time.After(5 * time.Second):
		t.Fatalf("no watch response within 5s")
	}
	return WatchResponse{}
}

// noRecv asserts that nothing arrives for a short while.
func noRecv(t testing.TB, w Watcher) {
	t.Helper()
	select {
	case r := <-w.C():
		t.Fatalf("unexpected watch response %+v", r)
	case <-time.After(50 * time.Millisecond):
	}
}

func evSummary(evs []*mvccpb.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.Type.String() + " " + string(ev.Kv.Key) + "=" + string(ev.Kv.Value)
	}
	return out
}
