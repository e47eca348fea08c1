package store

import (
	"context"
	"math/rand/v2"
	"sort"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

const (
	// minLeaseTTL is what a single-member etcd 3.5 with default timing
	// grants at least: ceil(3/2 * election timeout of 1s) = 2 seconds.
	minLeaseTTL = 2
	// maxLeaseTTL is etcd's lease.MaxLeaseTTL.
	maxLeaseTTL = 9000000000
	// expiryTick bounds how late an expired lease is revoked.
	expiryTick = 500 * time.Millisecond
)

// lease is a granted lease; keys are the keys attached to it.
type lease struct {
	id     int64
	ttl    int64
	expiry time.Time
	keys   map[string]struct{}
}

func (s *memStore) attachLease(id int64, key string) {
	if l := s.leases[id]; l != nil {
		l.keys[key] = struct{}{}
	}
}

func (s *memStore) detachLease(id int64, key string) {
	if l := s.leases[id]; l != nil {
		delete(l.keys, key)
	}
}

// LeaseGrant implements Store. ID 0 picks a random positive id.
func (s *memStore) LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	if r.TTL > maxLeaseTTL {
		return nil, ErrLeaseTTLTooLarge
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	id := r.ID
	for id == 0 || (r.ID == 0 && s.leases[id] != nil) {
		id = rand.Int64()
	}
	if s.leases[id] != nil {
		return nil, ErrLeaseExists
	}
	ttl := r.TTL
	if ttl < minLeaseTTL {
		ttl = minLeaseTTL
	}
	l := &lease{id: id, ttl: ttl, keys: make(map[string]struct{})}
	l.expiry = s.now().Add(time.Duration(ttl) * time.Second)
	s.leases[id] = l
	s.markDirty()
	s.expiry.kick()
	return &pb.LeaseGrantResponse{Header: &pb.ResponseHeader{Revision: s.rev}, ID: id, TTL: ttl}, nil
}

// LeaseRevoke implements Store: the lease's keys are deleted at one
// revision (none if it had no keys).
func (s *memStore) LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.isClosed() {
		return nil, ErrClosed
	}
	rev, err := s.revokeLocked(r.ID)
	if err != nil {
		return nil, err
	}
	return &pb.LeaseRevokeResponse{Header: &pb.ResponseHeader{Revision: rev}}, nil
}

// revokeLocked deletes lease id and its keys. The caller holds wmu.
func (s *memStore) revokeLocked(id int64) (int64, error) {
	l := s.leases[id]
	if l == nil {
		return 0, ErrLeaseNotFound
	}
	keys := make([]string, 0, len(l.keys))
	for k := range l.keys {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	w := s.beginWrite()
	for _, k := range keys {
		if ki := s.idx.get([]byte(k)); ki != nil && ki.latest() != nil {
			w.deleteKey(ki)
		}
	}
	delete(s.leases, id)
	rev := w.readRev()
	w.commit()
	s.markDirty()
	return rev, nil
}

// LeaseRenew implements Store. An expired lease is revoked first and then
// reported as not found, as etcd does.
func (s *memStore) LeaseRenew(ctx context.Context, id int64) (int64, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.isClosed() {
		return -1, ErrClosed
	}
	l := s.leases[id]
	if l == nil {
		return -1, ErrLeaseNotFound
	}
	now := s.now()
	if !now.Before(l.expiry) {
		if _, err := s.revokeLocked(id); err != nil {
			return -1, err
		}
		return -1, ErrLeaseNotFound
	}
	s.mu.Lock()
	l.expiry = now.Add(time.Duration(l.ttl) * time.Second)
	s.mu.Unlock()
	return l.ttl, nil
}

// LeaseTimeToLive implements Store. TTL is the remaining time in whole
// seconds (truncated, as etcd); Keys are sorted. An unknown lease is
// ErrLeaseNotFound (etcd's edge then answers TTL -1).
func (s *memStore) LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	l := s.leases[r.ID]
	if l == nil {
		return nil, ErrLeaseNotFound
	}
	resp := &pb.LeaseTimeToLiveResponse{
		Header:     &pb.ResponseHeader{Revision: s.rev},
		ID:         r.ID,
		TTL:        int64(l.expiry.Sub(s.now()).Seconds()),
		GrantedTTL: l.ttl,
	}
	if r.Keys {
		ks := make([]string, 0, len(l.keys))
		for k := range l.keys {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		resp.Keys = make([][]byte, len(ks))
		for i, k := range ks {
			resp.Keys[i] = []byte(k)
		}
	}
	return resp, nil
}

// LeaseLeases implements Store; leases are sorted by ID.
func (s *memStore) LeaseLeases(ctx context.Context, r *pb.LeaseLeasesRequest) (*pb.LeaseLeasesResponse, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	ids := make([]int64, 0, len(s.leases))
	for id := range s.leases {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	resp := &pb.LeaseLeasesResponse{Header: &pb.ResponseHeader{Revision: s.rev}, Leases: make([]*pb.LeaseStatus, len(ids))}
	for i, id := range ids {
		resp.Leases[i] = &pb.LeaseStatus{ID: id}
	}
	return resp, nil
}

// expirer revokes expired leases from a background goroutine, each lease
// at its own revision.
type expirer struct {
	s     *memStore
	kickC chan struct{}
	stopC chan struct{}
	doneC chan struct{}
}

func newExpirer(s *memStore) *expirer {
	e := &expirer{s: s, kickC: make(chan struct{}, 1), stopC: make(chan struct{}), doneC: make(chan struct{})}
	go e.run()
	return e
}

// kick makes the expirer look at the leases now.
func (e *expirer) kick() {
	select {
	case e.kickC <- struct{}{}:
	default:
	}
}

func (e *expirer) stop() {
	close(e.stopC)
	<-e.doneC
}

func (e *expirer) run() {
	defer close(e.doneC)
	t := time.NewTicker(expiryTick)
	defer t.Stop()
	for {
		select {
		case <-e.stopC:
			return
		case <-t.C:
		case <-e.kickC:
		}
		e.revokeExpired()
	}
}

func (e *expirer) revokeExpired() {
	s := e.s
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.isClosed() {
		return
	}
	now := s.now()
	var expired []int64
	for id, l := range s.leases {
		if !now.Before(l.expiry) {
			expired = append(expired, id)
		}
	}
	sort.Slice(expired, func(i, j int) bool { return expired[i] < expired[j] })
	for _, id := range expired {
		if _, err := s.revokeLocked(id); err != nil {
			s.log.Error("store: revoking expired lease", "lease", id, "err", err)
			continue
		}
		s.log.Debug("store: lease expired", "lease", id)
	}
}
