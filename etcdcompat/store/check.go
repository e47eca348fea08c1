package store

import (
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/pkg/v3/adt"
)

// maxRequestBytes is etcd's default --max-request-bytes (1.5 MiB).
const maxRequestBytes = 1536 * 1024

// raftHeaderID stands in for the request id etcd puts in the raft entry
// header, so request sizes are measured as etcd measures them. etcd's ids
// take 9 or 10 bytes depending on the member id; the 10-byte maximum means
// whatever the store accepts every etcd accepts (the limit can be one byte
// stricter than a given etcd's).
const raftHeaderID = ^uint64(0)

// checkSize rejects a write whose raft entry would exceed etcd's default
// request size limit.
func checkSize(r *pb.InternalRaftRequest, tooLarge error) error {
	r.Header = &pb.RequestHeader{ID: raftHeaderID}
	if r.Size() > maxRequestBytes {
		return tooLarge
	}
	return nil
}

// putTooLarge names the culprit of an oversized put: the key if the key
// alone is over the limit, otherwise the value.
func putTooLarge(r *pb.PutRequest) error {
	if len(r.Key) > maxRequestBytes/2 {
		return ErrKeyTooLarge
	}
	return ErrValueTooLarge
}

// checkPut is etcd's v3rpc checkPutRequest.
func checkPut(r *pb.PutRequest) error {
	if r == nil || len(r.Key) == 0 {
		return ErrEmptyKey
	}
	if r.IgnoreValue && len(r.Value) != 0 {
		return ErrValueProvided
	}
	if r.IgnoreLease && r.Lease != 0 {
		return ErrLeaseProvided
	}
	return nil
}

// checkTxn is etcd's v3rpc checkTxnRequest: at most maxOps compares or ops
// per branch (nested txns get what is left), and no empty keys.
func checkTxn(r *pb.TxnRequest, maxOps int) error {
	opc := len(r.Compare)
	if opc < len(r.Success) {
		opc = len(r.Success)
	}
	if opc < len(r.Failure) {
		opc = len(r.Failure)
	}
	if opc > maxOps {
		return ErrTooManyOps
	}
	for _, c := range r.Compare {
		if c == nil || len(c.Key) == 0 {
			return ErrEmptyKey
		}
	}
	for _, u := range r.Success {
		if err := checkRequestOp(u, maxOps-opc); err != nil {
			return err
		}
	}
	for _, u := range r.Failure {
		if err := checkRequestOp(u, maxOps-opc); err != nil {
			return err
		}
	}
	return nil
}

func checkRequestOp(u *pb.RequestOp, maxOps int) error {
	if u == nil {
		return ErrKeyNotFound
	}
	switch uv := u.Request.(type) {
	case *pb.RequestOp_RequestRange:
		if uv.RequestRange == nil || len(uv.RequestRange.Key) == 0 {
			return ErrEmptyKey
		}
		return nil
	case *pb.RequestOp_RequestPut:
		return checkPut(uv.RequestPut)
	case *pb.RequestOp_RequestDeleteRange:
		if uv.RequestDeleteRange == nil || len(uv.RequestDeleteRange.Key) == 0 {
			return ErrEmptyKey
		}
		return nil
	case *pb.RequestOp_RequestTxn:
		if uv.RequestTxn == nil {
			return ErrKeyNotFound
		}
		return checkTxn(uv.RequestTxn, maxOps)
	default:
		// An empty op: etcd answers "key not found".
		return ErrKeyNotFound
	}
}

// checkIntervals is etcd's v3rpc checkIntervals: a key may be put at most
// once on any execution path and never inside a range deleted on it. It
// uses etcd's own interval tree so that edge cases (such as a "\x00" range
// end, which etcd compares literally here) decide exactly as etcd does.
func checkIntervals(reqs []*pb.RequestOp) (map[string]struct{}, adt.IntervalTree, error) {
	dels := adt.NewIntervalTree()
	for _, req := range reqs {
		dreq := req.GetRequestDeleteRange()
		if dreq == nil {
			continue
		}
		var iv adt.Interval
		if len(dreq.RangeEnd) != 0 {
			iv = adt.NewStringAffineInterval(string(dreq.Key), string(dreq.RangeEnd))
		} else {
			iv = adt.NewStringAffinePoint(string(dreq.Key))
		}
		dels.Insert(iv, struct{}{})
	}

	puts := make(map[string]struct{})
	for _, req := range reqs {
		txn := req.GetRequestTxn()
		if txn == nil {
			continue
		}
		putsThen, delsThen, err := checkIntervals(txn.Success)
		if err != nil {
			return nil, dels, err
		}
		putsElse, delsElse, err := checkIntervals(txn.Failure)
		if err != nil {
			return nil, dels, err
		}
		for k := range putsThen {
			if _, ok := puts[k]; ok {
				return nil, dels, ErrDuplicateKey
			}
			if dels.Intersects(adt.NewStringAffinePoint(k)) {
				return nil, dels, ErrDuplicateKey
			}
			puts[k] = struct{}{}
		}
		for k := range putsElse {
			if _, ok := puts[k]; ok {
				// then/else are exclusive: a key in both is fine.
				if _, isSafe := putsThen[k]; !isSafe {
					return nil, dels, ErrDuplicateKey
				}
			}
			if dels.Intersects(adt.NewStringAffinePoint(k)) {
				return nil, dels, ErrDuplicateKey
			}
			puts[k] = struct{}{}
		}
		dels.Union(delsThen, adt.NewStringAffineInterval("\x00", ""))
		dels.Union(delsElse, adt.NewStringAffineInterval("\x00", ""))
	}

	for _, req := range reqs {
		p := req.GetRequestPut()
		if p == nil {
			continue
		}
		k := string(p.Key)
		if _, ok := puts[k]; ok {
			return nil, dels, ErrDuplicateKey
		}
		if dels.Intersects(adt.NewStringAffinePoint(k)) {
			return nil, dels, ErrDuplicateKey
		}
		puts[k] = struct{}{}
	}
	return puts, dels, nil
}
