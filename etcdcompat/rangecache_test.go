package etcdcompat

import (
	"context"
	"fmt"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// TestRangeCache checks the reply cache at the KV service: a large range
// read twice at one revision is served from the cache, any write makes it
// stale, historical reads and small replies are never cached, and a
// disabled cache caches nothing.
func TestRangeCache(t *testing.T) {
	c := startCompat(t, Options{})
	kv := &kvServer{s: c.srv}
	ctx := context.Background()
	p := "/big/"
	val := strings.Repeat("x", 200)
	for i := 0; i < 500; i++ {
		if _, err := c.st.Put(ctx, put(fmt.Sprintf("%s%04d", p, i), val)); err != nil {
			t.Fatal(err)
		}
	}
	req := &pb.RangeRequest{Key: []byte(p), RangeEnd: prefixEnd(p)}
	r1, err := kv.Range(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	r2, _ := kv.Range(ctx, req)
	if r1 != r2 {
		t.Fatal("second read at the same revision was not served from the cache")
	}
	enc := (codec{rc: c.srv.rc})
	b1, _ := enc.Marshal(r1)
	fresh, _ := (codec{}).Marshal(r1)
	if string(b1) != string(fresh) {
		t.Fatal("cached bytes differ from the reply's encoding")
	}
	if _, err := c.st.Put(ctx, put(p+"new", "v")); err != nil {
		t.Fatal(err)
	}
	r3, _ := kv.Range(ctx, req)
	if r3 == r1 || len(r3.Kvs) != 501 || r3.Header.Revision != r1.Header.Revision+1 {
		t.Fatalf("after a write: same=%v kvs=%d rev %d -> %d", r3 == r1, len(r3.Kvs), r1.Header.Revision, r3.Header.Revision)
	}
	if enc.Marshal(r1); c.srv.rc.encoded(r1) != nil {
		t.Fatal("the stale reply is still cached")
	}
	hist := &pb.RangeRequest{Key: []byte(p), RangeEnd: prefixEnd(p), Revision: r1.Header.Revision}
	h1, _ := kv.Range(ctx, hist)
	h2, _ := kv.Range(ctx, hist)
	if h1 == h2 || len(h1.Kvs) != 500 {
		t.Fatalf("historical read cached (%v) or wrong (%d kvs)", h1 == h2, len(h1.Kvs))
	}
	small := &pb.RangeRequest{Key: []byte(p + "0001")}
	s1, _ := kv.Range(ctx, small)
	s2, _ := kv.Range(ctx, small)
	if s1 == s2 {
		t.Fatal("small reply cached")
	}

	off, err := New(Options{Store: c.st, RangeCacheBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer off.Close()
	o1, _ := (&kvServer{s: off}).Range(ctx, req)
	o2, _ := (&kvServer{s: off}).Range(ctx, req)
	if o1 == o2 {
		t.Fatal("disabled cache served a cached reply")
	}
}

// TestDiffLargeRange compares large prefix reads over gRPC and HTTP
// (served from the reply caches on etcdcompat) with etcd's, before and
// after writes.
func TestDiffLargeRange(t *testing.T) {
	p := keyPrefix(t)
	val := strings.Repeat("v", 150)
	rng := func(t *testing.T, s *side) string {
		return s.res(s.call(&pb.RangeRequest{Key: []byte(p), RangeEnd: prefixEnd(p)})) + "\n" +
			s.post(t, "/v3/kv/range", readdirBody(p, string(prefixEnd(p))))
	}
	runDiff(t, []step{
		{"load", func(t *testing.T, s *side) string {
			for i := 0; i < 600; i += 100 {
				var ops []*pb.RequestOp
				for j := i; j < i+100; j++ {
					ops = append(ops, reqPut(put(fmt.Sprintf("%s%04d", p, j), val)))
				}
				mustRes(t, s, s.res(s.call(&pb.TxnRequest{Success: ops})))
			}
			return "ok"
		}},
		{"range", rng},
		{"range again", rng},
		{"write", func(t *testing.T, s *side) string { return s.res(s.call(put(p+"0007", "changed"))) }},
		{"range after write", rng},
		{"range again after write", rng},
	})
}
