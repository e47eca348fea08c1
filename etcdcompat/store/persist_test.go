package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

func TestPersistenceRoundTrip(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "store.json")
	var calls atomic.Int64
	s1, err := New(Options{DataFile: file, Decoder: routeDecoder(&calls)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s1.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: 3, TTL: 100}); err != nil {
		t.Fatal(err)
	}
	mustPut(t, s1, "/apisix/routes/1", `{"uri":"/a"}`)
	mustPut(t, s1, "/apisix/routes/1", `{"uri":"/b"}`)
	if _, err := s1.Put(ctx, &pb.PutRequest{Key: []byte("leased"), Value: []byte("x"), Lease: 3}); err != nil {
		t.Fatal(err)
	}
	mustPut(t, s1, "gone", "x")
	if _, err := s1.DeleteRange(ctx, &pb.DeleteRangeRequest{Key: []byte("gone")}); err != nil {
		t.Fatal(err)
	}
	// Writes are coalesced: the file appears shortly after the changes.
	deadline := time.Now().Add(3 * time.Second)
	for {
		if _, err := os.Stat(file); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("data file not written within 3s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	mustPut(t, s1, "last", "y") // only guaranteed on disk by Close
	rev := s1.Rev()
	want, _ := s1.Range(ctx, &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}})
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}

	s2, err := New(Options{DataFile: file, Decoder: routeDecoder(&calls)})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if s2.Rev() != rev || s2.CompactRev() != rev {
		t.Fatalf("reloaded rev %d compact %d, want %d", s2.Rev(), s2.CompactRev(), rev)
	}
	got, _ := s2.Range(ctx, &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}})
	if !sameMsg(got, want) {
		t.Fatalf("reloaded data:\n got %v\nwant %v", got, want)
	}
	objs, _ := s2.Objects("/apisix/routes/")
	if len(objs) != 1 || objs[0].Value.(*route).URI != "/b" {
		t.Fatalf("objects after reload: %+v", objs)
	}
	ttl, err := s2.LeaseTimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: 3, Keys: true})
	if err != nil || ttl.GrantedTTL != 100 || len(ttl.Keys) != 1 || string(ttl.Keys[0]) != "leased" {
		t.Fatalf("lease after reload: %+v %v", ttl, err)
	}
	// History before the restart is gone; revisions continue.
	if _, err := s2.Watch(ctx, WatchOptions{Key: []byte("x"), StartRevision: rev - 1}); !errors.Is(err, ErrCompacted) {
		t.Fatalf("watch before reload: %v", err)
	}
	if r := mustPut(t, s2, "after", "z"); r.Header.Revision != rev+1 {
		t.Fatalf("revision after reload: %d", r.Header.Revision)
	}
	// Revoking the restored lease deletes its restored key.
	if _, err := s2.LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: 3}); err != nil || mustGet(t, s2, "leased") != nil {
		t.Fatalf("revoke after reload: %v", err)
	}
}

func TestCorruptDataFile(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, content, want string
	}{
		{"not json", "{nope", "invalid character"},
		{"unknown field", `{"format":1,"revision":5,"bogus":1}`, "unknown field"},
		{"wrong format", `{"format":2,"revision":5}`, "format"},
		{"zero revision", `{"format":1,"revision":0}`, "revision"},
		{"compact above revision", `{"format":1,"revision":5,"compact_revision":6}`, "compact_revision"},
		{"unsorted keys", `{"format":1,"revision":5,"kvs":[{"key":"Yg==","create_revision":1,"mod_revision":1,"version":1},{"key":"YQ==","create_revision":1,"mod_revision":1,"version":1}]}`, "sorted"},
		{"mod above revision", `{"format":1,"revision":5,"kvs":[{"key":"YQ==","create_revision":1,"mod_revision":9,"version":1}]}`, "mod_revision"},
		{"unknown lease", `{"format":1,"revision":5,"kvs":[{"key":"YQ==","create_revision":1,"mod_revision":1,"version":1,"lease":4}]}`, "lease"},
		{"trailing garbage", `{"format":1,"revision":5} {}`, "trailing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_"))
			if err := os.WriteFile(file, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := New(Options{DataFile: file})
			if !errors.Is(err, ErrCorruptDataFile) || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want corrupt-file error naming %s and %q", err, file, tc.want)
			}
		})
	}
}

func TestMissingDataFileStartsFresh(t *testing.T) {
	file := filepath.Join(t.TempDir(), "sub", "none.json")
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{DataFile: file})
	if err != nil {
		t.Fatal(err)
	}
	if s.Rev() < time.Now().Add(-time.Minute).UnixMilli() {
		t.Fatalf("fresh store revision %d", s.Rev())
	}
	mustPut(t, s, "k", "v")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("data file after close: %v", err)
	}
	// No temp files left behind.
	ents, _ := os.ReadDir(filepath.Dir(file))
	if len(ents) != 1 {
		t.Fatalf("files in data dir: %v", ents)
	}
}

// FuzzParseDataFile: the data file parser never panics, and whatever it
// accepts loads into a store that serves it.
func FuzzParseDataFile(f *testing.F) {
	f.Add([]byte(`{"format":1,"revision":5,"compact_revision":5,"kvs":[{"key":"YQ==","value":"eA==","create_revision":1,"mod_revision":2,"version":2,"lease":7}],"leases":[{"id":7,"ttl":10}]}`))
	f.Add([]byte(`{"format":1,"revision":1}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := parseDataFile(b)
		if err != nil {
			return
		}
		file := filepath.Join(t.TempDir(), "f.json")
		if err := os.WriteFile(file, b, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := New(Options{DataFile: file})
		if err != nil {
			t.Fatalf("accepted file does not load: %v", err)
		}
		defer s.Close()
		r, err := s.Range(context.Background(), &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, CountOnly: true})
		if err != nil || r.Count != int64(len(d.KVs)) || s.Rev() != d.Revision {
			t.Fatalf("loaded %v keys at %d, file has %d at %d (%v)", r.GetCount(), s.Rev(), len(d.KVs), d.Revision, err)
		}
	})
}
