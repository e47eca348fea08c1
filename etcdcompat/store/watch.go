package store

import (
	"context"
	"sync"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

const (
	// watchChanSize is the number of responses buffered per watcher
	// (etcd's chanBufLen); behind it the watcher catches up from history.
	watchChanSize = 128
	// watchBatchMaxRevs bounds the revisions sent in one catch-up response
	// (etcd's watchBatchMaxRevs).
	watchBatchMaxRevs = 1000
)

// watcher delivers one watch. Its goroutine reads history under mu.RLock
// and sends outside any lock, so a slow consumer only delays itself.
type watcher struct {
	s        *memStore
	key, end []byte // end nil: one key; empty: every key >= key
	prevKV   bool
	noPut    bool
	noDelete bool

	ch     chan WatchResponse
	notify chan struct{}
	done   chan struct{}
	once   sync.Once

	// next is the next revision to deliver; replayTo the last revision of
	// the initial replay (delivered in batches, like etcd's unsynced
	// watchers); later revisions go one response each.
	next     int64
	replayTo int64
}

// Watch implements Store.
func (s *memStore) Watch(ctx context.Context, o WatchOptions) (Watcher, error) {
	key := o.Key
	if len(key) == 0 {
		key = []byte{0} // etcd: \x00 is the smallest key
	}
	w := &watcher{
		s:        s,
		key:      append([]byte(nil), key...),
		end:      gteRange(o.RangeEnd),
		prevKV:   o.PrevKV,
		noPut:    o.NoPut,
		noDelete: o.NoDelete,
		ch:       make(chan WatchResponse, watchChanSize),
		notify:   make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	if w.end != nil && len(w.end) > 0 {
		w.end = append([]byte(nil), w.end...)
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return nil, ErrClosed
	}
	if o.StartRevision > 0 && o.StartRevision < s.compactRev {
		s.mu.RUnlock()
		return nil, ErrCompacted
	}
	w.next = s.rev + 1
	if o.StartRevision > 0 {
		// Nothing happened at or before baseRev that history could hold.
		w.next = max(o.StartRevision, s.baseRev+1)
	}
	w.replayTo = s.rev
	s.watchMu.Lock()
	s.watchers[w] = struct{}{}
	s.watchMu.Unlock()
	s.mu.RUnlock()

	go w.run(ctx)
	return w, nil
}

// C implements Watcher.
func (w *watcher) C() <-chan WatchResponse { return w.ch }

// Cancel implements Watcher.
func (w *watcher) Cancel() { w.once.Do(func() { close(w.done) }) }

func (s *memStore) notifyWatchers() {
	s.watchMu.Lock()
	for w := range s.watchers {
		select {
		case w.notify <- struct{}{}:
		default:
		}
	}
	for w := range s.objWatch {
		select {
		case w.notify <- struct{}{}:
		default:
		}
	}
	s.watchMu.Unlock()
}

func (w *watcher) run(ctx context.Context) {
	defer func() {
		w.s.watchMu.Lock()
		delete(w.s.watchers, w)
		w.s.watchMu.Unlock()
		close(w.ch)
	}()
	for {
		for {
			resp, ok, more := w.collect()
			if !ok {
				return
			}
			if resp == nil {
				break
			}
			select {
			case w.ch <- *resp:
			case <-w.done:
				return
			case <-ctx.Done():
				return
			}
			if resp.Canceled {
				return
			}
			if !more {
				break
			}
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

// collect builds the next response from history. ok is false when the
// store is closed; resp is nil when nothing is pending; more says whether
// history holds further revisions for this watcher.
func (w *watcher) collect() (resp *WatchResponse, ok, more bool) {
	s := w.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, false, false
	}
	for {
		if w.next > s.rev {
			return nil, true, false
		}
		if w.next < s.hist.first && w.next < s.compactRev {
			return &WatchResponse{
				Revision:        s.rev,
				CompactRevision: s.compactRev,
				Canceled:        true,
			}, true, false
		}
		entries := s.hist.since(w.next)
		maxRevs := 1
		if w.next <= w.replayTo {
			maxRevs = watchBatchMaxRevs
			if n := int(w.replayTo - w.next + 1); n < maxRevs {
				maxRevs = n
			}
		}
		if len(entries) > maxRevs {
			entries = entries[:maxRevs]
		}
		if len(entries) == 0 {
			w.next = s.rev + 1
			return nil, true, false
		}
		var evs []*mvccpb.Event
		replay := w.next <= w.replayTo
		for i := range entries {
			evs = w.filter(evs, &entries[i], replay)
		}
		last := entries[len(entries)-1].rev
		w.next = last + 1
		if len(evs) == 0 {
			continue // nothing for this watcher in these revisions
		}
		rev := last
		if maxRevs > 1 {
			rev = s.rev
		}
		return &WatchResponse{Revision: rev, Events: evs}, true, w.next <= s.rev
	}
}

// filter appends e's events this watcher wants.
func (w *watcher) filter(dst []*mvccpb.Event, e *histEntry, replay bool) []*mvccpb.Event {
	for i, ev := range e.events {
		if w.noPut && ev.Type == mvccpb.PUT || w.noDelete && ev.Type == mvccpb.DELETE {
			continue
		}
		if !w.matches(ev.Kv.Key) {
			continue
		}
		if w.prevKV {
			c := *ev
			// etcd reads the previous value at ModRevision-1, which fails
			// once that revision is compacted (deterministically so for a
			// replay; a live watcher's events were taken before).
			if p := e.changes[i].prev; p != nil && (!replay || e.rev-1 >= w.s.compactRev) {
				c.PrevKv = &p.kv
			}
			ev = &c
		}
		dst = append(dst, ev)
	}
	return dst
}

func (w *watcher) matches(key []byte) bool {
	if w.end == nil {
		return string(key) == string(w.key)
	}
	if string(key) < string(w.key) {
		return false
	}
	return len(w.end) == 0 || string(key) < string(w.end)
}
