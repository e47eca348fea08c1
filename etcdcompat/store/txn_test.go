package store

import (
	"context"
	"errors"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

func opPut(k, v string) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(k), Value: []byte(v)}}}
}

func opDel(k, end string) *pb.RequestOp {
	r := &pb.DeleteRangeRequest{Key: []byte(k)}
	if end != "" {
		r.RangeEnd = []byte(end)
	}
	return &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: r}}
}

func opGet(k string) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte(k)}}}
}

func opTxn(t *pb.TxnRequest) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: t}}
}

func cmpVersion(k string, r pb.Compare_CompareResult, v int64) *pb.Compare {
	return &pb.Compare{Key: []byte(k), Target: pb.Compare_VERSION, Result: r, TargetUnion: &pb.Compare_Version{Version: v}}
}

func cmpValue(k, end string, r pb.Compare_CompareResult, v string) *pb.Compare {
	c := &pb.Compare{Key: []byte(k), Target: pb.Compare_VALUE, Result: r, TargetUnion: &pb.Compare_Value{Value: []byte(v)}}
	if end != "" {
		c.RangeEnd = []byte(end)
	}
	return c
}

func TestTxnCompares(t *testing.T) {
	ctx := context.Background()
	s, _ := newTest(t, Options{})
	mustPut(t, s, "a", "1") // 2
	mustPut(t, s, "b", "2") // 3
	mustPut(t, s, "b", "3") // 4
	tests := []struct {
		name string
		cmp  *pb.Compare
		want bool
	}{
		{"version equal", cmpVersion("b", pb.Compare_EQUAL, 2), true},
		{"version greater", cmpVersion("b", pb.Compare_GREATER, 2), false},
		{"missing key version 0", cmpVersion("zz", pb.Compare_EQUAL, 0), true},
		{"missing key value always fails", cmpValue("zz", "", pb.Compare_NOT_EQUAL, "x"), false},
		{"value less", cmpValue("a", "", pb.Compare_LESS, "2"), true},
		{"value over range all must match", cmpValue("a", "c", pb.Compare_GREATER, "1"), false},
		{"value over range ok", cmpValue("a", "c", pb.Compare_GREATER, "0"), true},
		{"create rev", &pb.Compare{Key: []byte("b"), Target: pb.Compare_CREATE, Result: pb.Compare_EQUAL, TargetUnion: &pb.Compare_CreateRevision{CreateRevision: 3}}, true},
		{"mod rev not equal", &pb.Compare{Key: []byte("b"), Target: pb.Compare_MOD, Result: pb.Compare_NOT_EQUAL, TargetUnion: &pb.Compare_ModRevision{ModRevision: 4}}, false},
		{"mod rev of missing is 0", &pb.Compare{Key: []byte("zz"), Target: pb.Compare_MOD, Result: pb.Compare_EQUAL, TargetUnion: &pb.Compare_ModRevision{ModRevision: 0}}, true},
		{"lease 0", &pb.Compare{Key: []byte("a"), Target: pb.Compare_LEASE, Result: pb.Compare_EQUAL, TargetUnion: &pb.Compare_Lease{Lease: 0}}, true},
		{"all keys from a version > 0", &pb.Compare{Key: []byte("a"), RangeEnd: []byte{0}, Target: pb.Compare_VERSION, Result: pb.Compare_GREATER, TargetUnion: &pb.Compare_Version{Version: 0}}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := s.Txn(ctx, &pb.TxnRequest{Compare: []*pb.Compare{tc.cmp}, Success: []*pb.RequestOp{opGet("a")}, Failure: []*pb.RequestOp{opGet("b")}})
			if err != nil {
				t.Fatal(err)
			}
			if r.Succeeded != tc.want {
				t.Fatalf("succeeded = %v, want %v", r.Succeeded, tc.want)
			}
			if r.Header.Revision != 4 || s.Rev() != 4 {
				t.Fatalf("read-only txn changed revision: %d", r.Header.Revision)
			}
		})
	}
}

func TestTxnApply(t *testing.T) {
	ctx := context.Background()
	s, _ := newTest(t, Options{})
	mustPut(t, s, "x", "old") // 2
	// One revision for every op; ranges see earlier writes of the txn;
	// sub-responses carry only a revision; nested txns pick their branch.
	r, err := s.Txn(ctx, &pb.TxnRequest{
		Compare: []*pb.Compare{cmpValue("x", "", pb.Compare_EQUAL, "old")},
		Success: []*pb.RequestOp{
			opGet("y"),
			opPut("y", "1"),
			opGet("y"),
			opDel("x", ""),
			opTxn(&pb.TxnRequest{
				Compare: []*pb.Compare{cmpVersion("y", pb.Compare_EQUAL, 0)}, // evaluated before the txn: true
				Success: []*pb.RequestOp{opPut("z", "nested")},
				Failure: []*pb.RequestOp{opPut("w", "no")},
			}),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Succeeded || r.Header.Revision != 3 || s.Rev() != 3 {
		t.Fatalf("txn: succeeded=%v rev=%d store rev=%d", r.Succeeded, r.Header.Revision, s.Rev())
	}
	rs := r.Responses
	if g := rs[0].GetResponseRange(); len(g.Kvs) != 0 || g.Header.Revision != 2 {
		t.Fatalf("range before put: %+v", g)
	}
	if p := rs[1].GetResponsePut(); p.Header.Revision != 3 {
		t.Fatalf("put: %+v", p)
	}
	if g := rs[2].GetResponseRange(); len(g.Kvs) != 1 || string(g.Kvs[0].Value) != "1" || g.Header.Revision != 3 {
		t.Fatalf("range after put: %+v", g)
	}
	if d := rs[3].GetResponseDeleteRange(); d.Deleted != 1 || d.Header.Revision != 3 {
		t.Fatalf("delete: %+v", d)
	}
	nested := rs[4].GetResponseTxn()
	if !nested.Succeeded || nested.Header.Revision != 0 || len(nested.Responses) != 1 {
		t.Fatalf("nested: %+v", nested)
	}
	for k, want := range map[string]int64{"y": 3, "z": 3} {
		if kv := mustGet(t, s, k); kv == nil || kv.ModRevision != want {
			t.Fatalf("%s after txn: %+v", k, kv)
		}
	}
	if mustGet(t, s, "x") != nil || mustGet(t, s, "w") != nil {
		t.Fatal("x should be deleted and w never written")
	}
	// A txn whose ops change nothing keeps the revision.
	r, err = s.Txn(ctx, &pb.TxnRequest{Success: []*pb.RequestOp{opDel("nothing", "")}})
	if err != nil || r.Header.Revision != 3 || s.Rev() != 3 {
		t.Fatalf("no-op txn: %+v %v", r, err)
	}
}

func TestTxnErrors(t *testing.T) {
	ctx := context.Background()
	s, _ := newTest(t, Options{})
	mustPut(t, s, "k", "v")
	many := make([]*pb.RequestOp, maxTxnOps+1)
	for i := range many {
		many[i] = opGet("k")
	}
	tests := []struct {
		name string
		txn  *pb.TxnRequest
		want error
	}{
		{"too many ops", &pb.TxnRequest{Success: many}, ErrTooManyOps},
		{"max ops ok", &pb.TxnRequest{Success: many[:maxTxnOps]}, nil},
		{"nested ops count against the limit", &pb.TxnRequest{Success: []*pb.RequestOp{opTxn(&pb.TxnRequest{Success: many[:maxTxnOps]})}}, ErrTooManyOps},
		{"duplicate put", &pb.TxnRequest{Success: []*pb.RequestOp{opPut("a", "1"), opPut("a", "2")}}, ErrDuplicateKey},
		{"put inside deleted range", &pb.TxnRequest{Success: []*pb.RequestOp{opDel("a", "c"), opPut("b", "1")}}, ErrDuplicateKey},
		{"put in nested txn and outer", &pb.TxnRequest{Success: []*pb.RequestOp{opPut("a", "1"), opTxn(&pb.TxnRequest{Success: []*pb.RequestOp{opPut("a", "2")}})}}, ErrDuplicateKey},
		{"same key in then and else is fine", &pb.TxnRequest{Success: []*pb.RequestOp{opTxn(&pb.TxnRequest{Success: []*pb.RequestOp{opPut("a", "1")}, Failure: []*pb.RequestOp{opPut("a", "2")}})}}, nil},
		{"overlapping deletes are fine", &pb.TxnRequest{Success: []*pb.RequestOp{opDel("a", "c"), opDel("b", "d")}}, nil},
		{"empty compare key", &pb.TxnRequest{Compare: []*pb.Compare{{}}}, ErrEmptyKey},
		{"empty op", &pb.TxnRequest{Success: []*pb.RequestOp{{}}}, ErrKeyNotFound},
		{"empty put key", &pb.TxnRequest{Success: []*pb.RequestOp{opPut("", "v")}}, ErrEmptyKey},
		{"unknown lease", &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("a"), Lease: 7}}}}}, ErrLeaseNotFound},
		{"ignore value of missing key", &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("nope"), IgnoreValue: true}}}}}, ErrKeyNotFound},
		{"future range revision", &pb.TxnRequest{Success: []*pb.RequestOp{opPut("a", "1"), {Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("a"), Revision: 100}}}}}, ErrFutureRev},
		{"unchosen branch is not checked", &pb.TxnRequest{Compare: []*pb.Compare{cmpVersion("k", pb.Compare_EQUAL, 1)}, Failure: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("a"), Lease: 7}}}}}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := s.Rev()
			_, err := s.Txn(ctx, tc.txn)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if err != nil && s.Rev() != before {
				t.Fatal("failed txn changed the revision")
			}
		})
	}
}
