package etcdcompat

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/meshagent/meshagent/etcdcompat/store"
)

// invalidWatchID is the watch id of responses that belong to no watcher
// (clientv3.InvalidWatchID).
const invalidWatchID = -1

// Cancel reasons of watch creation, etcd's mvcc messages.
var (
	errEmptyWatcherRange  = errors.New("mvcc: watcher range is empty")
	errWatcherDuplicateID = errors.New("mvcc: duplicate watch ID provided on the WatchStream")
	// errStreamDone is returned by sends after the stream's handler ended.
	errStreamDone = errors.New("etcdcompat: watch stream ended")
)

// watchServer is etcd's Watch service over the store.
type watchServer struct {
	pb.UnimplementedWatchServer
	s *Server
}

// watchStream is one Watch RPC: any number of watchers multiplexed on one
// gRPC stream. Responses of all watchers are serialized by sendMu.
type watchStream struct {
	s      *Server
	stream pb.Watch_WatchServer
	ctx    context.Context

	sendMu   sync.Mutex
	sendDone bool // set when the handler returns: gRPC forbids sends after

	mu       sync.Mutex
	nextID   int64
	watchers map[int64]*streamWatcher
	closed   bool // set by closeAll; no watcher starts after it
	wg       sync.WaitGroup
	// progress holds the progress_notify watchers: true when no event
	// reached the watcher since the last tick. ticking is set once the
	// ticker goroutine runs.
	progress map[int64]bool
	ticking  bool
}

// streamWatcher is one watcher of a stream.
type streamWatcher struct {
	id       int64
	fragment bool // split responses larger than the request limit
	w        store.Watcher
	canceled chan struct{} // closed when the client canceled it
	once     sync.Once
}

// Watch serves one bidirectional watch stream until the client goes away.
// As in etcd, the end of the client's requests (CloseSend) does not end the
// stream: watchers keep delivering until the stream's context ends.
func (ws *watchServer) Watch(stream pb.Watch_WatchServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	st := &watchStream{s: ws.s, stream: stream, ctx: ctx, watchers: make(map[int64]*streamWatcher),
		progress: make(map[int64]bool)}
	errc := make(chan error, 1)
	go func() { errc <- st.recvLoop() }()
	var err error
	select {
	case err = <-errc:
		if err == nil { // io.EOF: keep serving until the client leaves.
			<-ctx.Done()
		}
	case <-ctx.Done():
	}
	cancel()
	st.closeAll()
	st.wg.Wait()
	// The receive loop may still be running; it must not send any more.
	st.sendMu.Lock()
	st.sendDone = true
	st.sendMu.Unlock()
	if err != nil {
		return err
	}
	return toGRPCError(ctx.Err())
}

func (st *watchStream) recvLoop() error {
	for {
		req, err := st.stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		switch u := req.RequestUnion.(type) {
		case *pb.WatchRequest_CreateRequest:
			if u.CreateRequest != nil {
				if err := st.create(u.CreateRequest); err != nil {
					return err
				}
			}
		case *pb.WatchRequest_CancelRequest:
			if u.CancelRequest != nil {
				if err := st.cancel(u.CancelRequest.WatchId); err != nil {
					return err
				}
			}
		case *pb.WatchRequest_ProgressRequest:
			if u.ProgressRequest != nil && st.active() {
				if err := st.send(&pb.WatchResponse{Header: st.s.hdr.at(st.s.st.Rev()), WatchId: invalidWatchID}); err != nil {
					return err
				}
			}
		default:
			// etcd ignores requests it does not understand.
		}
	}
}

func (st *watchStream) send(r *pb.WatchResponse) error {
	st.sendMu.Lock()
	defer st.sendMu.Unlock()
	if st.sendDone {
		return errStreamDone
	}
	return st.stream.Send(r)
}

// create handles a WatchCreateRequest: the key and range end are
// normalized as etcd does, the created response is sent, and the watcher's
// events follow it.
func (st *watchStream) create(c *pb.WatchCreateRequest) error {
	key, end := c.Key, c.RangeEnd
	if len(key) == 0 {
		key = []byte{0} // the smallest key
	}
	var rangeEnd []byte // nil: the single key
	switch {
	case len(end) == 1 && end[0] == 0:
		rangeEnd = []byte{0} // every key >= key
	case len(end) != 0:
		rangeEnd = end
	}
	if err := st.s.auth.checkStream(st.ctx); err != nil {
		return st.send(&pb.WatchResponse{Header: st.s.hdr.at(st.s.st.Rev()), WatchId: invalidWatchID,
			Created: true, Canceled: true, CancelReason: err.Error()})
	}
	wsrev := st.s.st.Rev()
	if len(rangeEnd) != 0 && !(len(rangeEnd) == 1 && rangeEnd[0] == 0) && bytes.Compare(key, rangeEnd) >= 0 {
		return st.createFailed(wsrev, errEmptyWatcherRange)
	}
	st.mu.Lock()
	id := c.WatchId
	if id == 0 {
		for st.watchers[st.nextID] != nil {
			st.nextID++
		}
		id = st.nextID
		st.nextID++
	} else if st.watchers[id] != nil {
		st.mu.Unlock()
		return st.createFailed(wsrev, errWatcherDuplicateID)
	}
	sw := &streamWatcher{id: id, fragment: c.Fragment, canceled: make(chan struct{})}
	st.watchers[id] = sw
	st.mu.Unlock()

	rev := c.StartRevision
	if rev == 0 {
		rev = wsrev + 1
	}
	opts := store.WatchOptions{Key: key, RangeEnd: rangeEnd, StartRevision: rev, PrevKV: c.PrevKv}
	for _, f := range c.Filters {
		switch f {
		case pb.WatchCreateRequest_NOPUT:
			opts.NoPut = true
		case pb.WatchCreateRequest_NODELETE:
			opts.NoDelete = true
		}
	}
	w, werr := st.s.st.Watch(st.ctx, opts)
	if err := st.send(&pb.WatchResponse{Header: st.s.hdr.at(wsrev), WatchId: id, Created: true}); err != nil {
		if werr == nil {
			w.Cancel()
		}
		return err
	}
	if werr != nil {
		st.forget(id)
		if errors.Is(werr, store.ErrCompacted) {
			// etcd accepts the watch, then cancels it with the compact
			// revision and no header revision.
			return st.send(&pb.WatchResponse{Header: st.s.hdr.at(0), WatchId: id, Canceled: true,
				CompactRevision: st.s.st.CompactRev()})
		}
		return st.send(&pb.WatchResponse{Header: st.s.hdr.at(st.s.st.Rev()), WatchId: id, Canceled: true,
			CancelReason: watchCancelReason(toGRPCError(werr))})
	}
	st.mu.Lock()
	if st.closed || st.watchers[id] != sw {
		st.mu.Unlock()
		w.Cancel()
		return nil
	}
	sw.w = w
	st.wg.Add(1)
	if c.ProgressNotify {
		st.progress[id] = true
		if !st.ticking {
			st.ticking = true
			st.wg.Add(1)
			go st.tick()
		}
	}
	st.mu.Unlock()
	go st.forward(sw)
	return nil
}

// sendFragments sends r, split as etcd does when the watcher asked for
// fragments: a response of at least the gRPC message limit with two or
// more events goes out in parts below the limit (a part holds at least one
// event), every part but the last with Fragment set.
func (st *watchStream) sendFragments(r *pb.WatchResponse, fragment bool) error {
	limit := st.s.opts.MaxRequestBytes + grpcOverheadBytes
	if !fragment || len(r.Events) < 2 || r.Size() < limit {
		return st.send(r)
	}
	events := r.Events
	for len(events) > 0 {
		part := *r
		part.Events, part.Fragment = nil, true
		n := 0
		for n < len(events) {
			part.Events = events[:n+1]
			if n > 0 && part.Size() >= limit {
				part.Events = events[:n]
				break
			}
			n++
		}
		events = events[len(part.Events):]
		part.Fragment = len(events) > 0
		if err := st.send(&part); err != nil {
			return err
		}
	}
	return nil
}

func (st *watchStream) createFailed(rev int64, err error) error {
	return st.send(&pb.WatchResponse{Header: st.s.hdr.at(rev), WatchId: invalidWatchID,
		Created: true, Canceled: true, CancelReason: err.Error()})
}

// forward delivers a watcher's responses until the store closes its
// channel (cancel, compaction, store close, stream end).
func (st *watchStream) forward(sw *streamWatcher) {
	defer st.wg.Done()
	for r := range sw.w.C() {
		resp := &pb.WatchResponse{
			Header:          st.s.hdr.at(r.Revision),
			WatchId:         sw.id,
			Events:          r.Events,
			CompactRevision: r.CompactRevision,
			Canceled:        r.Canceled || r.CompactRevision != 0,
			CancelReason:    r.CancelReason,
		}
		select {
		case <-sw.canceled:
			// Canceled by the client: etcd sends nothing more for it.
			continue
		default:
		}
		if err := st.sendFragments(resp, sw.fragment); err != nil {
			sw.w.Cancel()
			continue
		}
		if len(resp.Events) > 0 {
			st.mu.Lock()
			if _, ok := st.progress[sw.id]; ok {
				st.progress[sw.id] = false // elide the next progress notification
			}
			st.mu.Unlock()
		}
		if resp.Canceled {
			st.forget(sw.id)
			sw.w.Cancel()
		}
	}
}

// cancel ends watcher id at the client's request and acknowledges it;
// unknown ids are ignored, as etcd does.
func (st *watchStream) cancel(id int64) error {
	st.mu.Lock()
	sw := st.watchers[id]
	delete(st.watchers, id)
	delete(st.progress, id)
	st.mu.Unlock()
	if sw == nil {
		return nil
	}
	sw.once.Do(func() { close(sw.canceled) })
	sw.w.Cancel() // set: create and cancel both run on the receive loop
	return st.send(&pb.WatchResponse{Header: st.s.hdr.at(st.s.st.Rev()), WatchId: id, Canceled: true})
}

// active reports whether the stream has a watcher; etcd answers a
// progress request only then.
func (st *watchStream) active() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.watchers) > 0
}

func (st *watchStream) forget(id int64) {
	st.mu.Lock()
	delete(st.watchers, id)
	delete(st.progress, id)
	st.mu.Unlock()
}

// tick sends, every progress interval (with up to 10% jitter, as etcd), a
// progress notification (the current revision, no events) to each
// progress_notify watcher that got no event since the previous tick.
func (st *watchStream) tick() {
	defer st.wg.Done()
	iv := st.s.opts.ProgressNotifyInterval
	t := time.NewTicker(iv + time.Duration(rand.Int64N(int64(iv)/10+1)))
	defer t.Stop()
	for {
		select {
		case <-st.ctx.Done():
			return
		case <-t.C:
		}
		st.mu.Lock()
		var ids []int64
		for id, quiet := range st.progress {
			if quiet {
				ids = append(ids, id)
			}
			st.progress[id] = true
		}
		st.mu.Unlock()
		slices.Sort(ids)
		for _, id := range ids {
			if err := st.send(&pb.WatchResponse{Header: st.s.hdr.at(st.s.st.Rev()), WatchId: id}); err != nil {
				return
			}
		}
	}
}

func (st *watchStream) closeAll() {
	st.mu.Lock()
	ws := st.watchers
	st.watchers = map[int64]*streamWatcher{}
	st.closed = true
	st.mu.Unlock()
	for _, sw := range ws {
		sw.once.Do(func() { close(sw.canceled) })
		if sw.w != nil {
			sw.w.Cancel()
		}
	}
}
