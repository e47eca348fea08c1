package store

import (
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// change is one key's change in a revision: the new version (a tombstone
// for a delete) and the key's live version before the revision, if any.
type change struct {
	v    *version
	prev *version
}

// preparedPut is a put whose value is final and decoded, ready to apply.
type preparedPut struct {
	value []byte
	lease int64
	obj   any
}

// preparePut resolves ignore_value/ignore_lease against the current state
// and decodes the value. The caller holds wmu, so the index is stable.
func (s *memStore) preparePut(r *pb.PutRequest) (preparedPut, error) {
	var prev *version
	if ki := s.idx.get(r.Key); ki != nil {
		prev = ki.latest()
	}
	if (r.IgnoreValue || r.IgnoreLease) && prev == nil {
		return preparedPut{}, ErrKeyNotFound
	}
	dp := preparedPut{lease: r.Lease}
	if r.IgnoreLease {
		dp.lease = prev.kv.Lease
	}
	if r.IgnoreValue {
		// Same key, same bytes: the decoded object is the same too.
		dp.value, dp.obj = prev.kv.Value, prev.obj
		return dp, nil
	}
	dp.value = append([]byte(nil), r.Value...)
	if s.opts.Decoder != nil {
		obj, err := s.opts.Decoder(r.Key, dp.value)
		if err != nil {
			return preparedPut{}, &InvalidObjectError{Key: string(r.Key), Err: err}
		}
		dp.obj = obj
	}
	return dp, nil
}

// writeTxn applies changes at one revision (begin+1). beginWrite takes mu
// exclusively; commit publishes the revision and releases it. The caller
// holds wmu throughout.
type writeTxn struct {
	s       *memStore
	begin   int64
	changes []change
}

func (s *memStore) beginWrite() *writeTxn {
	s.mu.Lock()
	return &writeTxn{s: s, begin: s.rev}
}

// readRev is the revision reads inside the txn see: its own writes
// included, as etcd's storeTxnWrite.Range.
func (w *writeTxn) readRev() int64 {
	if len(w.changes) > 0 {
		return w.begin + 1
	}
	return w.begin
}

func (w *writeTxn) put(r *pb.PutRequest, dp preparedPut) *pb.PutResponse {
	rev := w.begin + 1
	resp := &pb.PutResponse{Header: &pb.ResponseHeader{Revision: rev}}
	ki := w.s.idx.get(r.Key)
	var prev *version
	key := r.Key
	if ki != nil {
		prev = ki.latest()
		if len(ki.revs) > 0 {
			key = ki.revs[0].kv.Key // share the stored copy of the key
		}
	} else {
		key = append([]byte(nil), r.Key...)
	}
	v := &version{
		kv: mvccpb.KeyValue{
			Key:            key,
			Value:          dp.value,
			CreateRevision: rev,
			ModRevision:    rev,
			Version:        1,
			Lease:          dp.lease,
		},
		obj: dp.obj,
	}
	oldLease := int64(0)
	if prev != nil {
		if r.PrevKv {
			c := prev.kv
			resp.PrevKv = &c
		}
		v.kv.CreateRevision = prev.kv.CreateRevision
		v.kv.Version = prev.kv.Version + 1
		oldLease = prev.kv.Lease
	}
	if oldLease != dp.lease {
		w.s.detachLease(oldLease, string(key))
		w.s.attachLease(dp.lease, string(key))
	}
	w.s.idx.add(string(key), v)
	w.changes = append(w.changes, change{v: v, prev: w.before(ki)})
	return resp
}

func (w *writeTxn) deleteRange(r *pb.DeleteRangeRequest) *pb.DeleteRangeResponse {
	var live []*keyIndex
	w.s.idx.ascend(r.Key, gteRange(r.RangeEnd), func(ki *keyIndex) bool {
		if ki.latest() != nil {
			live = append(live, ki)
		}
		return true
	})
	resp := &pb.DeleteRangeResponse{Header: &pb.ResponseHeader{}, Deleted: int64(len(live))}
	if r.PrevKv {
		kvs := make([]mvccpb.KeyValue, len(live))
		resp.PrevKvs = make([]*mvccpb.KeyValue, len(live))
		for i, ki := range live {
			kvs[i] = ki.latest().kv
			resp.PrevKvs[i] = &kvs[i]
		}
	}
	for _, ki := range live {
		w.deleteKey(ki)
	}
	if len(live) != 0 || len(w.changes) > 0 {
		resp.Header.Revision = w.begin + 1
	} else {
		resp.Header.Revision = w.begin
	}
	return resp
}

// deleteKey writes a tombstone for a live key.
func (w *writeTxn) deleteKey(ki *keyIndex) {
	prev := ki.latest()
	tomb := &version{kv: mvccpb.KeyValue{Key: prev.kv.Key, ModRevision: w.begin + 1}}
	w.s.detachLease(prev.kv.Lease, ki.key)
	w.s.idx.add(ki.key, tomb)
	w.changes = append(w.changes, change{v: tomb, prev: w.before(ki)})
}

// before is the key's version before this txn's revision: what etcd's
// watch reports as prev_kv (read at ModRevision-1), even when the txn
// already changed the key.
func (w *writeTxn) before(ki *keyIndex) *version {
	if ki == nil {
		return nil
	}
	return ki.at(w.begin)
}

// commit publishes the txn's revision (if it changed anything), releases
// mu and wakes watchers.
func (w *writeTxn) commit() {
	s := w.s
	changed := len(w.changes) > 0
	if changed {
		s.rev = w.begin + 1
		s.hist.append(s.rev, w.changes)
		limit := int64(s.historyLimit)
		if s.rev-max(s.compactRev, s.baseRev) > limit+limit/8 {
			s.compactLocked(s.rev - limit + 1)
		} else if s.hist.first < s.compactRev && s.rev%64 == 0 {
			s.trimHistoryLocked() // laggards may have caught up
		}
	}
	s.mu.Unlock()
	if changed {
		s.markDirty()
		s.notifyWatchers()
	}
}

// histEntry is the set of changes of one revision, with the events built
// once for every watcher.
type histEntry struct {
	rev     int64
	changes []change
	events  []*mvccpb.Event
}

// history is the ring of recent revisions: entries[i].rev == first+i.
type history struct {
	first   int64
	entries []histEntry
}

func (h *history) append(rev int64, changes []change) {
	if len(h.entries) == 0 {
		h.first = rev
	}
	evs := make([]*mvccpb.Event, len(changes))
	evBacking := make([]mvccpb.Event, len(changes))
	for i, c := range changes {
		evBacking[i].Kv = &c.v.kv
		if c.v.tombstone() {
			evBacking[i].Type = mvccpb.DELETE
		} else {
			evBacking[i].Type = mvccpb.PUT
		}
		evs[i] = &evBacking[i]
	}
	h.entries = append(h.entries, histEntry{rev: rev, changes: changes, events: evs})
}

// compact drops the entries below rev.
func (h *history) compact(rev int64) {
	n := int(rev - h.first)
	if n <= 0 {
		return
	}
	if n > len(h.entries) {
		n = len(h.entries)
	}
	for i := 0; i < n; i++ {
		h.entries[i] = histEntry{}
	}
	h.entries = h.entries[n:]
	h.first += int64(n)
	if len(h.entries) == 0 {
		h.first = rev
	}
}

// since returns the entries with revision >= rev (rev >= first).
func (h *history) since(rev int64) []histEntry {
	i := rev - h.first
	if i < 0 {
		i = 0
	}
	if i >= int64(len(h.entries)) {
		return nil
	}
	return h.entries[i:]
}
