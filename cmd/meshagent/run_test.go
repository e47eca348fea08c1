package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// eventually polls fn until it returns "" or the deadline passes.
func eventually(t *testing.T, what string, fn func() string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		msg := fn()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s", what, msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func get(url string) (int, string) {
	r, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return r.StatusCode, string(b)
}

// TestRunStandaloneAndEtcd runs `meshagent run` with a standalone file and
// the etcd emulation: the file's routes serve, an object written through
// etcd's HTTP gateway takes effect, a file change is followed, and a bad
// file keeps the last good config.
func TestRunStandaloneAndEtcd(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "backend:"+r.URL.Path) }))
	defer be.Close()
	node := strings.TrimPrefix(be.URL, "http://")
	dir := t.TempDir()
	file := filepath.Join(dir, "apisix.yaml")
	write := func(uri string) {
		y := "routes:\n  - id: r1\n    uri: " + uri + "\n    upstream:\n      nodes:\n        \"" + node + "\": 1\n#END\n"
		if err := os.WriteFile(file, []byte(y), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("/file")
	httpAddr, etcdAddr, adminAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runRun(ctx, []string{"--apisix-yaml", file, "--http-listen", httpAddr, "--etcd-listen", etcdAddr,
			"--admin-listen", adminAddr, "--log-level", "error"})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run returned %v", err)
		}
	}()
	eventually(t, "ready", func() string {
		if st, _ := get("http://" + adminAddr + "/ready"); st != 200 {
			return fmt.Sprint("status ", st)
		}
		return ""
	})
	if st, body := get("http://" + httpAddr + "/file"); st != 200 || body != "backend:/file" {
		t.Fatalf("file route: %d %q", st, body)
	}
	// Through etcd's HTTP/JSON gateway, as lua-resty-etcd writes.
	key := base64.StdEncoding.EncodeToString([]byte("/apisix/routes/r2"))
	val := base64.StdEncoding.EncodeToString([]byte(`{"uri":"/etcd","plugins":{"fault-injection":{"abort":{"http_status":201,"body":"via-etcd"}}}}`))
	r, err := http.Post("http://"+etcdAddr+"/v3/kv/put", "", strings.NewReader(`{"key":"`+key+`","value":"`+val+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	eventually(t, "route written through etcd", func() string {
		if st, body := get("http://" + httpAddr + "/etcd"); st != 201 || body != "via-etcd" {
			return fmt.Sprintf("%d %q", st, body)
		}
		return ""
	})
	// The file changes: followed.
	time.Sleep(10 * time.Millisecond)
	write("/file2")
	eventually(t, "file change", func() string {
		if st, _ := get("http://" + httpAddr + "/file2"); st != 200 {
			return fmt.Sprint("status ", st)
		}
		return ""
	})
	// A bad file: the last good config stays.
	if err := os.WriteFile(file, []byte("routes:\n  - id: r1\n    uri: 12\n    bogus: true\n#END\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1200 * time.Millisecond)
	if st, _ := get("http://" + httpAddr + "/file2"); st != 200 {
		t.Fatalf("bad file replaced the good config: %d", st)
	}
}

func TestRunFlagErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{}, "config source is required"},
		{[]string{"--apisix-yaml", "x.yaml", "--http-listen", "nope"}, "--http-listen"},
		{[]string{"--apisix-yaml", filepath.Join(t.TempDir(), "missing.yaml"), "--http-listen", "127.0.0.1:0"}, "--apisix-yaml"},
	}
	for _, c := range cases {
		err := runRun(context.Background(), c.args)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err %v, want %q", c.args, err, c.want)
		}
	}
}
