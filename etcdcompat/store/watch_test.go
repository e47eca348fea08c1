package store

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

func TestWatchReplayAndLive(t *testing.T) {
	ctx := context.Background()
	s, _ := newTest(t, Options{})
	mustPut(t, s, "/a/1", "x") // 2
	mustPut(t, s, "/b/1", "y") // 3
	mustPut(t, s, "/a/2", "z") // 4

	tests := []struct {
		name   string
		opts   WatchOptions
		replay []string
	}{
		{"prefix from 2", WatchOptions{Key: []byte("/a/"), RangeEnd: []byte("/a0"), StartRevision: 2}, []string{"PUT /a/1=x", "PUT /a/2=z"}},
		{"single key", WatchOptions{Key: []byte("/b/1"), StartRevision: 1}, []string{"PUT /b/1=y"}},
		{"all from 3", WatchOptions{Key: []byte{0}, RangeEnd: []byte{0}, StartRevision: 3}, []string{"PUT /b/1=y", "PUT /a/2=z"}},
		{"empty key means all", WatchOptions{RangeEnd: []byte{0}, StartRevision: 4}, []string{"PUT /a/2=z"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, err := s.Watch(ctx, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Cancel()
			r := recv(t, w)
			if got := evSummary(r.Events); !reflect.DeepEqual(got, tc.replay) {
				t.Fatalf("replay = %v, want %v", got, tc.replay)
			}
			if r.Revision != s.Rev() {
				t.Fatalf("replay revision %d, want %d", r.Revision, s.Rev())
			}
		})
	}

	w, err := s.Watch(ctx, WatchOptions{Key: []byte("/a/"), RangeEnd: []byte("/a0"), PrevKV: true})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Cancel()
	noRecv(t, w)
	// A txn writing two keys under the prefix arrives as one response.
	txn := &pb.TxnRequest{Success: []*pb.RequestOp{
		{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("/a/1"), Value: []byte("x2")}}},
		{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte("/a/2")}}},
		{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("/b/2"), Value: []byte("other")}}},
	}}
	if _, err := s.Txn(ctx, txn); err != nil {
		t.Fatal(err)
	}
	r := recv(t, w)
	if got := evSummary(r.Events); !reflect.DeepEqual(got, []string{"PUT /a/1=x2", "DELETE /a/2="}) || r.Revision != 5 {
		t.Fatalf("live = %v at %d", got, r.Revision)
	}
	if p := r.Events[0].PrevKv; p == nil || string(p.Value) != "x" {
		t.Fatalf("prev kv of put: %+v", p)
	}
	if p := r.Events[1].PrevKv; p == nil || string(p.Value) != "z" {
		t.Fatalf("prev kv of delete: %+v", p)
	}
	if kv := r.Events[1].Kv; kv.ModRevision != 5 || kv.CreateRevision != 0 || kv.Version != 0 {
		t.Fatalf("delete event kv: %+v", kv)
	}
	mustPut(t, s, "/b/3", "not mine")
	mustPut(t, s, "/a/3", "mine")
	r = recv(t, w)
	if got := evSummary(r.Events); !reflect.DeepEqual(got, []string{"PUT /a/3=mine"}) || r.Revision != 7 {
		t.Fatalf("after unrelated write: %v at %d", got, r.Revision)
	}
}

func TestWatchFilters(t *testing.T) {
	ctx := context.Background()
	s, _ := newTest(t, Options{})
	noPut, err := s.Watch(ctx, WatchOptions{Key: []byte("k"), NoPut: true})
	if err != nil {
		t.Fatal(err)
	}
	noDel, err := s.Watch(ctx, WatchOptions{Key: []byte("k"), NoDelete: true})
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "k", "v")
	if _, err := s.DeleteRange(ctx, &pb.DeleteRangeRequest{Key: []byte("k")}); err != nil {
		t.Fatal(err)
	}
	if got := evSummary(recv(t, noPut).Events); !reflect.DeepEqual(got, []string{"DELETE k="}) {
		t.Fatalf("NoPut watcher got %v", got)
	}
	if got := evSummary(recv(t, noDel).Events); !reflect.DeepEqual(got, []string{"PUT k=v"}) {
		t.Fatalf("NoDelete watcher got %v", got)
	}
	noRecv(t, noPut)
	noRecv(t, noDel)
}

func TestWatchCompacted(t *testing.T) {
	ctx := context.Background()
	s, _ := newTest(t, Options{})
	for i := 0; i < 5; i++ {
		mustPut(t, s, "k", fmt.Sprint(i)) // 2..6
	}
	if _, err := s.Compact(ctx, &pb.CompactionRequest{Revision: 4}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Watch(ctx, WatchOptions{Key: []byte("k"), StartRevision: 3}); !errors.Is(err, ErrCompacted) {
		t.Fatalf("watch below compaction: %v", err)
	}
	// Starting exactly at the compaction revision still replays it.
	w, err := s.Watch(ctx, WatchOptions{Key: []byte("k"), StartRevision: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Cancel()
	if got := evSummary(recv(t, w).Events); !reflect.DeepEqual(got, []string{"PUT k=2", "PUT k=3", "PUT k=4"}) {
		t.Fatalf("replay from compaction rev: %v", got)
	}
}

// TestSlowWatcher: a consumer that never reads neither blocks writers nor
// readers; once history moves past it, it is canceled with the compaction
// revision.
func TestSlowWatcher(t *testing.T) {
	ctx := context.Background()
	s, _ := newTest(t, Options{HistoryLimit: 50})
	slow, err := s.Watch(ctx, WatchOptions{Key: []byte("k")})
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 2000; i++ {
			if _, err := s.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte(fmt.Sprint(i))}); err != nil {
				t.Error(err)
				return
			}
			if _, err := s.Range(ctx, &pb.RangeRequest{Key: []byte("k")}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("writers blocked behind a slow watcher")
	}
	// Drain: the buffered responses come first, then the cancellation.
	var last WatchResponse
	n := 0
	next := int64(2)
	for r := range slow.C() {
		last = r
		for _, ev := range r.Events {
			if ev.Kv.ModRevision != next {
				t.Fatalf("event at %d, want %d", ev.Kv.ModRevision, next)
			}
			next++
		}
		n++
		if n > 10000 {
			t.Fatal("watch never canceled")
		}
	}
	// The cancellation names a compaction that passed the watcher.
	if !last.Canceled || last.CompactRevision <= next || last.CompactRevision > s.CompactRev() {
		t.Fatalf("last response %+v, next %d, compact rev %d", last, next, s.CompactRev())
	}
}

// TestSlowWatcherCatchesUp: a consumer slower than the writer but within
// history receives every revision in order.
func TestSlowWatcherCatchesUp(t *testing.T) {
	ctx := context.Background()
	s, _ := newTest(t, Options{})
	w, err := s.Watch(ctx, WatchOptions{Key: []byte("k")})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Cancel()
	const n = 600
	for i := 0; i < n; i++ {
		mustPut(t, s, "k", fmt.Sprint(i))
	}
	next := int64(2)
	for next <= s.Rev() {
		r := recv(t, w)
		for _, ev := range r.Events {
			if ev.Kv.ModRevision != next {
				t.Fatalf("got revision %d, want %d", ev.Kv.ModRevision, next)
			}
			next++
		}
	}
}

func TestWatchCancelAndClose(t *testing.T) {
	s, _ := newTest(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	w1, _ := s.Watch(ctx, WatchOptions{Key: []byte("a")})
	w2, _ := s.Watch(context.Background(), WatchOptions{Key: []byte("a")})
	w3, _ := s.Watch(context.Background(), WatchOptions{Key: []byte("a")})
	cancel()
	w2.Cancel()
	for _, w := range []Watcher{w1, w2} {
		select {
		case _, ok := <-w.C():
			if ok {
				t.Fatal("response after cancel")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("channel not closed after cancel")
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case _, ok := <-w3.C():
		if ok {
			t.Fatal("response after close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("channel not closed after Close")
	}
	if _, err := s.Watch(context.Background(), WatchOptions{Key: []byte("a")}); !errors.Is(err, ErrClosed) {
		t.Fatalf("watch after close: %v", err)
	}
}
