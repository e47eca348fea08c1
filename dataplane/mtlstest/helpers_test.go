package mtlstest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/meshagent/meshagent/dataplane"
	"github.com/meshagent/meshagent/etcdcompat/apisix"
	"github.com/meshagent/meshagent/etcdcompat/store"
)

// SDS-style names the objects below use (Kuma's).
const (
	identityName = "identity_cert:secret:default"
	caName       = "mesh_ca:secret:default"
)

// logBuf collects a data plane's log lines.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if os.Getenv("MTLS_TEST_LOG") != "" {
		os.Stderr.Write(p)
	}
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitFor waits up to 3s for a log line containing all of subs.
func (l *logBuf) waitFor(t *testing.T, subs ...string) string {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		for _, line := range strings.Split(l.String(), "\n") {
			ok := true
			for _, s := range subs {
				ok = ok && strings.Contains(line, s)
			}
			if ok {
				return line
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q; logs:\n%s", subs, l.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func newLogger(l *logBuf) *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// agent is one meshagent: a store and a data plane.
type agent struct {
	t    testing.TB
	st   store.Store
	dp   *dataplane.Dataplane
	logs *logBuf
}

func newAgent(t testing.TB) *agent {
	t.Helper()
	st, err := store.New(store.Options{Decoder: apisix.Decode})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	logs := &logBuf{}
	dp, err := dataplane.New(dataplane.Options{
		Source: st, Logger: newLogger(logs),
		SniffTimeout: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := dp.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dp.Close() })
	return &agent{t: t, st: st, dp: dp, logs: logs}
}

// put writes v (JSON) at key and waits until the data plane compiled it.
func (a *agent) put(key string, v any) {
	a.t.Helper()
	if err := a.tryPut(key, v); err != nil {
		a.t.Fatalf("put %s: %v", key, err)
	}
}

func (a *agent) tryPut(key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	r, err := a.st.Put(context.Background(), &pb.PutRequest{Key: []byte(key), Value: b})
	if err != nil {
		return err
	}
	deadline := time.Now().Add(5 * time.Second)
	for a.dp.Revision() < r.Header.Revision {
		if time.Now().After(deadline) {
			a.t.Fatalf("data plane stuck at revision %d, want %d", a.dp.Revision(), r.Header.Revision)
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// listenerAddr waits for store listener id to be bound.
func (a *agent) listenerAddr(id string) string {
	a.t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		if ad, ok := a.dp.ListenerAddr(id); ok {
			return ad.String()
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("listener %s not bound; logs:\n%s", id, a.logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// identity installs a workload certificate as the SDS secret identityName
// (an ssl of type client) and the CA bundle as caName.
func (a *agent) identity(leaf *Leaf, caPEM string) {
	a.t.Helper()
	a.put("/apisix/ssls/identity", map[string]any{
		"type": "client", "cert": leaf.CertPEM, "key": leaf.KeyPEM,
		"labels": map[string]string{apisix.LabelXDSName: identityName},
	})
	if caPEM != "" {
		a.put(apisix.SecretPrefix+"mesh_ca", map[string]any{
			"trusted_ca": caPEM, "labels": map[string]string{apisix.LabelXDSName: caName},
		})
	}
}

// mtlsChain is an inbound filter chain terminating mTLS.
func mtlsChain(name, table string, match map[string]any, rbac any) map[string]any {
	c := map[string]any{
		"name": name, "kind": "http", "route_config": table,
		"tls": map[string]any{
			"secret_name": identityName, "ca_secret_name": caName, "require_client_certificate": true,
			"match_subject_alt_names": []string{"spiffe://default/*"},
		},
	}
	if match != nil {
		c["match"] = match
	}
	if rbac != nil {
		c["plugins"] = map[string]any{"rbac": rbac}
	}
	return c
}

// server sets up the server side: inbound listener "inbound" with chains,
// routed to backend. It returns the listener's address.
func (a *agent) server(backendAddr string, chains ...map[string]any) string {
	a.t.Helper()
	host, port, _ := net.SplitHostPort(backendAddr)
	p, _ := strconv.Atoi(port)
	a.put("/apisix/routes/inbound", map[string]any{
		"uri": "/*", "labels": map[string]string{apisix.LabelRouteConfig: "inbound:backend"},
		"upstream": map[string]any{"type": "roundrobin", "nodes": []map[string]any{{"host": host, "port": p, "weight": 1}}},
	})
	a.put(apisix.ListenerPrefix+"inbound", map[string]any{
		"address": "127.0.0.1:0", "direction": "inbound", "filter_chains": chains,
	})
	return a.listenerAddr("inbound")
}

// client sets up the client side: outbound listener "outbound" routed to
// an upstream originating mTLS to serverAddr, expecting serverSAN.
func (a *agent) client(serverAddr, serverSAN string) string {
	a.t.Helper()
	a.upstream(serverAddr, serverSAN)
	a.put("/apisix/routes/outbound", map[string]any{
		"uri": "/*", "labels": map[string]string{apisix.LabelRouteConfig: "outbound:backend"}, "upstream_id": "backend",
	})
	a.put(apisix.ListenerPrefix+"outbound", map[string]any{
		"address": "127.0.0.1:0", "direction": "outbound",
		"filter_chains": []map[string]any{{"name": "out", "kind": "http", "route_config": "outbound:backend"}},
	})
	return a.listenerAddr("outbound")
}

func (a *agent) upstream(serverAddr, serverSAN string) {
	a.t.Helper()
	host, port, _ := net.SplitHostPort(serverAddr)
	p, _ := strconv.Atoi(port)
	a.put("/apisix/upstreams/backend", map[string]any{
		"scheme": "https", "type": "roundrobin", "retries": 0,
		"nodes": []map[string]any{{"host": host, "port": p, "weight": 1}},
		"tls": map[string]any{
			"sni": "backend{mesh=default}", "alpn": []string{"kuma"},
			"secret_name": identityName, "ca_secret_name": caName,
			"match_subject_alt_names": []string{serverSAN},
		},
	})
}

// backend is a plain HTTP server that reports the identity header it got.
func backend(t testing.TB) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Seen-XFCC", r.Header.Get("X-Forwarded-Client-Cert"))
		_, _ = io.WriteString(w, "backend "+r.URL.Path)
	}))
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

// get sends one request through c and returns status, XFCC seen, error.
func get(c *http.Client, url string) (int, string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get("X-Seen-XFCC"), nil
}
