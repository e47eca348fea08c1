package apisix

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/meshagent/meshagent/etcdcompat/store"
)

func newTestStore(t *testing.T) store.Store {
	t.Helper()
	st, err := store.New(store.Options{Decoder: Decode})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// kvs returns key -> (value, mod revision) under /.
func kvs(t *testing.T, st store.Store) map[string]*struct {
	val string
	mod int64
} {
	t.Helper()
	resp, err := st.Range(context.Background(), &pb.RangeRequest{Key: []byte("/"), RangeEnd: []byte("0")})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*struct {
		val string
		mod int64
	}{}
	for _, kv := range resp.Kvs {
		out[string(kv.Key)] = &struct {
			val string
			mod int64
		}{string(kv.Value), kv.ModRevision}
	}
	return out
}

// decoded returns the decoded objects under prefix (placeholders, which
// decode to nil, are skipped).
func decoded(st store.Store, prefix string) []store.Object {
	all, _ := st.Objects(prefix)
	var out []store.Object
	for _, o := range all {
		if o.Value != nil {
			out = append(out, o)
		}
	}
	return out
}

func put(t *testing.T, st store.Store, k, v string) {
	t.Helper()
	if _, err := st.Put(context.Background(), &pb.PutRequest{Key: []byte(k), Value: []byte(v)}); err != nil {
		t.Fatal(err)
	}
}

func TestSyncStandalone(t *testing.T) {
	ctx := context.Background()
	st := newTestStore(t)
	// Keys the sync must leave alone.
	put(t, st, "/apisix/plugins", `[{"name":"x"}]`)
	put(t, st, "/apisix/secrets/vault/1", `{"uri":"http://v"}`)
	put(t, st, "/meshagent/listeners/l1", `{"address":"127.0.0.1:0","filter_chains":[{"kind":"http","route_config":"rc"}]}`)
	// A stale object the file does not have.
	put(t, st, "/apisix/routes/stale", `{"uri":"/old","plugins":{}}`)

	s, err := LoadStandalone([]byte(sampleYAML))
	if err != nil {
		t.Fatal(err)
	}
	if err := SyncStandalone(ctx, st, s, DefaultPrefix); err != nil {
		t.Fatal(err)
	}
	got := kvs(t, st)
	for _, it := range s.Items() {
		k := Key(DefaultPrefix, it.Kind, it.ID)
		if got[k] == nil || got[k].val != string(it.JSON) {
			t.Fatalf("%s not synced: %+v", k, got[k])
		}
	}
	for _, d := range InitDirs(DefaultPrefix) {
		if got[d] == nil || got[d].val != InitDirValue {
			t.Fatalf("placeholder %s missing", d)
		}
	}
	if got["/apisix/routes/stale"] != nil {
		t.Fatal("stale route not deleted")
	}
	for _, k := range []string{"/apisix/plugins", "/apisix/secrets/vault/1", "/meshagent/listeners/l1"} {
		if got[k] == nil {
			t.Fatalf("%s was removed", k)
		}
	}
	// The data plane sees decoded objects.
	objs := decoded(st, "/apisix/routes/")
	if len(objs) != 2 || objs[0].Value.(*Route).ID != "arr_2" || objs[1].Value.(*Route).ID != "r1" {
		t.Fatalf("decoded routes %+v", objs)
	}

	// Syncing the same file again writes nothing.
	rev := st.Rev()
	if err := SyncStandalone(ctx, st, s, DefaultPrefix); err != nil {
		t.Fatal(err)
	}
	if st.Rev() != rev {
		t.Fatalf("no-op sync moved the revision %d -> %d", rev, st.Rev())
	}

	// Change one route, drop the proto: only those keys move, in one revision.
	changed := strings.Replace(sampleYAML, "uri: /hello", "uri: /hello2", 1)
	changed = strings.Replace(changed, "protos:\n  - id: p1\n    content: |\n      syntax = \"proto3\";\n", "", 1)
	s2, err := LoadStandalone([]byte(changed))
	if err != nil {
		t.Fatal(err)
	}
	if err := SyncStandalone(ctx, st, s2, DefaultPrefix); err != nil {
		t.Fatal(err)
	}
	after := kvs(t, st)
	if st.Rev() != rev+1 {
		t.Fatalf("change took %d revisions, want 1", st.Rev()-rev)
	}
	if after["/apisix/routes/r1"].mod != rev+1 || !strings.Contains(after["/apisix/routes/r1"].val, "/hello2") {
		t.Fatalf("changed route %+v", after["/apisix/routes/r1"])
	}
	if after["/apisix/protos/p1"] != nil {
		t.Fatal("removed proto still stored")
	}
	for k, v := range got {
		if k == "/apisix/routes/r1" || k == "/apisix/protos/p1" {
			continue
		}
		if after[k] == nil || after[k].mod != v.mod {
			t.Fatalf("unchanged %s moved: %+v -> %+v", k, v, after[k])
		}
	}
}

func TestSyncStandaloneLarge(t *testing.T) {
	var b strings.Builder
	b.WriteString("routes:\n")
	for i := range 300 {
		fmt.Fprintf(&b, "  - {id: r%d, uri: /r%d, plugins: {}}\n", i, i)
	}
	b.WriteString("#END\n")
	s, err := LoadStandalone([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	st := newTestStore(t)
	if err := SyncStandalone(context.Background(), st, s, DefaultPrefix); err != nil {
		t.Fatal(err)
	}
	objs := decoded(st, "/apisix/routes/")
	if len(objs) != 300 {
		t.Fatalf("%d routes stored, want 300", len(objs))
	}
	empty, _ := LoadStandalone([]byte("#END"))
	if err := SyncStandalone(context.Background(), st, empty, DefaultPrefix); err != nil {
		t.Fatal(err)
	}
	if objs := decoded(st, "/apisix/routes/"); len(objs) != 0 {
		t.Fatalf("%d routes left after emptying the file", len(objs))
	}
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestWatchStandaloneFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "apisix.yaml")
	write := func(content string, mtime time.Time) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	base := time.Now().Add(-time.Hour)
	write("routes:\n  - {id: r1, uri: /v1, plugins: {}}\n#END\n", base)

	st := newTestStore(t)
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- WatchStandaloneFile(ctx, path, st, logger) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("watch returned %v", err)
		}
	})

	waitURI := func(want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			objs := decoded(st, "/apisix/routes/r1")
			if len(objs) == 1 && objs[0].Value.(*Route).URI == want {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("route r1 never got uri %s; logs:\n%s", want, logs.String())
	}
	waitURI("/v1")

	write("routes:\n  - {id: r1, uri: /v2, plugins: {}}\n#END\n", base.Add(time.Second))
	waitURI("/v2")

	// A bad file is logged with the field named; the last good config stays.
	write("routes:\n  - {id: r1, uri: /v3, plugins: {}, upstream_id: \"a b\"}\n#END\n", base.Add(2*time.Second))
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "upstream_id: must be") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), `routes[0] (id \"r1\", line 2): upstream_id: must be`) {
		t.Fatalf("rejection not logged with the field: %s", logs.String())
	}
	waitURI("/v2")

	write("routes:\n  - {id: r1, uri: /v4, plugins: {}}\n#END\n", base.Add(3*time.Second))
	waitURI("/v4")
}

func TestWatchStandaloneFileBadStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "apisix.yaml")
	if err := os.WriteFile(path, []byte("routes: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := WatchStandaloneFile(context.Background(), path, newTestStore(t), nil)
	if err == nil || !strings.Contains(err.Error(), "#END") {
		t.Fatalf("bad start: %v", err)
	}
}

// FollowStandaloneFile does not sync an unchanged file again, and a change
// made between the caller's sync and the start of following is not lost.
func TestFollowStandaloneFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "apisix.yaml")
	base := time.Now().Add(-time.Hour)
	write := func(content string, mtime time.Time) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name    string
		between bool // the file changes after the sync, before following
		want    string
		reload  bool
	}{
		{"unchanged file is not synced again", false, "/v1", false},
		{"change before following is synced", true, "/v2", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			write("routes:\n  - {id: r1, uri: /v1, plugins: {}}\n#END\n", base)
			st := newTestStore(t)
			since := StatStandaloneFile(path)
			if since.ModTime.IsZero() {
				t.Fatal("no stamp for an existing file")
			}
			if _, err := SyncStandaloneFile(context.Background(), path, st); err != nil {
				t.Fatal(err)
			}
			if tc.between {
				write("routes:\n  - {id: r1, uri: /v2, plugins: {}}\n#END\n", base.Add(time.Second))
			}
			logs := &syncBuffer{}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- FollowStandaloneFile(ctx, path, st, slog.New(slog.NewTextHandler(logs, nil)), since) }()
			time.Sleep(3 * PollInterval)
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("follow returned %v", err)
			}
			objs := decoded(st, "/apisix/routes/r1")
			if len(objs) != 1 || objs[0].Value.(*Route).URI != tc.want {
				t.Fatalf("route r1 = %+v, want uri %s", objs, tc.want)
			}
			if got := strings.Contains(logs.String(), "standalone config reloaded"); got != tc.reload {
				t.Fatalf("reloaded logged = %v, want %v; logs:\n%s", got, tc.reload, logs.String())
			}
		})
	}
	if (StatStandaloneFile(filepath.Join(t.TempDir(), "missing.yaml")) != StandaloneStamp{}) {
		t.Fatal("a missing file has a stamp")
	}
}
