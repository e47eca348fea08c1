// Package admin is meshagent's admin HTTP endpoint, bound to loopback:
// /ready (200 once the first complete configuration is applied, 503
// before), /config_dump (the translated objects from the store with their
// xDS names and versions, private keys redacted), /xds_status (per
// resource type: version, nonce, last ACK, last NACK and its message) and
// /quitquitquit (graceful exit), plus /stats (counters).
//
// It owns the HTTP surface and redaction only. It reads the store through
// a one-method interface and takes readiness, status and quit as funcs, so
// it imports neither the xDS client nor the data plane.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/meshagent/meshagent/etcdcompat/apisix"
)

// Ranger reads the store (store.Store satisfies it).
type Ranger interface {
	Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error)
}

// Options configure New.
type Options struct {
	// Listen is the loopback host:port to serve on (e.g. 127.0.0.1:15000).
	Listen string
	// Store is read by /config_dump. Required.
	Store Ranger
	// Ready reports readiness for /ready. Required.
	Ready func() bool
	// XDSStatus returns a JSON-encodable sync status for /xds_status; nil
	// answers 404 (no xDS source configured).
	XDSStatus func() any
	// Quit is called once by POST /quitquitquit; nil answers 404.
	Quit func()
	// Stats returns JSON-encodable counters for /stats; nil answers 404.
	Stats func() any
	// Prefixes are the store prefixes dumped (default /apisix/ and
	// /meshagent/).
	Prefixes []string
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
}

// Errors of New.
var (
	ErrNotLoopback = errors.New("admin: listen address must be a loopback address")
	ErrOptions     = errors.New("admin: invalid options")
)

// Server is a running admin endpoint.
type Server struct {
	o    Options
	log  *slog.Logger
	lis  net.Listener
	srv  *http.Server
	done chan struct{}
	quit chan struct{}
}

// New validates o and binds the listener; Serve is started at once.
func New(o Options) (*Server, error) {
	if o.Store == nil || o.Ready == nil {
		return nil, fmt.Errorf("%w: Store and Ready are required", ErrOptions)
	}
	host, _, err := net.SplitHostPort(o.Listen)
	if err != nil {
		return nil, fmt.Errorf("admin: listen %q: %w", o.Listen, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("%w: %q", ErrNotLoopback, o.Listen)
	}
	if len(o.Prefixes) == 0 {
		o.Prefixes = []string{"/apisix/", "/meshagent/"}
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	lis, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return nil, fmt.Errorf("admin: listen %s: %w", o.Listen, err)
	}
	s := &Server{o: o, log: log, lis: lis, done: make(chan struct{}), quit: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ready", s.ready)
	mux.HandleFunc("GET /config_dump", s.configDump)
	mux.HandleFunc("GET /xds_status", s.xdsStatus)
	mux.HandleFunc("POST /quitquitquit", s.quitquitquit)
	mux.HandleFunc("GET /stats", s.stats)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin: serve", "err", err)
		}
	}()
	return s, nil
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.lis.Addr() }

// Close stops serving.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	<-s.done
	return err
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away: nothing to do
}

func (s *Server) ready(w http.ResponseWriter, _ *http.Request) {
	if s.o.Ready() {
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("ready\n"))
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = w.Write([]byte("not ready: no complete configuration applied yet\n"))
}

func (s *Server) xdsStatus(w http.ResponseWriter, _ *http.Request) {
	if s.o.XDSStatus == nil {
		http.Error(w, "no xDS source configured", http.StatusNotFound)
		return
	}
	writeJSON(w, http.StatusOK, s.o.XDSStatus())
}

func (s *Server) stats(w http.ResponseWriter, _ *http.Request) {
	if s.o.Stats == nil {
		http.Error(w, "no stats", http.StatusNotFound)
		return
	}
	writeJSON(w, http.StatusOK, s.o.Stats())
}

func (s *Server) quitquitquit(w http.ResponseWriter, _ *http.Request) {
	if s.o.Quit == nil {
		http.Error(w, "quit not supported", http.StatusNotFound)
		return
	}
	select {
	case <-s.quit:
	default:
		close(s.quit)
		s.log.Info("admin: /quitquitquit received; shutting down")
		go s.o.Quit()
	}
	_, _ = w.Write([]byte("OK\n"))
}

// DumpObject is one object of /config_dump.
type DumpObject struct {
	Key         string          `json:"key"`
	ModRevision int64           `json:"mod_revision"`
	XDSName     string          `json:"xds_name,omitempty"`
	XDSVersion  string          `json:"xds_version,omitempty"`
	Value       json.RawMessage `json:"value"`
}

// Dump is the /config_dump document.
type Dump struct {
	Revision int64        `json:"revision"`
	Objects  []DumpObject `json:"objects"`
}

func rangeEnd(prefix string) []byte {
	b := []byte(prefix)
	b[len(b)-1]++
	return b
}

func (s *Server) configDump(w http.ResponseWriter, r *http.Request) {
	d := Dump{Objects: []DumpObject{}}
	onlyXDS := r.URL.Query().Get("source") == "xds"
	for _, p := range s.o.Prefixes {
		resp, err := s.o.Store.Range(r.Context(), &pb.RangeRequest{Key: []byte(p), RangeEnd: rangeEnd(p)})
		if err != nil {
			http.Error(w, "store: "+err.Error(), http.StatusInternalServerError)
			return
		}
		if resp.GetHeader().GetRevision() > d.Revision {
			d.Revision = resp.GetHeader().GetRevision()
		}
		for _, kv := range resp.Kvs {
			obj := DumpObject{Key: string(kv.Key), ModRevision: kv.ModRevision}
			var v any
			if err := json.Unmarshal(kv.Value, &v); err != nil {
				// Not JSON (e.g. init_dir placeholders): dumped as a string.
				if strings.Contains(string(kv.Value), "PRIVATE KEY") {
					v = redacted
				} else {
					v = string(kv.Value)
				}
			}
			v = Redact(v)
			if m, ok := v.(map[string]any); ok {
				if l, ok := m["labels"].(map[string]any); ok {
					obj.XDSName, _ = l[apisix.LabelXDSName].(string)
					obj.XDSVersion, _ = l[apisix.LabelXDSVersion].(string)
				}
			}
			if onlyXDS && obj.XDSName == "" {
				continue
			}
			b, err := json.Marshal(v)
			if err != nil {
				http.Error(w, "encode: "+err.Error(), http.StatusInternalServerError)
				return
			}
			obj.Value = b
			d.Objects = append(d.Objects, obj)
		}
	}
	writeJSON(w, http.StatusOK, d)
}

const redacted = "[redacted]"

// secretFields are JSON fields that always hold private key material.
var secretFields = map[string]bool{"client_key": true, "private_key": true, "privateKey": true}

// Redact replaces private key material in a decoded JSON value: fields
// client_key and private_key, key and keys next to a cert or certs field
// (ssl objects; an upstream's chash "key" is kept), and every string
// holding a PEM private key, wherever it is.
func Redact(v any) any {
	switch t := v.(type) {
	case map[string]any:
		_, hasCert := t["cert"]
		_, hasCerts := t["certs"]
		for k, val := range t {
			if secretFields[k] || ((k == "key" || k == "keys") && (hasCert || hasCerts)) {
				if _, isStr := val.(string); isStr || isStrings(val) {
					t[k] = redacted
					continue
				}
			}
			t[k] = Redact(val)
		}
		return t
	case []any:
		for i := range t {
			t[i] = Redact(t[i])
		}
		return t
	case string:
		if strings.Contains(t, "PRIVATE KEY") {
			return redacted
		}
	}
	return v
}

func isStrings(v any) bool {
	a, ok := v.([]any)
	if !ok {
		return false
	}
	for _, e := range a {
		if _, ok := e.(string); !ok {
			return false
		}
	}
	return true
}
