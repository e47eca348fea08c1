package dataplane

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	testpb "google.golang.org/grpc/interop/grpc_testing"
)

// recConn is a client connection that keeps what it read, so that the
// frames the server sent can be parsed afterwards.
type recConn struct {
	net.Conn
	mu     sync.Mutex
	in     bytes.Buffer
	failed chan struct{} // closed when a read fails: the connection is over
	once   sync.Once
}

func (c *recConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.in.Write(p[:n])
	c.mu.Unlock()
	if err != nil {
		c.once.Do(func() { close(c.failed) })
	}
	return n, err
}

// goAways returns the GOAWAY frames read so far.
func (c *recConn) goAways() []http2.GoAwayFrame {
	c.mu.Lock()
	buf := bytes.Clone(c.in.Bytes())
	c.mu.Unlock()
	fr := http2.NewFramer(nil, bytes.NewReader(buf))
	fr.SetMaxReadFrameSize(1 << 24)
	var out []http2.GoAwayFrame
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return out
		}
		if g, ok := f.(*http2.GoAwayFrame); ok {
			out = append(out, http2.GoAwayFrame{LastStreamID: g.LastStreamID, ErrCode: g.ErrCode})
		}
	}
}

// waitGoAway waits for the GOAWAY of c and returns it.
func (c *recConn) waitGoAway(t *testing.T) http2.GoAwayFrame {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if g := c.goAways(); len(g) > 0 {
			return g[0]
		}
		if time.Now().After(deadline) {
			t.Fatal("no GOAWAY")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitClosed waits until the connection of c is over.
func (c *recConn) waitClosed(t *testing.T) {
	t.Helper()
	select {
	case <-c.failed:
	case <-time.After(5 * time.Second):
		t.Fatal("drained connection still open")
	}
}

// dialLog dials from source address src and keeps the connections.
type dialLog struct {
	src   string
	mu    sync.Mutex
	conns []*recConn
}

func (d *dialLog) dial(ctx context.Context, addr string) (net.Conn, error) {
	nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(d.src)}}
	c, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	rc := &recConn{Conn: c, failed: make(chan struct{})}
	d.mu.Lock()
	d.conns = append(d.conns, rc)
	d.mu.Unlock()
	return rc, nil
}

func (d *dialLog) get() []*recConn {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]*recConn(nil), d.conns...)
}

// h2cClient is an h2c (prior knowledge) client whose connections d dials.
func (d *dialLog) h2cClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http2.Transport{AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, _, a string, _ *tls.Config) (net.Conn, error) {
			return d.dial(ctx, a)
		}}}
}

// slowBackend answers its name; on /slow, "first", then "second" once
// release is closed.
func slowBackend(t *testing.T, name string, release chan struct{}) string {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/slow" {
			_, _ = io.WriteString(w, name)
			return
		}
		_, _ = io.WriteString(w, "first")
		w.(http.Flusher).Flush()
		select {
		case <-release:
			_, _ = io.WriteString(w, "second")
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

func h2Get(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	r, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// drainEnv is a listener whose chain "a" takes 127.0.0.1, chain "b"
// 127.0.0.2, routing to backends a and b (route configs rc-a, rc-b).
func drainEnv(t *testing.T, a, b string) (*env, string) {
	e := newEnv(t, nil)
	e.put("/apisix/routes/ra", `{"uri":"/*","labels":{"meshagent.route_config":"rc-a"},"upstream":{"nodes":`+nodesJSON(a)+`}}`)
	e.put("/apisix/routes/rb", `{"uri":"/*","labels":{"meshagent.route_config":"rc-b"},"upstream":{"nodes":`+nodesJSON(b)+`}}`)
	e.put("/meshagent/listeners/l", listenerJSON("127.0.0.1:0", drainChain("a", "rc-a", "127.0.0.1"), drainChain("b", "rc-b", "127.0.0.2")))
	waitListener(t, e, "l")
	addr, ok := e.dp.ListenerAddr("l")
	if !ok {
		t.Fatal("listener not bound")
	}
	return e, addr.String()
}

func drainChain(name, rc, src string) string {
	return fmt.Sprintf(`{"name":%q,"kind":"http","route_config":%q,"match":{"source_prefix_ranges":[%q]}}`, name, rc, src+"/32")
}

// An HTTP/2 connection whose filter chain changes gets GOAWAY (NO_ERROR,
// the last stream it took), its stream in flight completes, the client's
// next request goes on a new connection (the new chain) and the old one
// closes; a connection of an unchanged chain goes on, until its listener
// goes.
func TestH2DrainOnChainChange(t *testing.T) {
	release := make(chan struct{})
	e, addr := drainEnv(t, slowBackend(t, "a", release), slowBackend(t, "b", nil))
	da, db := &dialLog{src: "127.0.0.1"}, &dialLog{src: "127.0.0.2"}
	ca, cb := da.h2cClient(), db.h2cClient()
	url := "http://" + addr
	if got := h2Get(t, ca, url+"/x"); got != "a" { // stream 1
		t.Fatalf("chain a: %q", got)
	}
	if got := h2Get(t, cb, url+"/x"); got != "b" {
		t.Fatalf("chain b: %q", got)
	}
	req, _ := http.NewRequest("GET", url+"/slow", nil)
	req.Header.Set("Accept", "text/event-stream") // streamed, not buffered
	slow, err := ca.Do(req)                       // stream 3, in flight
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Body.Close()
	first := make([]byte, 5)
	if _, err := io.ReadFull(slow.Body, first); err != nil || string(first) != "first" {
		t.Fatalf("first chunk %q, %v", first, err)
	}

	// Chain a changes (to route config rc-b), chain b does not.
	e.put("/meshagent/listeners/l", listenerJSON("127.0.0.1:0", drainChain("a", "rc-b", "127.0.0.1"), drainChain("b", "rc-b", "127.0.0.2")))
	waitListener(t, e, "l")
	old := da.get()[0]
	if g := old.waitGoAway(t); g.LastStreamID != 3 || g.ErrCode != http2.ErrCodeNo {
		t.Fatalf("GOAWAY last stream %d, code %v; want 3, NO_ERROR", g.LastStreamID, g.ErrCode)
	}
	if got := h2Get(t, ca, url+"/x"); got != "b" {
		t.Fatalf("after the change: %q, want the new chain's b", got)
	}
	if n := len(da.get()); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
	close(release)
	rest, err := io.ReadAll(slow.Body)
	if err != nil || string(rest) != "second" {
		t.Fatalf("stream in flight: %q, %v", rest, err)
	}
	old.waitClosed(t)

	// Chain b's connection was left alone.
	if got := h2Get(t, cb, url+"/x"); got != "b" {
		t.Fatalf("chain b after the change: %q", got)
	}
	bc := db.get()
	if len(bc) != 1 || len(bc[0].goAways()) != 0 {
		t.Fatalf("chain b: %d connections, GOAWAY %v", len(bc), bc[0].goAways())
	}
	if e.dp.stats.H2Drained.Load() != 1 {
		t.Fatalf("h2_drained %d, want 1", e.dp.stats.H2Drained.Load())
	}
	// The listener goes: its connections are drained.
	e.del("/meshagent/listeners/l")
	if g := bc[0].waitGoAway(t); g.LastStreamID != 3 || g.ErrCode != http2.ErrCodeNo {
		t.Fatalf("GOAWAY last stream %d, code %v; want 3, NO_ERROR", g.LastStreamID, g.ErrCode)
	}
	bc[0].waitClosed(t)
}

// After its GOAWAY a draining connection refuses new streams
// (REFUSED_STREAM), and closes at the drain timeout with a stream still
// open.
func TestH2DrainRefusesAndTimesOut(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	e, addr := drainEnv(t, slowBackend(t, "a", release), slowBackend(t, "b", nil))
	e.dp.servers.h2drain = 300 * time.Millisecond
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fr := http2.NewFramer(c, c)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	headers := func(id uint32) {
		hb.Reset()
		for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "x"}, {":path", "/slow"}, {"accept", "text/event-stream"}} {
			_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	_ = fr.WriteSettings()
	headers(1)
	// next returns the next frame other than SETTINGS, WINDOW_UPDATE, PING.
	next := func() http2.Frame {
		t.Helper()
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatal(err)
			}
			switch f.(type) {
			case *http2.SettingsFrame, *http2.WindowUpdateFrame, *http2.PingFrame:
				continue
			}
			return f
		}
	}
	if f, ok := next().(*http2.HeadersFrame); !ok || f.StreamID != 1 {
		t.Fatalf("want the response HEADERS of stream 1, got %v", f)
	}
	if f, ok := next().(*http2.DataFrame); !ok || string(f.Data()) != "first" {
		t.Fatalf("want DATA first, got %v", f)
	}
	e.put("/meshagent/listeners/l", listenerJSON("127.0.0.1:0", drainChain("a", "rc-b", "127.0.0.1"), drainChain("b", "rc-b", "127.0.0.2")))
	g, ok := next().(*http2.GoAwayFrame)
	if !ok || g.LastStreamID != 1 || g.ErrCode != http2.ErrCodeNo {
		t.Fatalf("want GOAWAY 1 NO_ERROR, got %v", g)
	}
	headers(3)
	if f, ok := next().(*http2.RSTStreamFrame); !ok || f.StreamID != 3 || f.ErrCode != http2.ErrCodeRefusedStream {
		t.Fatalf("want RST_STREAM 3 REFUSED_STREAM, got %v", f)
	}
	start := time.Now()
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatal("connection not closed at the drain timeout")
				}
			}
			break
		}
		if d, ok := f.(*http2.DataFrame); ok && d.StreamEnded() {
			t.Fatal("stream 1 ended: the backend never finished it")
		}
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("closed after %v, drain timeout 300ms", d)
	}
}

// A gRPC stream in flight when its filter chain changes completes; the
// client, told by GOAWAY, makes its next call on a new connection, and
// the old one closes.
func TestGRPCDrainOnChainChange(t *testing.T) {
	be, _ := startGRPC(t)
	e := newEnv(t, nil)
	e.put("/apisix/routes/g", `{"uri":"/grpc.testing.TestService/*","labels":{"meshagent.route_config":"rc-g"},"upstream":{"scheme":"grpc","nodes":`+nodesJSON(be)+`}}`)
	e.put("/meshagent/listeners/l", listenerJSON("127.0.0.1:0", `{"name":"g","kind":"http","route_config":"rc-g"}`))
	waitListener(t, e, "l")
	addr, ok := e.dp.ListenerAddr("l")
	if !ok {
		t.Fatal("listener not bound")
	}
	d := &dialLog{src: "127.0.0.1"}
	cc, err := grpc.NewClient(addr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithContextDialer(d.dial))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	cl := testpb.NewTestServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := cl.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	echo := func(s string) {
		t.Helper()
		if err := st.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte(s)}}); err != nil {
			t.Fatal(err)
		}
		m, err := st.Recv()
		if err != nil || string(m.GetPayload().GetBody()) != s {
			t.Fatalf("echo %q: %v, %v", s, m, err)
		}
	}
	echo("one")
	// The chain changes (its name only): the connection drains.
	e.put("/meshagent/listeners/l", listenerJSON("127.0.0.1:0", `{"name":"g2","kind":"http","route_config":"rc-g"}`))
	waitListener(t, e, "l")
	old := d.get()[0]
	if g := old.waitGoAway(t); g.LastStreamID != 1 || g.ErrCode != http2.ErrCodeNo {
		t.Fatalf("GOAWAY last stream %d, code %v; want 1, NO_ERROR", g.LastStreamID, g.ErrCode)
	}
	r, err := cl.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("new")}})
	if err != nil || string(r.GetPayload().GetBody()) != "new" {
		t.Fatalf("unary after the change: %v, %v", r, err)
	}
	if n := len(d.get()); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
	echo("two") // the stream in flight goes on
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("end of stream: %v", err)
	}
	old.waitClosed(t)
}
