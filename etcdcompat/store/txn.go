package store

import (
	"bytes"
	"context"
	"math"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// maxTxnOps is etcd's default --max-txn-ops.
const maxTxnOps = 128

// Txn implements Store with etcd's applier semantics: compares pick a
// branch (recursively for nested txns), every request on the chosen path
// is checked, and only then are the operations applied, all at one
// revision. A txn without puts or deletes is served under the read lock.
func (s *memStore) Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	return s.txn(r, maxTxnOps, true)
}

// BulkTxn is Txn without etcd's request limits (operation count and
// request size): in-process config sources (the xDS translation) apply a
// whole push as one transaction, so it lands at one revision and the data
// plane never sees half of it. It is not reachable through the etcd
// emulation, whose clients keep etcd's limits.
func (s *memStore) BulkTxn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	return s.txn(r, math.MaxInt32, false)
}

func (s *memStore) txn(r *pb.TxnRequest, maxOps int, limitSize bool) (*pb.TxnResponse, error) {
	if err := checkTxn(r, maxOps); err != nil {
		return nil, err
	}
	if _, _, err := checkIntervals(r.Success); err != nil {
		return nil, err
	}
	if _, _, err := checkIntervals(r.Failure); err != nil {
		return nil, err
	}
	if isTxnReadonly(r) {
		return s.readTxn(r)
	}
	if limitSize {
		if err := checkSize(&pb.InternalRaftRequest{Txn: r}, ErrRequestTooLarge); err != nil {
			return nil, err
		}
	}

	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.isClosed() {
		return nil, ErrClosed
	}
	// Under wmu nothing else writes: the index can be read without mu.
	path := s.compareToPath(r)
	if err := s.checkRequests(r, path, s.checkPutOp); err != nil {
		return nil, err
	}
	if err := s.checkRequests(r, path, s.checkRangeOp); err != nil {
		return nil, err
	}
	preps := make(map[*pb.PutRequest]preparedPut)
	if err := s.checkRequests(r, path, func(op *pb.RequestOp) error {
		p := op.GetRequestPut()
		if p == nil {
			return nil
		}
		dp, err := s.preparePut(p)
		if err != nil {
			return err
		}
		preps[p] = dp
		return nil
	}); err != nil {
		return nil, err
	}

	w := s.beginWrite()
	resp, _ := newTxnResp(r, path)
	if _, err := w.applyTxn(r, path, resp, preps); err != nil {
		// Unreachable: every request on the path was checked above.
		s.log.Error("store: txn failed after checks", "err", err)
	}
	resp.Header.Revision = w.readRev()
	w.commit()
	return resp, nil
}

func (s *memStore) readTxn(r *pb.TxnRequest) (*pb.TxnResponse, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	path := s.compareToPath(r)
	if err := s.checkRequests(r, path, s.checkRangeOp); err != nil {
		return nil, err
	}
	resp, _ := newTxnResp(r, path)
	w := &writeTxn{s: s, begin: s.rev}
	if _, err := w.applyTxn(r, path, resp, nil); err != nil {
		return nil, err
	}
	resp.Header.Revision = s.rev
	return resp, nil
}

func isTxnReadonly(r *pb.TxnRequest) bool {
	for _, u := range r.Success {
		if u.GetRequestRange() == nil {
			return false
		}
	}
	for _, u := range r.Failure {
		if u.GetRequestRange() == nil {
			return false
		}
	}
	return true
}

// newTxnResp allocates the response skeleton for the chosen path.
func newTxnResp(rt *pb.TxnRequest, path []bool) (*pb.TxnResponse, int) {
	reqs := rt.Success
	if !path[0] {
		reqs = rt.Failure
	}
	count := 0
	resps := make([]*pb.ResponseOp, len(reqs))
	resp := &pb.TxnResponse{Responses: resps, Succeeded: path[0], Header: &pb.ResponseHeader{}}
	for i, req := range reqs {
		switch tv := req.Request.(type) {
		case *pb.RequestOp_RequestRange:
			resps[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseRange{}}
		case *pb.RequestOp_RequestPut:
			resps[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponsePut{}}
		case *pb.RequestOp_RequestDeleteRange:
			resps[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseDeleteRange{}}
		case *pb.RequestOp_RequestTxn:
			sub, n := newTxnResp(tv.RequestTxn, path[1:])
			resps[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseTxn{ResponseTxn: sub}}
			path = path[1+n:]
			count += n + 1
		}
	}
	return resp, count
}

// compareToPath evaluates the compares of rt and of every nested txn on
// the chosen branches, depth first, against the current state.
func (s *memStore) compareToPath(rt *pb.TxnRequest) []bool {
	path := make([]bool, 1)
	ops := rt.Success
	if path[0] = s.applyCompares(rt.Compare); !path[0] {
		ops = rt.Failure
	}
	for _, op := range ops {
		tv, ok := op.Request.(*pb.RequestOp_RequestTxn)
		if !ok || tv.RequestTxn == nil {
			continue
		}
		path = append(path, s.compareToPath(tv.RequestTxn)...)
	}
	return path
}

func (s *memStore) applyCompares(cmps []*pb.Compare) bool {
	for _, c := range cmps {
		if !s.applyCompare(c) {
			return false
		}
	}
	return true
}

// applyCompare is etcd's: over a range every live key must satisfy the
// compare; an empty range compares a zero KeyValue, except VALUE which
// then always fails.
func (s *memStore) applyCompare(c *pb.Compare) bool {
	var kvs []*version
	s.idx.ascend(c.Key, gteRange(c.RangeEnd), func(ki *keyIndex) bool {
		if v := ki.latest(); v != nil {
			kvs = append(kvs, v)
		}
		return true
	})
	if len(kvs) == 0 {
		if c.Target == pb.Compare_VALUE {
			return false
		}
		return compareKV(c, &mvccpb.KeyValue{})
	}
	for _, v := range kvs {
		if !compareKV(c, &v.kv) {
			return false
		}
	}
	return true
}

func compareKV(c *pb.Compare, kv *mvccpb.KeyValue) bool {
	var result int
	switch c.Target {
	case pb.Compare_VALUE:
		v := []byte{}
		if tv, _ := c.TargetUnion.(*pb.Compare_Value); tv != nil {
			v = tv.Value
		}
		result = bytes.Compare(kv.Value, v)
	case pb.Compare_CREATE:
		result = compareInt64(kv.CreateRevision, c.GetCreateRevision())
	case pb.Compare_MOD:
		result = compareInt64(kv.ModRevision, c.GetModRevision())
	case pb.Compare_VERSION:
		result = compareInt64(kv.Version, c.GetVersion())
	case pb.Compare_LEASE:
		result = compareInt64(kv.Lease, c.GetLease())
	}
	switch c.Result {
	case pb.Compare_EQUAL:
		return result == 0
	case pb.Compare_NOT_EQUAL:
		return result != 0
	case pb.Compare_GREATER:
		return result > 0
	case pb.Compare_LESS:
		return result < 0
	}
	return true
}

func compareInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// checkRequests calls f for every non-txn request on the chosen path.
func (s *memStore) checkRequests(rt *pb.TxnRequest, path []bool, f func(*pb.RequestOp) error) error {
	_, err := walkPath(rt, path, f)
	return err
}

func walkPath(rt *pb.TxnRequest, path []bool, f func(*pb.RequestOp) error) (int, error) {
	count := 0
	reqs := rt.Success
	if !path[0] {
		reqs = rt.Failure
	}
	for _, req := range reqs {
		if tv, ok := req.Request.(*pb.RequestOp_RequestTxn); ok && tv.RequestTxn != nil {
			n, err := walkPath(tv.RequestTxn, path[1:], f)
			if err != nil {
				return 0, err
			}
			count += n + 1
			path = path[n+1:]
			continue
		}
		if err := f(req); err != nil {
			return 0, err
		}
	}
	return count, nil
}

// checkPutOp is etcd's checkRequestPut.
func (s *memStore) checkPutOp(op *pb.RequestOp) error {
	p := op.GetRequestPut()
	if p == nil {
		return nil
	}
	if p.IgnoreValue || p.IgnoreLease {
		ki := s.idx.get(p.Key)
		if ki == nil || ki.latest() == nil {
			return ErrKeyNotFound
		}
	}
	if p.Lease != 0 && s.leases[p.Lease] == nil {
		return ErrLeaseNotFound
	}
	return nil
}

// checkRangeOp is etcd's checkRequestRange.
func (s *memStore) checkRangeOp(op *pb.RequestOp) error {
	r := op.GetRequestRange()
	if r == nil {
		return nil
	}
	switch {
	case r.Revision == 0:
		return nil
	case r.Revision > s.rev:
		return ErrFutureRev
	case r.Revision < s.compactRev:
		return ErrCompacted
	}
	return nil
}

// applyTxn applies the chosen branch in order, as etcd's applyTxn.
func (w *writeTxn) applyTxn(rt *pb.TxnRequest, path []bool, tresp *pb.TxnResponse, preps map[*pb.PutRequest]preparedPut) (int, error) {
	reqs := rt.Success
	if !path[0] {
		reqs = rt.Failure
	}
	txns := 0
	for i, req := range reqs {
		respi := tresp.Responses[i].Response
		switch tv := req.Request.(type) {
		case *pb.RequestOp_RequestRange:
			resp, err := w.s.rangeLocked(tv.RequestRange, w.readRev())
			if err != nil {
				return 0, err
			}
			respi.(*pb.ResponseOp_ResponseRange).ResponseRange = resp
		case *pb.RequestOp_RequestPut:
			respi.(*pb.ResponseOp_ResponsePut).ResponsePut = w.put(tv.RequestPut, preps[tv.RequestPut])
		case *pb.RequestOp_RequestDeleteRange:
			respi.(*pb.ResponseOp_ResponseDeleteRange).ResponseDeleteRange = w.deleteRange(tv.RequestDeleteRange)
		case *pb.RequestOp_RequestTxn:
			sub := respi.(*pb.ResponseOp_ResponseTxn).ResponseTxn
			n, err := w.applyTxn(tv.RequestTxn, path[1:], sub, preps)
			if err != nil {
				return 0, err
			}
			txns += n + 1
			path = path[n+1:]
		}
	}
	return txns, nil
}
