package etcdcompat

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gwruntime "github.com/grpc-ecosystem/grpc-gateway/runtime"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"

	"github.com/meshagent/meshagent/etcdcompat/store"
)

// side is one server under differential test: the embedded etcd or an
// etcdcompat server on a fresh store. Results are rendered as normalized
// strings: cluster/member ids and raft term removed, revisions relative to
// the revision at the start of the test, lease ids numbered by first
// appearance.
type side struct {
	name  string
	base  string // http://host:port
	cli   *clientv3.Client
	kv    pb.KVClient
	lease pb.LeaseClient
	watch pb.WatchClient
	rev0  int64
	lids  map[string]string
	http  *http.Client
	tok   *tokenCache // auth tests only
}

// sides returns the reference etcd and a fresh etcdcompat server, both
// positioned at their current revision.
func sides(t *testing.T) []*side {
	t.Helper()
	return []*side{newSide(t, "etcd", refEtcd.clientURL), newSide(t, "etcdcompat", startCompat(t, Options{}).url)}
}

// compat is a running etcdcompat server for a test.
type compat struct {
	srv *Server
	st  store.Store
	url string
}

// startCompat serves a fresh store (nil decoder) on a loopback port until
// the test ends.
func startCompat(t testing.TB, o Options) *compat {
	t.Helper()
	st, err := store.New(store.Options{HistoryLimit: 100000})
	if err != nil {
		t.Fatal(err)
	}
	o.Store = st
	srv, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-done; err != ErrServerClosed {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
		_ = st.Close()
	})
	return &compat{srv: srv, st: st, url: "http://" + l.Addr().String()}
}

func newSide(t testing.TB, name, base string) *side {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{base}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	s := &side{name: name, base: base, cli: cli, kv: pb.NewKVClient(cli.ActiveConnection()),
		lease: pb.NewLeaseClient(cli.ActiveConnection()), watch: pb.NewWatchClient(cli.ActiveConnection()),
		lids: map[string]string{}, http: &http.Client{Timeout: 10 * time.Second}}
	resp, err := s.kv.Range(context.Background(), &pb.RangeRequest{Key: []byte("\x00probe")})
	if err != nil {
		t.Fatalf("%s: probe: %v", name, err)
	}
	s.rev0 = resp.Header.Revision
	return s
}

// rev is the absolute revision n writes after the start of the test.
func (s *side) rev(n int64) int64 { return s.rev0 + n }

var jsonpb = &gwruntime.JSONPb{OrigName: true}

// res renders a gRPC result.
func (s *side) res(m protoadapt.MessageV1, err error) string {
	if err != nil {
		st, _ := status.FromError(err)
		return fmt.Sprintf("ERR %s %q", st.Code(), st.Message())
	}
	b, merr := jsonpb.Marshal(m)
	if merr != nil {
		return "MARSHAL " + merr.Error()
	}
	return s.normJSON(b)
}

// post sends body to path without Content-Type, as lua-resty-etcd does,
// and renders status and normalized body.
func (s *side) post(t testing.TB, path, body string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		t.Fatalf("%s: POST %s: %v", s.name, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: POST %s: read: %v", s.name, path, err)
	}
	return fmt.Sprintf("%d %s", resp.StatusCode, s.normJSON(b))
}

var revFields = map[string]bool{"revision": true, "create_revision": true, "mod_revision": true,
	"compact_revision": true, "min_mod_revision": true, "max_mod_revision": true}

// normJSON normalizes a JSON document (or returns the text unchanged if it
// is not JSON).
func (s *side) normJSON(b []byte) string {
	var v any
	if !json.Valid(b) {
		return "RAW " + strconv.Quote(string(b))
	}
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return "RAW " + strconv.Quote(string(b))
	}
	v = s.norm("", v)
	out, _ := json.Marshal(v)
	return string(out)
}

func (s *side) norm(key string, v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			switch k {
			case "cluster_id", "member_id", "raft_term":
				x[k] = "X" // the value differs, its presence must not
			default:
				x[k] = s.norm(k, e)
			}
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = s.norm(key, e)
		}
		if key == "keys" { // timetolive lists a lease's keys in map order
			sort.Slice(x, func(i, j int) bool { return fmt.Sprint(x[i]) < fmt.Sprint(x[j]) })
		}
		return x
	case string:
		n, err := strconv.ParseInt(x, 10, 64)
		if err != nil {
			return x
		}
		return s.normInt(key, n)
	case json.Number:
		n, err := x.Int64()
		if err != nil {
			return x
		}
		return s.normInt(key, n)
	}
	return v
}

func (s *side) normInt(key string, n int64) any {
	switch {
	case revFields[key] && n > 0:
		return fmt.Sprintf("rev0%+d", n-s.rev0)
	case (key == "ID" || key == "lease") && n > 0:
		k := strconv.FormatInt(n, 10)
		if l, ok := s.lids[k]; ok {
			return l
		}
		l := fmt.Sprintf("lease#%d", len(s.lids)+1)
		s.lids[k] = l
		return l
	}
	return strconv.FormatInt(n, 10)
}

var prefixSeq atomic.Int64

// keyPrefix is a key prefix no earlier test used in this process: the
// reference etcd is shared by all tests. It starts with 0xff so that a
// range "from key to the end" only sees keys written later.
func keyPrefix(t testing.TB) string {
	return fmt.Sprintf("\xff%06d/%s/", prefixSeq.Add(1), t.Name())
}

// step is one operation of a differential test, run on both sides.
type step struct {
	name string
	do   func(t *testing.T, s *side) string
}

// runDiff runs steps in order on every side and fails on the first
// difference from the reference etcd.
func runDiff(t *testing.T, steps []step) {
	t.Helper()
	runDiffOn(t, sides(t), steps)
}

// runDiffOn is runDiff on given sides, the reference first.
func runDiffOn(t *testing.T, ss []*side, steps []step) {
	t.Helper()
	for _, st := range steps {
		var want string
		for i, s := range ss {
			got := st.do(t, s)
			if i == 0 {
				want = got
				t.Logf("%s: %.2000s", st.name, got)
				continue
			}
			if got != want {
				t.Errorf("%s:\n etcd:       %s\n etcdcompat: %s", st.name, want, got)
			}
		}
	}
}

// readLines reads n newline-terminated messages from a streaming HTTP
// body, each normalized, failing after timeout.
func (s *side) readLines(t testing.TB, r *bufio.Reader, n int, timeout time.Duration) []string {
	t.Helper()
	type line struct {
		s   string
		err error
	}
	ch := make(chan line, n)
	go func() {
		for i := 0; i < n; i++ {
			l, err := r.ReadString('\n')
			ch <- line{l, err}
			if err != nil {
				return
			}
		}
	}()
	var out []string
	deadline := time.After(timeout)
	for len(out) < n {
		select {
		case l := <-ch:
			if l.err != nil {
				t.Fatalf("%s: reading stream after %d lines: %v (%q)", s.name, len(out), l.err, l.s)
			}
			out = append(out, s.normJSON([]byte(l.s)))
		case <-deadline:
			t.Fatalf("%s: %d of %d stream messages after %v: %v", s.name, len(out), n, timeout, out)
		}
	}
	return out
}
