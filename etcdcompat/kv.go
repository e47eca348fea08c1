package etcdcompat

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// raftHeaderSize approximates the bytes etcd adds around a write when it
// wraps it into an InternalRaftRequest (header with a request id and the
// field tags) before comparing with --max-request-bytes.
const raftHeaderSize = 16

// kvServer is etcd's KV service over the store.
type kvServer struct {
	pb.UnimplementedKVServer
	s *Server
}

// Range validates r as etcd does and answers from the store.
func (k *kvServer) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	if err := checkRangeRequest(r); err != nil {
		return nil, err
	}
	var ckey string
	if k.s.rc.cacheable(r) {
		b, err := r.Marshal()
		if err == nil {
			ckey = string(b)
			if resp := k.s.rc.get(ckey, k.s.st.Rev()); resp != nil {
				return resp, nil
			}
		}
	}
	resp, err := k.s.st.Range(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	resp.Header = k.s.hdr.fill(resp.Header)
	if ckey != "" {
		k.s.rc.put(ckey, resp)
	}
	return resp, nil
}

// Put validates r as etcd does and writes it.
func (k *kvServer) Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	if err := checkPutRequest(r); err != nil {
		return nil, err
	}
	if r.Size()+raftHeaderSize > k.s.opts.MaxRequestBytes {
		return nil, rpctypes.ErrGRPCRequestTooLarge
	}
	resp, err := k.s.st.Put(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	resp.Header = k.s.hdr.fill(resp.Header)
	return resp, nil
}

// DeleteRange validates r as etcd does and deletes the range.
func (k *kvServer) DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	if err := checkDeleteRequest(r); err != nil {
		return nil, err
	}
	resp, err := k.s.st.DeleteRange(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	resp.Header = k.s.hdr.fill(resp.Header)
	return resp, nil
}

// Txn validates r as etcd does (operation count, keys, overlapping writes)
// and runs it atomically in the store.
func (k *kvServer) Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	if err := checkTxnRequest(r, k.s.opts.MaxTxnOps); err != nil {
		return nil, err
	}
	if _, err := checkIntervals(r.Success); err != nil {
		return nil, err
	}
	if _, err := checkIntervals(r.Failure); err != nil {
		return nil, err
	}
	if !isTxnReadonly(r) && r.Size()+raftHeaderSize > k.s.opts.MaxRequestBytes {
		return nil, rpctypes.ErrGRPCRequestTooLarge
	}
	resp, err := k.s.st.Txn(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	resp.Header = k.s.hdr.fill(resp.Header)
	return resp, nil
}

// Compact compacts the store's history up to r.Revision.
func (k *kvServer) Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	resp, err := k.s.st.Compact(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	resp.Header = k.s.hdr.fill(resp.Header)
	return resp, nil
}

// The checks below are etcd 3.5's v3rpc/key.go checks, in etcd's order, so
// that the first error reported for a bad request is etcd's.

func checkRangeRequest(r *pb.RangeRequest) error {
	if len(r.Key) == 0 {
		return rpctypes.ErrGRPCEmptyKey
	}
	return nil
}

func checkPutRequest(r *pb.PutRequest) error {
	if len(r.Key) == 0 {
		return rpctypes.ErrGRPCEmptyKey
	}
	if r.IgnoreValue && len(r.Value) != 0 {
		return rpctypes.ErrGRPCValueProvided
	}
	if r.IgnoreLease && r.Lease != 0 {
		return rpctypes.ErrGRPCLeaseProvided
	}
	return nil
}

func checkDeleteRequest(r *pb.DeleteRangeRequest) error {
	if len(r.Key) == 0 {
		return rpctypes.ErrGRPCEmptyKey
	}
	return nil
}

func checkTxnRequest(r *pb.TxnRequest, maxTxnOps int) error {
	opc := len(r.Compare)
	if opc < len(r.Success) {
		opc = len(r.Success)
	}
	if opc < len(r.Failure) {
		opc = len(r.Failure)
	}
	if opc > maxTxnOps {
		return rpctypes.ErrGRPCTooManyOps
	}
	for _, c := range r.Compare {
		if len(c.Key) == 0 {
			return rpctypes.ErrGRPCEmptyKey
		}
	}
	for _, u := range r.Success {
		if err := checkRequestOp(u, maxTxnOps-opc); err != nil {
			return err
		}
	}
	for _, u := range r.Failure {
		if err := checkRequestOp(u, maxTxnOps-opc); err != nil {
			return err
		}
	}
	return nil
}

func checkRequestOp(u *pb.RequestOp, maxTxnOps int) error {
	switch uv := u.Request.(type) {
	case *pb.RequestOp_RequestRange:
		return checkRangeRequest(uv.RequestRange)
	case *pb.RequestOp_RequestPut:
		return checkPutRequest(uv.RequestPut)
	case *pb.RequestOp_RequestDeleteRange:
		return checkDeleteRequest(uv.RequestDeleteRange)
	case *pb.RequestOp_RequestTxn:
		return checkTxnRequest(uv.RequestTxn, maxTxnOps)
	default:
		// An empty op: etcd answers "key not found".
		return rpctypes.ErrGRPCKeyNotFound
	}
}

// writeSet is what one list of txn operations writes: the keys it puts and
// the key ranges it deletes, including those of nested txns.
type writeSet struct {
	puts map[string]struct{}
	dels []keyRange
}

// keyRange is [start, end) of a delete, or the single key start when end is
// empty. As in etcd's check, an end of "\x00" ("every key from start") is
// compared as a plain byte string, so it matches almost nothing.
type keyRange struct{ start, end string }

func (r keyRange) has(k string) bool {
	if r.end == "" {
		return k == r.start
	}
	return r.start <= k && k < r.end
}

func (w *writeSet) deletes(k string) bool {
	for _, r := range w.dels {
		if r.has(k) {
			return true
		}
	}
	return false
}

// checkIntervals rejects, with etcd's "duplicate key given in txn request",
// a branch that puts the same key twice or puts a key it also deletes.
// Nested txns are folded in one after the other: a nested txn's puts are
// checked against the deletes of this level and of the nested txns before
// it; the then and else branches of one nested txn may put the same key.
func checkIntervals(ops []*pb.RequestOp) (*writeSet, error) {
	w := &writeSet{puts: make(map[string]struct{})}
	for _, op := range ops {
		if d, ok := op.Request.(*pb.RequestOp_RequestDeleteRange); ok && d.RequestDeleteRange != nil {
			w.dels = append(w.dels, keyRange{string(d.RequestDeleteRange.Key), string(d.RequestDeleteRange.RangeEnd)})
		}
	}
	for _, op := range ops {
		t, ok := op.Request.(*pb.RequestOp_RequestTxn)
		if !ok || t.RequestTxn == nil {
			continue
		}
		then, err := checkIntervals(t.RequestTxn.Success)
		if err != nil {
			return nil, err
		}
		els, err := checkIntervals(t.RequestTxn.Failure)
		if err != nil {
			return nil, err
		}
		for k := range then.puts {
			if _, dup := w.puts[k]; dup || w.deletes(k) {
				return nil, rpctypes.ErrGRPCDuplicateKey
			}
			w.puts[k] = struct{}{}
		}
		for k := range els.puts {
			_, inThen := then.puts[k]
			if _, dup := w.puts[k]; (dup && !inThen) || w.deletes(k) {
				return nil, rpctypes.ErrGRPCDuplicateKey
			}
			w.puts[k] = struct{}{}
		}
		w.dels = append(w.dels, then.dels...)
		w.dels = append(w.dels, els.dels...)
	}
	for _, op := range ops {
		p, ok := op.Request.(*pb.RequestOp_RequestPut)
		if !ok || p.RequestPut == nil {
			continue
		}
		k := string(p.RequestPut.Key)
		if _, dup := w.puts[k]; dup || w.deletes(k) {
			return nil, rpctypes.ErrGRPCDuplicateKey
		}
		w.puts[k] = struct{}{}
	}
	return w, nil
}

// isTxnReadonly reports whether r only reads; etcd serves such txns
// without the write-size limit.
func isTxnReadonly(r *pb.TxnRequest) bool {
	for _, ops := range [][]*pb.RequestOp{r.Success, r.Failure} {
		for _, u := range ops {
			switch v := u.Request.(type) {
			case *pb.RequestOp_RequestRange:
			case *pb.RequestOp_RequestTxn:
				if !isTxnReadonly(v.RequestTxn) {
					return false
				}
			default:
				return false
			}
		}
	}
	return true
}
