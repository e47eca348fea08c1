package etcdcompat

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strings"

	gwruntime "github.com/grpc-ecosystem/grpc-gateway/runtime"
	"github.com/tmc/grpc-websocket-proxy/wsproxy"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/etcdserverpb/gw"
	"go.etcd.io/etcd/api/v3/version"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
)

// gateway is etcd's HTTP/JSON gateway: etcd's generated grpc-gateway v1
// handlers, connected to the gRPC server through an in-memory listener.
type gateway struct {
	handler http.Handler
	lis     *bufconn.Listener
	conn    *grpc.ClientConn
	cancel  context.CancelFunc
}

// bufconnSize is the buffer of each in-process connection.
const bufconnSize = 1 << 20

func newGateway(s *Server) (*gateway, error) {
	g := &gateway{lis: bufconn.Listen(bufconnSize)}
	go func() { _ = s.grpc.Serve(g.lis) }()
	conn, err := grpc.NewClient("passthrough:///etcdcompat-inprocess",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return g.lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32), grpc.ForceCodec(codec{})),
	)
	if err != nil {
		_ = g.lis.Close()
		return nil, fmt.Errorf("etcdcompat: gateway connection: %w", err)
	}
	g.conn = conn
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel

	// etcd 3.5 (server/embed/serve.go) uses the mux's defaults: the
	// JSONPb{OrigName: true} marshaler for every content type, so
	// requests without Content-Type work, int64 are strings and zero
	// values are omitted. gatewayMarshaler is that marshaler, with a
	// reflection-free encoder for Range replies giving identical bytes.
	mux := gwruntime.NewServeMux(gwruntime.WithMarshalerOption(gwruntime.MIMEWildcard,
		gatewayMarshaler{JSONPb: &gwruntime.JSONPb{OrigName: true}, rc: s.rc}))
	registerLocalRange(mux, s)
	for _, register := range []func(context.Context, *gwruntime.ServeMux, *grpc.ClientConn) error{
		gw.RegisterKVHandler, gw.RegisterWatchHandler, gw.RegisterLeaseHandler,
		gw.RegisterClusterHandler, gw.RegisterMaintenanceHandler, gw.RegisterAuthHandler,
	} {
		if err := register(ctx, mux, conn); err != nil {
			g.close()
			return nil, fmt.Errorf("etcdcompat: gateway: %w", err)
		}
	}
	httpmux := http.NewServeMux()
	httpmux.Handle("/v3/", wsproxy.WebsocketProxy(mux,
		wsproxy.WithRequestMutator(func(_ *http.Request, out *http.Request) *http.Request {
			out.Method = http.MethodPost // streams are POSTs
			return out
		}),
		wsproxy.WithMaxRespBodyBufferSize(math.MaxInt32),
		wsproxy.WithLogger(wsLogger{s.log}),
	))
	httpmux.HandleFunc("/version", serveVersion)
	httpmux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) { serveHealth(s, w, r) })
	g.handler = accessController{mux: httpmux, maxBody: int64(2 * (s.opts.MaxRequestBytes + grpcOverheadBytes))}
	return g, nil
}

func (g *gateway) close() {
	if g.cancel != nil {
		g.cancel()
	}
	if g.conn != nil {
		_ = g.conn.Close()
	}
	_ = g.lis.Close()
}

// accessController does what etcd's does in front of its mux with the
// default configuration (CORS "*", any host): old API prefixes are served
// as /v3/, CORS headers are added, OPTIONS is answered 200. In addition it
// bounds request bodies (except watch streams) to maxBody: twice the
// largest gRPC message, room for its base64 in JSON, so that an oversized
// body fails while it is read instead of being held in memory.
type accessController struct {
	mux     *http.ServeMux
	maxBody int64
}

func (a accessController) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	for _, old := range []string{"/v3beta/", "/v3alpha/"} {
		if strings.HasPrefix(r.URL.Path, old) {
			r.URL.Path = "/v3/" + strings.TrimPrefix(r.URL.Path, old)
			r.URL.RawPath = ""
			break
		}
	}
	h := w.Header()
	h.Add("Access-Control-Allow-Methods", "POST, GET, OPTIONS, PUT, DELETE")
	h.Add("Access-Control-Allow-Origin", "*")
	h.Add("Access-Control-Allow-Headers", "accept, content-type, authorization")
	if r.Method == http.MethodOptions {
		w.WriteHeader(http.StatusOK)
		return
	}
	if r.Body != nil && r.URL.Path != "/v3/watch" {
		r.Body = http.MaxBytesReader(w, r.Body, a.maxBody)
	}
	a.mux.ServeHTTP(w, r)
}

// serveVersion answers GET /version as etcd 3.5 does.
func serveVersion(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	b, _ := json.Marshal(version.Versions{Server: ServerVersion, Cluster: ClusterVersion})
	_, _ = w.Write(b)
}

// serveHealth answers GET /health as a healthy etcd 3.5 does; it fails
// only when the store is closed.
func serveHealth(s *Server, w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if _, err := s.st.Range(r.Context(), &pb.RangeRequest{Key: []byte("health"), CountOnly: true}); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"health":"false","reason":"RANGE ERROR"}`))
		return
	}
	_, _ = w.Write([]byte(`{"health":"true","reason":""}`))
}

// wsLogger adapts slog to the websocket proxy's logger.
type wsLogger struct{ l *slog.Logger }

func (w wsLogger) Warnln(v ...any)  { w.l.Warn(fmt.Sprint(v...), "component", "wsproxy") }
func (w wsLogger) Debugln(v ...any) { w.l.Debug(fmt.Sprint(v...), "component", "wsproxy") }
