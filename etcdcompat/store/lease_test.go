package store

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

func TestLeaseGrant(t *testing.T) {
	ctx := context.Background()
	s, _ := newTest(t, Options{})
	tests := []struct {
		name    string
		req     *pb.LeaseGrantRequest
		wantTTL int64
		err     error
	}{
		{"explicit id", &pb.LeaseGrantRequest{ID: 7, TTL: 10}, 10, nil},
		{"duplicate id", &pb.LeaseGrantRequest{ID: 7, TTL: 10}, 0, ErrLeaseExists},
		{"ttl below minimum", &pb.LeaseGrantRequest{ID: 8, TTL: 1}, minLeaseTTL, nil},
		{"negative ttl", &pb.LeaseGrantRequest{ID: 9, TTL: -5}, minLeaseTTL, nil},
		{"generated id", &pb.LeaseGrantRequest{TTL: 30}, 30, nil},
		{"ttl too large", &pb.LeaseGrantRequest{ID: 10, TTL: maxLeaseTTL + 1}, 0, ErrLeaseTTLTooLarge},
		{"max ttl", &pb.LeaseGrantRequest{ID: 11, TTL: maxLeaseTTL}, maxLeaseTTL, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := s.LeaseGrant(ctx, tc.req)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if err != nil {
				return
			}
			if r.TTL != tc.wantTTL || r.ID <= 0 || (tc.req.ID != 0 && r.ID != tc.req.ID) {
				t.Fatalf("grant = %+v", r)
			}
		})
	}
	ls, err := s.LeaseLeases(ctx, &pb.LeaseLeasesRequest{})
	if err != nil || len(ls.Leases) != 5 {
		t.Fatalf("leases: %+v %v", ls, err)
	}
	if s.Rev() != 1 {
		t.Fatal("granting leases must not bump the revision")
	}
}

func TestLeaseRevokeAndTTL(t *testing.T) {
	ctx := context.Background()
	s, clk := newTest(t, Options{})
	if _, err := s.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: 1, TTL: 60}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"b", "a", "c"} {
		if _, err := s.Put(ctx, &pb.PutRequest{Key: []byte(k), Value: []byte("v"), Lease: 1}); err != nil {
			t.Fatal(err)
		}
	}
	// Moving c off the lease detaches it.
	mustPut(t, s, "c", "no lease")
	clk.Advance(15500 * time.Millisecond)
	ttl, err := s.LeaseTimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: 1, Keys: true})
	if err != nil {
		t.Fatal(err)
	}
	if ttl.TTL != 44 || ttl.GrantedTTL != 60 || !reflect.DeepEqual(keysBytes(ttl.Keys), []string{"a", "b"}) {
		t.Fatalf("time to live: %+v", ttl)
	}
	if got, err := s.LeaseRenew(ctx, 1); err != nil || got != 60 {
		t.Fatalf("renew: %d %v", got, err)
	}
	if ttl, _ := s.LeaseTimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: 1}); ttl.TTL != 59 && ttl.TTL != 60 {
		t.Fatalf("ttl after renew: %d", ttl.TTL)
	}

	w, err := s.Watch(ctx, WatchOptions{Key: []byte{0}, RangeEnd: []byte{0}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Cancel()
	before := s.Rev()
	r, err := s.LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: 1})
	if err != nil || r.Header.Revision != before+1 {
		t.Fatalf("revoke: %+v %v", r, err)
	}
	resp := recv(t, w)
	if got := evSummary(resp.Events); !reflect.DeepEqual(got, []string{"DELETE a=", "DELETE b="}) || resp.Revision != before+1 {
		t.Fatalf("revoke events %v at %d", got, resp.Revision)
	}
	if mustGet(t, s, "c") == nil {
		t.Fatal("detached key deleted by revoke")
	}
	for name, err := range map[string]error{
		"revoke again": func() error { _, err := s.LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: 1}); return err }(),
		"renew":        func() error { _, err := s.LeaseRenew(ctx, 1); return err }(),
		"ttl":          func() error { _, err := s.LeaseTimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: 1}); return err }(),
	} {
		if !errors.Is(err, ErrLeaseNotFound) {
			t.Fatalf("%s after revoke: %v", name, err)
		}
	}
	// Revoking a lease without keys does not bump the revision.
	if _, err := s.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: 2, TTL: 60}); err != nil {
		t.Fatal(err)
	}
	rev := s.Rev()
	if _, err := s.LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: 2}); err != nil || s.Rev() != rev {
		t.Fatalf("revoke empty lease: %v, rev %d -> %d", err, rev, s.Rev())
	}
}

func TestLeaseExpiry(t *testing.T) {
	ctx := context.Background()
	s, clk := newTest(t, Options{})
	if _, err := s.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: 5, TTL: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: 6, TTL: 100}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"x", "y"} {
		if _, err := s.Put(ctx, &pb.PutRequest{Key: []byte(k), Value: []byte("v"), Lease: 5}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Put(ctx, &pb.PutRequest{Key: []byte("z"), Value: []byte("v"), Lease: 6}); err != nil {
		t.Fatal(err)
	}
	rev := s.Rev()
	clk.Advance(1900 * time.Millisecond)
	s.expiry.kick()
	time.Sleep(20 * time.Millisecond)
	if mustGet(t, s, "x") == nil {
		t.Fatal("lease expired early")
	}
	clk.Advance(200 * time.Millisecond)
	s.expiry.kick()
	deadline := time.Now().Add(5 * time.Second)
	for mustGet(t, s, "x") != nil {
		if time.Now().After(deadline) {
			t.Fatal("expired lease not revoked")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if mustGet(t, s, "y") != nil || mustGet(t, s, "z") == nil {
		t.Fatal("wrong keys deleted on expiry")
	}
	if s.Rev() != rev+1 {
		t.Fatalf("expiry took %d revisions, want 1", s.Rev()-rev)
	}
	if _, err := s.LeaseRenew(ctx, 5); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("renew expired: %v", err)
	}
	// Renewing an expired lease that the expirer has not reached yet
	// revokes it and reports it gone, as etcd.
	clk.Advance(100 * time.Second)
	if _, err := s.LeaseRenew(ctx, 6); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("renew expired: %v", err)
	}
	if mustGet(t, s, "z") != nil {
		t.Fatal("key of expired lease survived renew")
	}
}

func TestLeaseRealTimeExpiry(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a 2s lease")
	}
	ctx := context.Background()
	st, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	g, err := st.LeaseGrant(ctx, &pb.LeaseGrantRequest{TTL: 1})
	if err != nil || g.TTL != 2 {
		t.Fatalf("grant: %+v %v", g, err)
	}
	if _, err := st.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte("v"), Lease: g.ID}); err != nil {
		t.Fatal(err)
	}
	w, _ := st.Watch(ctx, WatchOptions{Key: []byte("k")})
	defer w.Cancel()
	start := time.Now()
	r := recv(t, w)
	if el := time.Since(start); len(r.Events) != 1 || el < 1500*time.Millisecond || el > 4*time.Second {
		t.Fatalf("expiry after %v: %v", el, evSummary(r.Events))
	}
}

func keysBytes(b [][]byte) []string {
	out := make([]string, len(b))
	for i := range b {
		out[i] = string(b[i])
	}
	return out
}
