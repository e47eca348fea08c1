package etcdcompat

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/protoadapt"
)

// op is one request of a differential table; it is sent over gRPC with
// the raw etcdserverpb client, and over HTTP as the JSON etcd's gateway
// accepts (the same message marshalled with OrigName).
type op struct {
	name string
	req  func(s *side, p string) protoadapt.MessageV1
}

// call sends m over gRPC.
func (s *side) call(m protoadapt.MessageV1) (protoadapt.MessageV1, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	switch r := m.(type) {
	case *pb.RangeRequest:
		return s.kv.Range(ctx, r)
	case *pb.PutRequest:
		return s.kv.Put(ctx, r)
	case *pb.DeleteRangeRequest:
		return s.kv.DeleteRange(ctx, r)
	case *pb.TxnRequest:
		return s.kv.Txn(ctx, r)
	case *pb.CompactionRequest:
		return s.kv.Compact(ctx, r)
	case *pb.LeaseGrantRequest:
		return s.lease.LeaseGrant(ctx, r)
	case *pb.LeaseRevokeRequest:
		return s.lease.LeaseRevoke(ctx, r)
	case *pb.LeaseTimeToLiveRequest:
		return s.lease.LeaseTimeToLive(ctx, r)
	}
	panic(fmt.Sprintf("no RPC for %T", m))
}

// httpPath is the gateway path of m's RPC.
func httpPath(m protoadapt.MessageV1) string {
	switch m.(type) {
	case *pb.RangeRequest:
		return "/v3/kv/range"
	case *pb.PutRequest:
		return "/v3/kv/put"
	case *pb.DeleteRangeRequest:
		return "/v3/kv/deleterange"
	case *pb.TxnRequest:
		return "/v3/kv/txn"
	case *pb.CompactionRequest:
		return "/v3/kv/compaction"
	case *pb.LeaseGrantRequest:
		return "/v3/lease/grant"
	case *pb.LeaseRevokeRequest:
		return "/v3/kv/lease/revoke"
	case *pb.LeaseTimeToLiveRequest:
		return "/v3/kv/lease/timetolive"
	}
	panic(fmt.Sprintf("no path for %T", m))
}

// runOps runs ops over gRPC and over HTTP, each transport in its own
// subtest with its own key prefix.
func runOps(t *testing.T, ops []op) {
	t.Run("grpc", func(t *testing.T) {
		p := keyPrefix(t)
		steps := make([]step, len(ops))
		for i, o := range ops {
			steps[i] = step{o.name, func(t *testing.T, s *side) string { return s.res(s.call(o.req(s, p))) }}
		}
		runDiff(t, steps)
	})
	t.Run("http", func(t *testing.T) {
		p := keyPrefix(t)
		steps := make([]step, len(ops))
		for i, o := range ops {
			steps[i] = step{o.name, func(t *testing.T, s *side) string {
				m := o.req(s, p)
				body, err := jsonpb.Marshal(m)
				if err != nil {
					t.Fatal(err)
				}
				return s.post(t, httpPath(m), string(body))
			}}
		}
		runDiff(t, steps)
	})
}

func put(k, v string) *pb.PutRequest { return &pb.PutRequest{Key: []byte(k), Value: []byte(v)} }

func reqPut(r *pb.PutRequest) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: r}}
}

func reqRange(r *pb.RangeRequest) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: r}}
}

func reqDel(r *pb.DeleteRangeRequest) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: r}}
}

func prefixEnd(p string) []byte {
	b := []byte(p)
	b[len(b)-1]++
	return b
}

func TestDiffKV(t *testing.T) {
	all := func(p string) *pb.RangeRequest { return &pb.RangeRequest{Key: []byte(p), RangeEnd: prefixEnd(p)} }
	ops := []op{
		{"put a", func(s *side, p string) protoadapt.MessageV1 { return put(p+"a", "1") }},
		{"put b", func(s *side, p string) protoadapt.MessageV1 { return put(p+"b", "5") }},
		{"put c", func(s *side, p string) protoadapt.MessageV1 { return put(p+"c", "3") }},
		{"put d", func(s *side, p string) protoadapt.MessageV1 { return put(p+"d", "4") }},
		{"put e", func(s *side, p string) protoadapt.MessageV1 { return put(p+"e", "2") }},
		{"put a prev_kv", func(s *side, p string) protoadapt.MessageV1 {
			r := put(p+"a", "6")
			r.PrevKv = true
			return r
		}},
		{"put new prev_kv", func(s *side, p string) protoadapt.MessageV1 {
			r := put(p+"f", "7")
			r.PrevKv = true
			return r
		}},
		{"get a", func(s *side, p string) protoadapt.MessageV1 { return &pb.RangeRequest{Key: []byte(p + "a")} }},
		{"get missing", func(s *side, p string) protoadapt.MessageV1 { return &pb.RangeRequest{Key: []byte(p + "zz")} }},
		{"range all", func(s *side, p string) protoadapt.MessageV1 { return all(p) }},
		{"range from key", func(s *side, p string) protoadapt.MessageV1 {
			return &pb.RangeRequest{Key: []byte(p + "d"), RangeEnd: []byte{0}, Limit: 3}
		}},
		{"range limit", func(s *side, p string) protoadapt.MessageV1 { r := all(p); r.Limit = 2; return r }},
		{"sort key desc", func(s *side, p string) protoadapt.MessageV1 {
			r := all(p)
			r.SortOrder, r.SortTarget = pb.RangeRequest_DESCEND, pb.RangeRequest_KEY
			return r
		}},
		{"sort value asc limit", func(s *side, p string) protoadapt.MessageV1 {
			r := all(p)
			r.SortOrder, r.SortTarget, r.Limit = pb.RangeRequest_ASCEND, pb.RangeRequest_VALUE, 3
			return r
		}},
		{"sort mod desc", func(s *side, p string) protoadapt.MessageV1 {
			r := all(p)
			r.SortOrder, r.SortTarget = pb.RangeRequest_DESCEND, pb.RangeRequest_MOD
			return r
		}},
		{"sort create asc", func(s *side, p string) protoadapt.MessageV1 {
			r := all(p)
			r.SortOrder, r.SortTarget = pb.RangeRequest_ASCEND, pb.RangeRequest_CREATE
			return r
		}},
		{"sort version desc", func(s *side, p string) protoadapt.MessageV1 {
			r := all(p)
			r.SortOrder, r.SortTarget = pb.RangeRequest_DESCEND, pb.RangeRequest_VERSION
			return r
		}},
		{"count only", func(s *side, p string) protoadapt.MessageV1 { r := all(p); r.CountOnly = true; return r }},
		{"keys only", func(s *side, p string) protoadapt.MessageV1 { r := all(p); r.KeysOnly = true; return r }},
		{"min/max mod rev", func(s *side, p string) protoadapt.MessageV1 {
			r := all(p)
			r.MinModRevision, r.MaxModRevision = s.rev(3), s.rev(5)
			return r
		}},
		{"min/max create rev", func(s *side, p string) protoadapt.MessageV1 {
			r := all(p)
			r.MinCreateRevision, r.MaxCreateRevision = s.rev(2), s.rev(4)
			return r
		}},
		{"historical", func(s *side, p string) protoadapt.MessageV1 { r := all(p); r.Revision = s.rev(2); return r }},
		{"historical count", func(s *side, p string) protoadapt.MessageV1 {
			r := all(p)
			r.Revision, r.CountOnly = s.rev(3), true
			return r
		}},
		{"future revision", func(s *side, p string) protoadapt.MessageV1 { r := all(p); r.Revision = s.rev(1000); return r }},
		{"delete b prev_kv", func(s *side, p string) protoadapt.MessageV1 {
			return &pb.DeleteRangeRequest{Key: []byte(p + "b"), PrevKv: true}
		}},
		{"delete c..e prev_kv", func(s *side, p string) protoadapt.MessageV1 {
			return &pb.DeleteRangeRequest{Key: []byte(p + "c"), RangeEnd: []byte(p + "e"), PrevKv: true}
		}},
		{"delete missing", func(s *side, p string) protoadapt.MessageV1 { return &pb.DeleteRangeRequest{Key: []byte(p + "zz")} }},
		{"txn mod equal success", func(s *side, p string) protoadapt.MessageV1 {
			return &pb.TxnRequest{
				Compare: []*pb.Compare{{Key: []byte(p + "a"), Target: pb.Compare_MOD, Result: pb.Compare_EQUAL,
					TargetUnion: &pb.Compare_ModRevision{ModRevision: s.rev(6)}}},
				Success: []*pb.RequestOp{reqPut(put(p+"g", "8")), reqRange(&pb.RangeRequest{Key: []byte(p + "a")})},
				Failure: []*pb.RequestOp{reqRange(&pb.RangeRequest{Key: []byte(p + "b")})},
			}
		}},
		{"txn compare failure", func(s *side, p string) protoadapt.MessageV1 {
			return &pb.TxnRequest{
				Compare: []*pb.Compare{
					{Key: []byte(p + "a"), Target: pb.Compare_VALUE, Result: pb.Compare_EQUAL, TargetUnion: &pb.Compare_Value{Value: []byte("6")}},
					{Key: []byte(p + "a"), Target: pb.Compare_VERSION, Result: pb.Compare_GREATER, TargetUnion: &pb.Compare_Version{Version: 5}},
				},
				Success: []*pb.RequestOp{reqPut(put(p+"h", "x"))},
				Failure: []*pb.RequestOp{reqDel(&pb.DeleteRangeRequest{Key: []byte(p + "g"), PrevKv: true}), reqRange(all(p))},
			}
		}},
		{"txn setnx create==0", func(s *side, p string) protoadapt.MessageV1 {
			return &pb.TxnRequest{
				Compare: []*pb.Compare{{Key: []byte(p + "n"), Target: pb.Compare_CREATE, Result: pb.Compare_EQUAL,
					TargetUnion: &pb.Compare_CreateRevision{CreateRevision: 0}}},
				Success: []*pb.RequestOp{reqPut(put(p+"n", "new"))},
			}
		}},
		{"txn compare range LESS", func(s *side, p string) protoadapt.MessageV1 {
			return &pb.TxnRequest{
				Compare: []*pb.Compare{{Key: []byte(p), RangeEnd: prefixEnd(p), Target: pb.Compare_MOD, Result: pb.Compare_LESS,
					TargetUnion: &pb.Compare_ModRevision{ModRevision: s.rev(100)}}},
				Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{
					Success: []*pb.RequestOp{reqPut(put(p+"nested", "1"))},
				}}}},
			}
		}},
		{"txn lease compare", func(s *side, p string) protoadapt.MessageV1 {
			return &pb.TxnRequest{
				Compare: []*pb.Compare{{Key: []byte(p + "a"), Target: pb.Compare_LEASE, Result: pb.Compare_NOT_EQUAL,
					TargetUnion: &pb.Compare_Lease{Lease: 0}}},
				Success: []*pb.RequestOp{reqPut(put(p+"i", "x"))},
				Failure: []*pb.RequestOp{reqPut(put(p+"j", "y"))},
			}
		}},
		{"range after txns", func(s *side, p string) protoadapt.MessageV1 { return all(p) }},
	}
	runOps(t, ops)
}

func TestDiffKVErrors(t *testing.T) {
	big := strings.Repeat("v", 1600*1024)
	huge := strings.Repeat("v", 2100*1024)
	many := func(p string, n int) []*pb.RequestOp {
		ops := make([]*pb.RequestOp, n)
		for i := range ops {
			ops[i] = reqPut(put(fmt.Sprintf("%sk%03d", p, i), "v"))
		}
		return ops
	}
	ops := []op{
		{"range empty key", func(s *side, p string) protoadapt.MessageV1 { return &pb.RangeRequest{} }},
		{"put empty key", func(s *side, p string) protoadapt.MessageV1 { return &pb.PutRequest{Value: []byte("v")} }},
		{"delete empty key", func(s *side, p string) protoadapt.MessageV1 { return &pb.DeleteRangeRequest{} }},
		{"put big value", func(s *side, p string) protoadapt.MessageV1 { return put(p+"big", big) }},
		{"put huge value", func(s *side, p string) protoadapt.MessageV1 { return put(p+"huge", huge) }},
		{"put big key", func(s *side, p string) protoadapt.MessageV1 { return put(p+big, "v") }},
		{"put unknown lease", func(s *side, p string) protoadapt.MessageV1 {
			r := put(p+"l", "v")
			r.Lease = 123456789
			return r
		}},
		{"ignore_value with value", func(s *side, p string) protoadapt.MessageV1 {
			r := put(p+"iv", "v")
			r.IgnoreValue = true
			return r
		}},
		{"ignore_value missing key", func(s *side, p string) protoadapt.MessageV1 {
			return &pb.PutRequest{Key: []byte(p + "iv"), IgnoreValue: true}
		}},
		{"ignore_lease with lease", func(s *side, p string) protoadapt.MessageV1 {
			r := put(p+"il", "v")
			r.IgnoreLease, r.Lease = true, 5
			return r
		}},
		{"txn 128 ops", func(s *side, p string) protoadapt.MessageV1 { return &pb.TxnRequest{Success: many(p, 128)} }},
		{"txn 129 ops", func(s *side, p string) protoadapt.MessageV1 { return &pb.TxnRequest{Success: many(p, 129)} }},
		{"txn duplicate put", func(s *side, p string) protoadapt.MessageV1 {
			return &pb.TxnRequest{Success: []*pb.RequestOp{reqPut(put(p+"d", "1")), reqPut(put(p+"d", "2"))}}
		}},
		{"txn put in deleted range", func(s *side, p string) protoadapt.MessageV1 {
			return &pb.TxnRequest{Success: []*pb.RequestOp{
				reqDel(&pb.DeleteRangeRequest{Key: []byte(p), RangeEnd: prefixEnd(p)}), reqPut(put(p+"d", "1"))}}
		}},
		{"txn nested duplicate", func(s *side, p string) protoadapt.MessageV1 {
			nested := &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{
				Success: []*pb.RequestOp{reqPut(put(p+"d", "1"))}, Failure: []*pb.RequestOp{reqPut(put(p+"d", "2"))}}}}
			return &pb.TxnRequest{Success: []*pb.RequestOp{nested, reqPut(put(p+"d", "3"))}}
		}},
		{"txn nested then/else same key ok", func(s *side, p string) protoadapt.MessageV1 {
			nested := &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{
				Success: []*pb.RequestOp{reqPut(put(p+"d", "1"))}, Failure: []*pb.RequestOp{reqPut(put(p+"d", "2"))}}}}
			return &pb.TxnRequest{Success: []*pb.RequestOp{nested}}
		}},
		{"txn empty compare key", func(s *side, p string) protoadapt.MessageV1 {
			return &pb.TxnRequest{Compare: []*pb.Compare{{Target: pb.Compare_VERSION}}}
		}},
		{"txn empty op", func(s *side, p string) protoadapt.MessageV1 {
			return &pb.TxnRequest{Success: []*pb.RequestOp{{}}}
		}},
		{"txn big put", func(s *side, p string) protoadapt.MessageV1 {
			return &pb.TxnRequest{Success: []*pb.RequestOp{reqPut(put(p+"tb", big))}}
		}},
		{"compact future", func(s *side, p string) protoadapt.MessageV1 { return &pb.CompactionRequest{Revision: s.rev(1000)} }},
		{"put before compaction", func(s *side, p string) protoadapt.MessageV1 { return put(p+"c", "1") }},
		{"put after", func(s *side, p string) protoadapt.MessageV1 { return put(p+"c", "2") }},
		{"compact", func(s *side, p string) protoadapt.MessageV1 { return &pb.CompactionRequest{Revision: s.rev(3)} }},
		{"compact again", func(s *side, p string) protoadapt.MessageV1 { return &pb.CompactionRequest{Revision: s.rev(3)} }},
		{"compact older", func(s *side, p string) protoadapt.MessageV1 { return &pb.CompactionRequest{Revision: s.rev(2)} }},
		{"range compacted", func(s *side, p string) protoadapt.MessageV1 {
			return &pb.RangeRequest{Key: []byte(p + "c"), Revision: s.rev(2)}
		}},
		{"range at compact rev", func(s *side, p string) protoadapt.MessageV1 {
			return &pb.RangeRequest{Key: []byte(p + "c"), Revision: s.rev(3)}
		}},
		{"lease revoke unknown", func(s *side, p string) protoadapt.MessageV1 { return &pb.LeaseRevokeRequest{ID: 987654321} }},
		{"lease ttl unknown", func(s *side, p string) protoadapt.MessageV1 { return &pb.LeaseTimeToLiveRequest{ID: 987654321} }},
		{"lease grant too large", func(s *side, p string) protoadapt.MessageV1 { return &pb.LeaseGrantRequest{TTL: 9000000001} }},
	}
	runOps(t, ops)
}
