package store

import (
	"context"
	"errors"
	"fmt"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// TestBulkTxn: BulkTxn applies more than etcd's 128 operations at one
// revision, where Txn refuses them; a bad object still refuses it whole.
func TestBulkTxn(t *testing.T) {
	s, err := New(Options{Decoder: func(key, value []byte) (any, error) {
		if string(value) == "bad" {
			return nil, errors.New("bad value")
		}
		return nil, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	var ops []*pb.RequestOp
	for i := 0; i < 1000; i++ {
		ops = append(ops, &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{
			Key: []byte(fmt.Sprintf("/k/%04d", i)), Value: make([]byte, 2048)}}})
	}
	if _, err := s.Txn(ctx, &pb.TxnRequest{Success: ops}); !errors.Is(err, ErrTooManyOps) {
		t.Fatalf("Txn with 1000 ops: %v", err)
	}
	bt := s.(interface {
		BulkTxn(context.Context, *pb.TxnRequest) (*pb.TxnResponse, error)
	})
	before := s.Rev()
	r, err := bt.BulkTxn(ctx, &pb.TxnRequest{Success: ops})
	if err != nil {
		t.Fatal(err)
	}
	if r.Header.Revision != before+1 {
		t.Fatalf("revision %d, want %d (one revision for the whole txn)", r.Header.Revision, before+1)
	}
	rr, err := s.Range(ctx, &pb.RangeRequest{Key: []byte("/k/"), RangeEnd: []byte("/k0"), CountOnly: true})
	if err != nil || rr.Count != 1000 {
		t.Fatalf("count %v %v", rr, err)
	}
	bad := append(ops[:10:10], &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("/k/x"), Value: []byte("bad")}}})
	if _, err := bt.BulkTxn(ctx, &pb.TxnRequest{Success: bad}); err == nil {
		t.Fatal("bad object accepted")
	}
	if s.Rev() != before+1 {
		t.Fatalf("a refused bulk txn moved the revision")
	}
}
