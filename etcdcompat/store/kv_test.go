package store

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

func TestNewSeedsRevisionFromClock(t *testing.T) {
	before := time.Now().UnixMilli()
	st, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	after := time.Now().UnixMilli()
	if r := st.Rev(); r < before || r > after {
		t.Fatalf("Rev() = %d, want wall clock millis in [%d, %d]", r, before, after)
	}
	r0 := st.Rev()
	if got := mustPut(t, st, "a", "1").Header.Revision; got != r0+1 {
		t.Fatalf("first put revision %d, want %d", got, r0+1)
	}
}

func TestPutSemantics(t *testing.T) {
	ctx := context.Background()
	s, _ := newTest(t, Options{})
	p1 := mustPut(t, s, "k", "v")
	if p1.Header.Revision != 2 || p1.PrevKv != nil {
		t.Fatalf("first put: %+v", p1)
	}
	// An identical value still bumps the revision and the version.
	p2, err := s.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte("v"), PrevKv: true})
	if err != nil {
		t.Fatal(err)
	}
	if p2.Header.Revision != 3 || p2.PrevKv == nil || p2.PrevKv.ModRevision != 2 {
		t.Fatalf("second put: %+v", p2)
	}
	kv := mustGet(t, s, "k")
	if kv.CreateRevision != 2 || kv.ModRevision != 3 || kv.Version != 2 || string(kv.Value) != "v" {
		t.Fatalf("kv after two puts: %+v", kv)
	}
	// Deleting a missing key does not bump the revision.
	d, err := s.DeleteRange(ctx, &pb.DeleteRangeRequest{Key: []byte("missing")})
	if err != nil || d.Deleted != 0 || d.Header.Revision != 3 || s.Rev() != 3 {
		t.Fatalf("delete missing: %+v %v rev %d", d, err, s.Rev())
	}
	d, err = s.DeleteRange(ctx, &pb.DeleteRangeRequest{Key: []byte("k"), PrevKv: true})
	if err != nil || d.Deleted != 1 || d.Header.Revision != 4 || len(d.PrevKvs) != 1 || string(d.PrevKvs[0].Value) != "v" {
		t.Fatalf("delete k: %+v %v", d, err)
	}
	// Re-creating starts a new generation.
	mustPut(t, s, "k", "w")
	kv = mustGet(t, s, "k")
	if kv.CreateRevision != 5 || kv.Version != 1 {
		t.Fatalf("recreated kv: %+v", kv)
	}
}

func TestPutErrors(t *testing.T) {
	ctx := context.Background()
	s, _ := newTest(t, Options{})
	mustPut(t, s, "exists", "v")
	big := strings.Repeat("x", maxRequestBytes)
	tests := []struct {
		name string
		req  *pb.PutRequest
		want error
	}{
		{"empty key", &pb.PutRequest{Value: []byte("v")}, ErrEmptyKey},
		{"ignore value with value", &pb.PutRequest{Key: []byte("exists"), Value: []byte("v"), IgnoreValue: true}, ErrValueProvided},
		{"ignore lease with lease", &pb.PutRequest{Key: []byte("exists"), Lease: 5, IgnoreLease: true}, ErrLeaseProvided},
		{"ignore value missing key", &pb.PutRequest{Key: []byte("nope"), IgnoreValue: true}, ErrKeyNotFound},
		{"ignore lease missing key", &pb.PutRequest{Key: []byte("nope"), IgnoreLease: true}, ErrKeyNotFound},
		{"unknown lease", &pb.PutRequest{Key: []byte("k"), Lease: 42}, ErrLeaseNotFound},
		{"value too large", &pb.PutRequest{Key: []byte("k"), Value: []byte(big)}, ErrValueTooLarge},
		{"key too large", &pb.PutRequest{Key: []byte(big)}, ErrKeyTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rev := s.Rev()
			_, err := s.Put(ctx, tc.req)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if s.Rev() != rev {
				t.Fatalf("failed put changed the revision")
			}
		})
	}
	// The limit is etcd's: just under 1.5 MiB passes.
	if _, err := s.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte(big[:maxRequestBytes-100])}); err != nil {
		t.Fatalf("put just under the limit: %v", err)
	}
	// ignore_value keeps the value; ignore_lease keeps the lease.
	r, err := s.Put(ctx, &pb.PutRequest{Key: []byte("exists"), IgnoreValue: true})
	if err != nil || string(mustGet(t, s, "exists").Value) != "v" {
		t.Fatalf("ignore_value put: %v %v", r, err)
	}
}

func TestRange(t *testing.T) {
	ctx := context.Background()
	s, _ := newTest(t, Options{})
	// revisions: a=2, b=3, c=4, d=5, then b again=6 (version 2)
	for _, k := range []string{"a", "b", "c", "d"} {
		mustPut(t, s, k, "val-"+k)
	}
	mustPut(t, s, "b", "zzz")
	tests := []struct {
		name  string
		req   *pb.RangeRequest
		keys  []string
		count int64
		more  bool
		err   error
	}{
		{"single", &pb.RangeRequest{Key: []byte("b")}, []string{"b"}, 1, false, nil},
		{"single missing", &pb.RangeRequest{Key: []byte("x")}, []string{}, 0, false, nil},
		{"range", &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("c")}, []string{"a", "b"}, 2, false, nil},
		{"from key", &pb.RangeRequest{Key: []byte("b"), RangeEnd: []byte{0}}, []string{"b", "c", "d"}, 3, false, nil},
		{"all", &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}}, []string{"a", "b", "c", "d"}, 4, false, nil},
		{"end before key", &pb.RangeRequest{Key: []byte("c"), RangeEnd: []byte("a")}, []string{}, 0, false, nil},
		{"limit", &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("z"), Limit: 2}, []string{"a", "b"}, 4, true, nil},
		{"limit exact", &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("z"), Limit: 4}, []string{"a", "b", "c", "d"}, 4, false, nil},
		{"count only", &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("z"), CountOnly: true}, []string{}, 4, false, nil},
		{"sort mod desc", &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("z"), SortOrder: pb.RangeRequest_DESCEND, SortTarget: pb.RangeRequest_MOD}, []string{"b", "d", "c", "a"}, 4, false, nil},
		{"sort value default asc", &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("z"), SortTarget: pb.RangeRequest_VALUE}, []string{"a", "c", "d", "b"}, 4, false, nil},
		{"sort key desc limit", &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("z"), SortOrder: pb.RangeRequest_DESCEND, Limit: 1}, []string{"d"}, 4, true, nil},
		{"min mod filter keeps count", &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("z"), MinModRevision: 5}, []string{"b", "d"}, 4, false, nil},
		{"max create filter", &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("z"), MaxCreateRevision: 3}, []string{"a", "b"}, 4, false, nil},
		{"historical", &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("z"), Revision: 3}, []string{"a", "b"}, 2, false, nil},
		{"before first write", &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("z"), Revision: 1}, []string{}, 0, false, nil},
		{"future", &pb.RangeRequest{Key: []byte("a"), Revision: 7}, nil, 0, false, ErrFutureRev},
		{"empty key", &pb.RangeRequest{}, nil, 0, false, ErrEmptyKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := s.Range(ctx, tc.req)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if err != nil {
				return
			}
			if got := keysOf(r.Kvs); !reflect.DeepEqual(got, tc.keys) {
				t.Fatalf("keys = %v, want %v", got, tc.keys)
			}
			if r.Count != tc.count || r.More != tc.more || r.Header.Revision != 6 {
				t.Fatalf("count=%d more=%v rev=%d, want %d %v 6", r.Count, r.More, r.Header.Revision, tc.count, tc.more)
			}
		})
	}
	r, _ := s.Range(ctx, &pb.RangeRequest{Key: []byte("b"), Revision: 3})
	if len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "val-b" || r.Kvs[0].Version != 1 {
		t.Fatalf("historical b: %+v", r.Kvs)
	}
	r, _ = s.Range(ctx, &pb.RangeRequest{Key: []byte("a"), KeysOnly: true})
	if len(r.Kvs) != 1 || r.Kvs[0].Value != nil {
		t.Fatalf("keys only: %+v", r.Kvs)
	}
	// Responses are the caller's: mutating one must not change the store.
	r.Kvs[0].ModRevision = 99
	r.Kvs[0].Version = 99
	if kv := mustGet(t, s, "a"); kv.ModRevision != 2 {
		t.Fatalf("store changed through a response: %+v", kv)
	}
}

func TestCompact(t *testing.T) {
	ctx := context.Background()
	s, _ := newTest(t, Options{})
	for i := 0; i < 5; i++ {
		mustPut(t, s, "k", string(rune('a'+i))) // revs 2..6
	}
	mustPut(t, s, "gone", "x")                                             // 7
	_, _ = s.DeleteRange(ctx, &pb.DeleteRangeRequest{Key: []byte("gone")}) // 8
	if _, err := s.Compact(ctx, &pb.CompactionRequest{Revision: 9}); !errors.Is(err, ErrFutureRev) {
		t.Fatalf("compact future: %v", err)
	}
	resp, err := s.Compact(ctx, &pb.CompactionRequest{Revision: 4})
	if err != nil || resp.Header.Revision != 8 || s.CompactRev() != 4 {
		t.Fatalf("compact 4: %+v %v", resp, err)
	}
	for _, rev := range []int64{4, 3} {
		if _, err := s.Compact(ctx, &pb.CompactionRequest{Revision: rev}); !errors.Is(err, ErrCompacted) {
			t.Fatalf("compact %d again: %v", rev, err)
		}
	}
	if _, err := s.Range(ctx, &pb.RangeRequest{Key: []byte("k"), Revision: 3}); !errors.Is(err, ErrCompacted) {
		t.Fatalf("range below compaction: %v", err)
	}
	r, err := s.Range(ctx, &pb.RangeRequest{Key: []byte("k"), Revision: 4})
	if err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "c" {
		t.Fatalf("range at compaction rev: %+v %v", r, err)
	}
	if _, err := s.Compact(ctx, &pb.CompactionRequest{Revision: 8}); err != nil {
		t.Fatal(err)
	}
	// Only the live version of k is left; the deleted key is gone.
	if ki := s.idx.get([]byte("k")); ki == nil || len(ki.revs) != 1 {
		t.Fatalf("k after compaction: %+v", ki)
	}
	if ki := s.idx.get([]byte("gone")); ki != nil {
		t.Fatalf("deleted key still indexed after compaction: %+v", ki.revs)
	}
	if kv := mustGet(t, s, "k"); kv == nil || kv.Version != 5 || kv.CreateRevision != 2 {
		t.Fatalf("k after compaction: %+v", kv)
	}
}

func TestAutoCompaction(t *testing.T) {
	s, _ := newTest(t, Options{HistoryLimit: 16})
	for i := 0; i < 100; i++ {
		mustPut(t, s, "k", "v")
	}
	if n := len(s.hist.entries); n < 16 || n > 18 {
		t.Fatalf("history holds %d revisions, want about 16", n)
	}
	if c := s.CompactRev(); c < s.Rev()-18 || c > s.Rev()-15 {
		t.Fatalf("compact rev %d with rev %d", c, s.Rev())
	}
	if ki := s.idx.get([]byte("k")); len(ki.revs) > 19 {
		t.Fatalf("index keeps %d versions", len(ki.revs))
	}
}
