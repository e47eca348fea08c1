package store

import (
	"context"
	"strings"
	"sync"
)

// Objects implements Store. Every live key under prefix is returned; Value
// is what the Decoder returned for it (nil for keys it does not govern).
func (s *memStore) Objects(prefix string) ([]Object, int64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.objectsLocked(prefix, s.rev), s.rev
}

func (s *memStore) objectsLocked(prefix string, rev int64) []Object {
	var out []Object
	s.idx.ascend([]byte(prefix), prefixEnd(prefix), func(ki *keyIndex) bool {
		if v := ki.at(rev); v != nil {
			out = append(out, Object{Key: ki.key, Value: v.obj, ModRevision: v.kv.ModRevision})
		}
		return true
	})
	return out
}

// prefixEnd is clientv3's GetPrefixRangeEnd in index form.
func prefixEnd(prefix string) []byte {
	end := []byte(prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return []byte{} // every key >= prefix
}

// objWatcher feeds one WatchObjects callback.
type objWatcher struct {
	s      *memStore
	prefix string
	fn     func([]ObjectEvent)
	notify chan struct{}
	done   chan struct{}
	once   sync.Once
	next   int64
	// known is the consumer's view (key -> mod revision), used to compute
	// a diff if it fell behind a compaction.
	known map[string]int64
	// started is set after the first delivery (a start below the history
	// is expected; a resync later is worth a warning).
	started bool
}

// WatchObjects implements Store. If the consumer falls behind history
// compaction, it receives the difference between what it was told and
// the current state, so its view still converges.
func (s *memStore) WatchObjects(ctx context.Context, prefix string, rev int64, fn func([]ObjectEvent)) {
	w := &objWatcher{
		s:      s,
		prefix: prefix,
		fn:     fn,
		notify: make(chan struct{}, 1),
		done:   make(chan struct{}),
		known:  make(map[string]int64),
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return
	}
	if rev > s.rev {
		rev = s.rev
	}
	// rev <= 0: the consumer knows nothing and gets every object.
	if rev > 0 {
		at := rev
		if at < s.compactRev {
			at = s.compactRev
			s.log.Warn("store: WatchObjects starts below the compaction revision", "rev", rev, "compact_rev", s.compactRev)
		}
		for _, o := range s.objectsLocked(prefix, at) {
			w.known[o.Key] = o.ModRevision
		}
	}
	w.next = rev + 1
	s.watchMu.Lock()
	s.objWatch[w] = struct{}{}
	s.watchMu.Unlock()
	s.mu.RUnlock()
	go w.run(ctx)
}

func (w *objWatcher) stop() { w.once.Do(func() { close(w.done) }) }

func (w *objWatcher) run(ctx context.Context) {
	defer func() {
		w.s.watchMu.Lock()
		delete(w.s.objWatch, w)
		w.s.watchMu.Unlock()
	}()
	for {
		evs, ok := w.collect()
		if !ok {
			return
		}
		if len(evs) > 0 {
			w.fn(evs)
			continue
		}
		select {
		case <-w.notify:
		case <-w.done:
			return
		case <-ctx.Done():
			return
		}
	}
}

// collect gathers the pending changes (up to watchBatchMaxRevs revisions).
func (w *objWatcher) collect() ([]ObjectEvent, bool) {
	s := w.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, false
	}
	if w.next > s.rev {
		return nil, true
	}
	if w.next < s.hist.first {
		return w.resyncLocked(), true
	}
	w.started = true
	entries := s.hist.since(w.next)
	if len(entries) > watchBatchMaxRevs {
		entries = entries[:watchBatchMaxRevs]
	}
	var out []ObjectEvent
	for i := range entries {
		e := &entries[i]
		for _, c := range e.changes {
			key := string(c.v.kv.Key)
			if !strings.HasPrefix(key, w.prefix) {
				continue
			}
			if c.v.tombstone() {
				delete(w.known, key)
				out = append(out, ObjectEvent{Key: key, Deleted: true, Revision: e.rev})
			} else {
				w.known[key] = e.rev
				out = append(out, ObjectEvent{Key: key, Value: c.v.obj, Revision: e.rev})
			}
		}
	}
	if len(entries) > 0 {
		w.next = entries[len(entries)-1].rev + 1
	} else {
		w.next = s.rev + 1
	}
	return out, true
}

// resyncLocked diffs the consumer's view against the current state.
func (w *objWatcher) resyncLocked() []ObjectEvent {
	s := w.s
	rev := s.rev
	var out []ObjectEvent
	cur := s.objectsLocked(w.prefix, rev)
	seen := make(map[string]struct{}, len(cur))
	for _, o := range cur {
		seen[o.Key] = struct{}{}
		if w.known[o.Key] != o.ModRevision {
			out = append(out, ObjectEvent{Key: o.Key, Value: o.Value, Revision: o.ModRevision})
			w.known[o.Key] = o.ModRevision
		}
	}
	for k := range w.known {
		if _, ok := seen[k]; !ok {
			out = append(out, ObjectEvent{Key: k, Deleted: true, Revision: rev})
			delete(w.known, k)
		}
	}
	if w.started {
		s.log.Warn("store: object watcher fell behind compaction; resynced", "prefix", w.prefix, "changes", len(out))
	}
	w.started = true
	w.next = rev + 1
	return out
}
