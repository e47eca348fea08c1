package dataplane

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/meshagent/meshagent/etcdcompat/apisix"
	"github.com/meshagent/meshagent/etcdcompat/store"
	_ "github.com/meshagent/meshagent/plugins/faultinjection"
	_ "github.com/meshagent/meshagent/plugins/proxyrewrite"
	_ "github.com/meshagent/meshagent/plugins/trafficsplit"
)

// env is a real store plus a data plane listening on loopback.
type env struct {
	t  testing.TB
	st store.Store
	dp *Dataplane
	// http is the static HTTP listener's address.
	http string
	// stream is the static stream listener's address ("" if none).
	stream string
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("DP_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func newEnv(t testing.TB, mod func(*Options)) *env {
	t.Helper()
	st, err := store.New(store.Options{Decoder: apisix.Decode})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	o := Options{Source: st, Logger: testLogger(t), HTTPListen: "127.0.0.1:0", SniffTimeout: 100 * time.Millisecond}
	if mod != nil {
		mod(&o)
	}
	dp, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := dp.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dp.Close() })
	e := &env{t: t, st: st, dp: dp}
	addrs := dp.Addrs()
	i := 0
	if o.HTTPListen != "" {
		e.http = addrs[i].String()
		i++
	}
	if o.StreamListen != "" {
		e.stream = addrs[i].String()
	}
	return e
}

// put writes an object and waits until the data plane compiled it.
func (e *env) put(key, value string) {
	e.t.Helper()
	if err := e.tryPut(key, value); err != nil {
		e.t.Fatalf("put %s: %v", key, err)
	}
}

func (e *env) tryPut(key, value string) error {
	r, err := e.st.Put(context.Background(), &pb.PutRequest{Key: []byte(key), Value: []byte(value)})
	if err != nil {
		return err
	}
	e.wait(r.Header.Revision)
	return nil
}

func (e *env) del(key string) {
	e.t.Helper()
	r, err := e.st.DeleteRange(context.Background(), &pb.DeleteRangeRequest{Key: []byte(key)})
	if err != nil {
		e.t.Fatal(err)
	}
	e.wait(r.Header.Revision)
}

func (e *env) wait(rev int64) {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for e.dp.Revision() < rev {
		if time.Now().After(deadline) {
			e.t.Fatalf("data plane stuck at revision %d, want %d", e.dp.Revision(), rev)
		}
		time.Sleep(time.Millisecond)
	}
}

// backend is an HTTP/1.1 server that describes each request it gets.
func backend(t *testing.T, name string) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Backend", name)
		w.Header().Set("X-Seen-Host", r.Host)
		w.Header().Set("X-Seen-Path", r.URL.RequestURI())
		w.Header().Set("X-Seen-Method", r.Method)
		w.Header().Set("X-Seen-XFF", r.Header.Get("X-Forwarded-For"))
		w.Header().Set("X-Seen-XFP", r.Header.Get("X-Forwarded-Proto"))
		w.Header().Set("X-Seen-XFPort", r.Header.Get("X-Forwarded-Port"))
		for k, v := range r.Header {
			if strings.HasPrefix(k, "X-Test-") {
				w.Header().Set("X-Echo-"+k[len("X-Test-"):], strings.Join(v, ","))
			}
		}
		if d := r.URL.Query().Get("sleep"); d != "" {
			if dd, err := time.ParseDuration(d); err == nil {
				time.Sleep(dd)
			}
		}
		fmt.Fprintf(w, "%s:%s", name, body)
	}))
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

// deadAddr returns a loopback address nobody listens on.
func deadAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close()
	return a
}

func nodesJSON(addrs ...string) string {
	var parts []string
	for _, a := range addrs {
		h, p, _ := net.SplitHostPort(a)
		parts = append(parts, fmt.Sprintf(`{"host":%q,"port":%s,"weight":1}`, h, p))
	}
	return "[" + strings.Join(parts, ",") + "]"
}

var client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

type resp struct {
	status int
	h      http.Header
	body   string
}

func (e *env) get(path string, hdr ...string) resp {
	e.t.Helper()
	return e.do("GET", path, "", hdr...)
}

func (e *env) do(method, path, body string, hdr ...string) resp {
	e.t.Helper()
	req, _ := http.NewRequest(method, "http://"+e.http+path, strings.NewReader(body))
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	r, err := client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return resp{r.StatusCode, r.Header, string(b)}
}

// dialStream connects to e's stream listener, with a deadline of d on
// the connection; it is closed when the test ends.
func dialStream(t *testing.T, e *env, d time.Duration) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", e.stream)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(d))
	return c.(*net.TCPConn)
}
