// Package plugintest runs plugins the way production does, for tests: a
// real store, a real data plane listening on loopback, and a real echo
// backend. Objects are written through the store (as any config source
// would) and requests go over real HTTP. It is imported only by tests.
package plugintest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/meshagent/meshagent/dataplane"
	"github.com/meshagent/meshagent/etcdcompat/apisix"
	"github.com/meshagent/meshagent/etcdcompat/store"
)

// Env is one store + data plane + backend.
type Env struct {
	T       testing.TB
	Store   store.Store
	DP      *dataplane.Dataplane
	Addr    string // the data plane's HTTP address
	Backend *httptest.Server
	Client  *http.Client
	logs    *syncBuffer
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// Logs returns everything the data plane logged so far.
func (e *Env) Logs() string {
	e.logs.mu.Lock()
	defer e.logs.mu.Unlock()
	return e.logs.b.String()
}

// Rejected writes route id with plugins and checks the data plane rejected
// it with an error naming want (a field), while serving the rest.
func (e *Env) Rejected(id, uri, plugins, want string) {
	e.T.Helper()
	before := e.DP.Stats().ConfigRejected.Load()
	e.Route(id, uri, plugins)
	if e.DP.Stats().ConfigRejected.Load() == before {
		e.T.Errorf("%s: not rejected", plugins)
		return
	}
	if !strings.Contains(e.Logs(), want) {
		e.T.Errorf("%s: rejection does not name %q; logs:\n%s", plugins, want, e.Logs())
	}
}

// New starts an Env; everything stops at test cleanup. The backend echoes
// the request: status 200, JSON body with method, path, query and headers.
func New(t testing.TB) *Env {
	t.Helper()
	st, err := store.New(store.Options{Decoder: apisix.Decode})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	logs := &syncBuffer{}
	dp, err := dataplane.New(dataplane.Options{Source: st, HTTPListen: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := dp.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dp.Close() })
	be := httptest.NewServer(http.HandlerFunc(Echo))
	t.Cleanup(be.Close)
	return &Env{T: t, Store: st, DP: dp, Addr: dp.Addrs()[0].String(), Backend: be,
		Client: &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}, logs: logs}
}

// Echoed is what the echo backend answers.
type Echoed struct {
	Method  string              `json:"method"`
	Path    string              `json:"path"`
	Query   string              `json:"query"`
	Headers map[string][]string `json:"headers"`
}

// Echo is the backend handler.
func Echo(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Backend", "echo")
	_ = json.NewEncoder(w).Encode(Echoed{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Headers: r.Header})
}

// BackendNode is the backend as an upstream nodes map.
func (e *Env) BackendNode() string {
	return fmt.Sprintf(`{%q: 1}`, strings.TrimPrefix(e.Backend.URL, "http://"))
}

// Put writes one object (JSON) at key, failing the test on error.
func (e *Env) Put(key, value string) {
	e.T.Helper()
	if err := e.TryPut(key, value); err != nil {
		e.T.Fatalf("put %s: %v", key, err)
	}
}

// TryPut writes one object and waits for the data plane to rebuild.
func (e *Env) TryPut(key, value string) error {
	r, err := e.Store.Put(context.Background(), &pb.PutRequest{Key: []byte(key), Value: []byte(value)})
	if err != nil {
		return err
	}
	deadline := time.Now().Add(3 * time.Second)
	for e.DP.Revision() < r.Header.Revision {
		if time.Now().After(deadline) {
			return fmt.Errorf("data plane did not reach revision %d", r.Header.Revision)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return nil
}

// Route writes route id on uri with the given plugins JSON object,
// proxying to the backend.
func (e *Env) Route(id, uri, plugins string) {
	e.T.Helper()
	e.Put("/apisix/routes/"+id, fmt.Sprintf(`{"uri":%q,"plugins":%s,"upstream":{"type":"roundrobin","nodes":%s}}`, uri, plugins, e.BackendNode()))
}

// Consumer writes a consumer with plugins.
func (e *Env) Consumer(username, plugins string) {
	e.T.Helper()
	e.Put("/apisix/consumers/"+username, fmt.Sprintf(`{"username":%q,"plugins":%s}`, username, plugins))
}

// Response is a read response.
type Response struct {
	Status int
	Header http.Header
	Body   string
}

// JSON decodes the body into v, failing the test on error.
func (r *Response) JSON(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(r.Body), v); err != nil {
		t.Fatalf("body %q: %v", r.Body, err)
	}
}

// Do sends a request through the data plane, failing the test on a
// transport error. headers are "Name: value". Call it from the test's
// goroutine; load loops use TryDo.
func (e *Env) Do(method, path string, headers ...string) *Response {
	e.T.Helper()
	r, err := e.TryDo(method, path, headers...)
	if err != nil {
		e.T.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

// TryDo sends a request through the data plane; safe from any goroutine.
func (e *Env) TryDo(method, path string, headers ...string) (*Response, error) {
	req, err := http.NewRequest(method, "http://"+e.Addr+path, nil)
	if err != nil {
		return nil, err
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		if strings.EqualFold(k, "host") {
			req.Host = strings.TrimSpace(v)
			continue
		}
		req.Header.Add(k, strings.TrimSpace(v))
	}
	resp, err := e.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}, nil
}

// Listen returns a loopback listener (for extra backends).
func Listen(t testing.TB) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// ServeSlow serves HTTP on ln, holding every request until release is
// closed, then answering 200 "slow".
func ServeSlow(ln net.Listener, release <-chan struct{}) {
	_ = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		<-release
		_, _ = io.WriteString(w, "slow")
	}))
}
