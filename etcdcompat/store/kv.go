package store

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// defaultHistoryLimit is the number of revisions kept when
// Options.HistoryLimit is 0.
const defaultHistoryLimit = 10000

// memStore implements Store.
//
// Locking: wmu serializes every mutation (it is held while a request is
// validated and decoded, so a slow Decoder delays other writers but never
// readers). mu guards the state readers see; writers hold it exclusively
// only while applying an already validated change. Watchers read history
// under mu.RLock and deliver outside any lock, so they never block writers.
type memStore struct {
	opts         Options
	log          *slog.Logger
	now          func() time.Time
	historyLimit int

	wmu sync.Mutex

	mu         sync.RWMutex
	rev        int64
	compactRev int64
	baseRev    int64 // the revision at New: no history before it
	idx        *index
	hist       history
	leases     map[int64]*lease
	closed     bool

	watchMu  sync.Mutex
	watchers map[*watcher]struct{}
	objWatch map[*objWatcher]struct{}

	persist *persister
	expiry  *expirer
}

// New returns a Store. With Options.DataFile set and the file present, the
// data, revision, compaction revision and leases are loaded from it (watch
// history is not persisted: the loaded revision becomes the compaction
// revision). Otherwise the store starts empty at revision
// time.Now().UnixMilli().
func New(o Options) (Store, error) {
	return newStore(o, time.Now)
}

func newStore(o Options, now func() time.Time) (*memStore, error) {
	s := &memStore{
		opts:         o,
		log:          o.Logger,
		now:          now,
		historyLimit: o.HistoryLimit,
		idx:          newIndex(),
		leases:       make(map[int64]*lease),
		watchers:     make(map[*watcher]struct{}),
		objWatch:     make(map[*objWatcher]struct{}),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.historyLimit <= 0 {
		s.historyLimit = defaultHistoryLimit
	}
	s.rev = now().UnixMilli()
	s.compactRev = -1 // as a fresh etcd: even revision 0 may be compacted
	if o.DataFile != "" {
		loaded, err := s.load(o.DataFile)
		if err != nil {
			return nil, err
		}
		if loaded {
			s.log.Info("store loaded", "file", o.DataFile, "revision", s.rev, "keys", s.idx.tree.Len(), "leases", len(s.leases))
		}
		s.persist = newPersister(s, o.DataFile)
	}
	s.hist.first = s.rev + 1
	s.baseRev = s.rev
	s.expiry = newExpirer(s)
	return s, nil
}

// Rev implements Store.
func (s *memStore) Rev() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.rev
}

// CompactRev implements Store.
func (s *memStore) CompactRev() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.compactRev
}

// Range implements Store.
func (s *memStore) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	if len(r.Key) == 0 {
		return nil, ErrEmptyKey
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	return s.rangeLocked(r, s.rev)
}

// rangeLocked answers r as etcd's applier does, reading the index at
// r.Revision (or curRev); curRev goes into the header. The caller holds
// mu (or wmu during a write txn).
func (s *memStore) rangeLocked(r *pb.RangeRequest, curRev int64) (*pb.RangeResponse, error) {
	limit := r.Limit
	if r.SortOrder != pb.RangeRequest_NONE ||
		r.MinModRevision != 0 || r.MaxModRevision != 0 ||
		r.MinCreateRevision != 0 || r.MaxCreateRevision != 0 {
		limit = 0
	}
	if limit > 0 {
		limit++
	}
	rev := r.Revision
	if rev > curRev {
		return nil, ErrFutureRev
	}
	if rev <= 0 {
		rev = curRev
	}
	if rev < s.compactRev {
		return nil, ErrCompacted
	}

	var vs []*version
	total := int64(0)
	s.idx.ascend(r.Key, gteRange(r.RangeEnd), func(ki *keyIndex) bool {
		v := ki.at(rev)
		if v == nil {
			return true
		}
		total++
		if !r.CountOnly && (limit <= 0 || int64(len(vs)) < limit) {
			vs = append(vs, v)
		}
		return true
	})
	// Copies, so callers own what they get; values are shared read-only.
	kvs := make([]mvccpb.KeyValue, len(vs))
	for i, v := range vs {
		kvs[i] = v.kv
	}

	if r.MaxModRevision != 0 {
		kvs = pruneKVs(kvs, func(kv *mvccpb.KeyValue) bool { return kv.ModRevision > r.MaxModRevision })
	}
	if r.MinModRevision != 0 {
		kvs = pruneKVs(kvs, func(kv *mvccpb.KeyValue) bool { return kv.ModRevision < r.MinModRevision })
	}
	if r.MaxCreateRevision != 0 {
		kvs = pruneKVs(kvs, func(kv *mvccpb.KeyValue) bool { return kv.CreateRevision > r.MaxCreateRevision })
	}
	if r.MinCreateRevision != 0 {
		kvs = pruneKVs(kvs, func(kv *mvccpb.KeyValue) bool { return kv.CreateRevision < r.MinCreateRevision })
	}
	sortKVs(kvs, r.SortOrder, r.SortTarget)

	resp := &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: curRev}, Count: total}
	if r.Limit > 0 && int64(len(kvs)) > r.Limit {
		kvs = kvs[:r.Limit]
		resp.More = true
	}
	resp.Kvs = make([]*mvccpb.KeyValue, len(kvs))
	for i := range kvs {
		if r.KeysOnly {
			kvs[i].Value = nil
		}
		resp.Kvs[i] = &kvs[i]
	}
	return resp, nil
}

func pruneKVs(kvs []mvccpb.KeyValue, prunable func(*mvccpb.KeyValue) bool) []mvccpb.KeyValue {
	j := 0
	for i := range kvs {
		kvs[j] = kvs[i]
		if !prunable(&kvs[i]) {
			j++
		}
	}
	return kvs[:j]
}

// sortKVs sorts exactly as etcd's applier does (same sorter, same
// sort.Sort), so ties come out in the same order.
func sortKVs(kvs []mvccpb.KeyValue, order pb.RangeRequest_SortOrder, target pb.RangeRequest_SortTarget) {
	if target != pb.RangeRequest_KEY && order == pb.RangeRequest_NONE {
		order = pb.RangeRequest_ASCEND
	}
	if order == pb.RangeRequest_NONE {
		return
	}
	base := &kvSort{kvs}
	var sorter sort.Interface
	switch target {
	case pb.RangeRequest_KEY:
		sorter = &kvSortByKey{base}
	case pb.RangeRequest_VERSION:
		sorter = &kvSortByVersion{base}
	case pb.RangeRequest_CREATE:
		sorter = &kvSortByCreate{base}
	case pb.RangeRequest_MOD:
		sorter = &kvSortByMod{base}
	case pb.RangeRequest_VALUE:
		sorter = &kvSortByValue{base}
	default:
		return
	}
	switch order {
	case pb.RangeRequest_ASCEND:
		sort.Sort(sorter)
	case pb.RangeRequest_DESCEND:
		sort.Sort(sort.Reverse(sorter))
	}
}

// Put implements Store.
func (s *memStore) Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	if err := checkPut(r); err != nil {
		return nil, err
	}
	if err := checkSize(&pb.InternalRaftRequest{Put: r}, putTooLarge(r)); err != nil {
		return nil, err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.isClosed() {
		return nil, ErrClosed
	}
	if r.Lease != 0 && s.leases[r.Lease] == nil {
		return nil, ErrLeaseNotFound
	}
	dp, err := s.preparePut(r)
	if err != nil {
		return nil, err
	}
	w := s.beginWrite()
	resp := w.put(r, dp)
	w.commit()
	return resp, nil
}

// DeleteRange implements Store.
func (s *memStore) DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	if len(r.Key) == 0 {
		return nil, ErrEmptyKey
	}
	if err := checkSize(&pb.InternalRaftRequest{DeleteRange: r}, ErrRequestTooLarge); err != nil {
		return nil, err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.isClosed() {
		return nil, ErrClosed
	}
	w := s.beginWrite()
	resp := w.deleteRange(r)
	w.commit()
	return resp, nil
}

// Compact implements Store. Compaction is immediate (etcd's physical flag
// makes no difference here).
func (s *memStore) Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	if r.Revision <= s.compactRev {
		s.mu.Unlock()
		return nil, ErrCompacted
	}
	if r.Revision > s.rev {
		s.mu.Unlock()
		return nil, ErrFutureRev
	}
	s.compactLocked(r.Revision)
	rev := s.rev
	s.mu.Unlock()
	s.markDirty()
	// Watchers behind the new compaction revision must learn it.
	s.notifyWatchers()
	return &pb.CompactionResponse{Header: &pb.ResponseHeader{Revision: rev}}, nil
}

// compactLocked drops history and versions below rev. mu is held.
func (s *memStore) compactLocked(rev int64) {
	s.compactRev = rev
	s.idx.compact(rev)
	s.trimHistoryLocked()
}

// trimHistoryLocked drops watch history below the compaction revision,
// except what running watchers still need (as etcd, whose synced watchers
// already hold their events, compaction alone does not cancel a live
// watcher that is a little behind); at most 2*HistoryLimit revisions are
// kept for them. mu is held.
func (s *memStore) trimHistoryLocked() {
	target := s.compactRev
	s.watchMu.Lock()
	for w := range s.watchers {
		target = min(target, w.next)
	}
	for w := range s.objWatch {
		target = min(target, w.next)
	}
	s.watchMu.Unlock()
	target = max(target, s.rev-2*int64(s.historyLimit))
	s.hist.compact(target)
}

func (s *memStore) isClosed() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.closed
}

// Close implements Store.
func (s *memStore) Close() error {
	s.wmu.Lock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wmu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.wmu.Unlock()

	s.expiry.stop()
	s.watchMu.Lock()
	ws := make([]*watcher, 0, len(s.watchers))
	for w := range s.watchers {
		ws = append(ws, w)
	}
	ows := make([]*objWatcher, 0, len(s.objWatch))
	for w := range s.objWatch {
		ows = append(ows, w)
	}
	s.watchMu.Unlock()
	for _, w := range ws {
		w.Cancel()
	}
	for _, w := range ows {
		w.stop()
	}
	if s.persist != nil {
		if err := s.persist.close(); err != nil {
			return fmt.Errorf("store: close: %w", err)
		}
	}
	return nil
}

type kvSort struct{ kvs []mvccpb.KeyValue }

func (s *kvSort) Swap(i, j int) { s.kvs[i], s.kvs[j] = s.kvs[j], s.kvs[i] }
func (s *kvSort) Len() int      { return len(s.kvs) }

type kvSortByKey struct{ *kvSort }

func (s *kvSortByKey) Less(i, j int) bool { return string(s.kvs[i].Key) < string(s.kvs[j].Key) }

type kvSortByVersion struct{ *kvSort }

func (s *kvSortByVersion) Less(i, j int) bool { return s.kvs[i].Version-s.kvs[j].Version < 0 }

type kvSortByCreate struct{ *kvSort }

func (s *kvSortByCreate) Less(i, j int) bool {
	return s.kvs[i].CreateRevision-s.kvs[j].CreateRevision < 0
}

type kvSortByMod struct{ *kvSort }

func (s *kvSortByMod) Less(i, j int) bool { return s.kvs[i].ModRevision-s.kvs[j].ModRevision < 0 }

type kvSortByValue struct{ *kvSort }

func (s *kvSortByValue) Less(i, j int) bool { return string(s.kvs[i].Value) < string(s.kvs[j].Value) }

var _ Store = (*memStore)(nil)
