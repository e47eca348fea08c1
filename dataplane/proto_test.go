package dataplane

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	testpb "google.golang.org/grpc/interop/grpc_testing"
)

// grpcBackend implements the interop TestService: UnaryCall echoes the
// payload and sets a trailer; a payload "sleep" waits for the deadline;
// StreamingOutputCall streams one message per response parameter.
type grpcBackend struct {
	testpb.UnimplementedTestServiceServer
	sawDeadline chan time.Duration
}

func (g *grpcBackend) UnaryCall(ctx context.Context, in *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	_ = grpc.SetTrailer(ctx, metadata.Pairs("x-trailer", "t-value"))
	if string(in.GetPayload().GetBody()) == "sleep" {
		if dl, ok := ctx.Deadline(); ok {
			g.sawDeadline <- time.Until(dl)
		} else {
			g.sawDeadline <- -1
		}
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return &testpb.SimpleResponse{Payload: in.GetPayload()}, nil
}

func (g *grpcBackend) StreamingOutputCall(in *testpb.StreamingOutputCallRequest, s grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	for _, p := range in.GetResponseParameters() {
		if err := s.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: make([]byte, p.GetSize())}}); err != nil {
			return err
		}
	}
	s.SetTrailer(metadata.Pairs("x-stream-trailer", "done"))
	return nil
}

func (g *grpcBackend) FullDuplexCall(s grpc.BidiStreamingServer[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) error {
	for {
		in, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := s.Send(&testpb.StreamingOutputCallResponse{Payload: in.GetPayload()}); err != nil {
			return err
		}
	}
}

func startGRPC(t *testing.T) (string, *grpcBackend) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	g := &grpcBackend{sawDeadline: make(chan time.Duration, 1)}
	testpb.RegisterTestServiceServer(s, g)
	go s.Serve(l)
	t.Cleanup(s.Stop)
	return l.Addr().String(), g
}

func TestGRPCThroughProxy(t *testing.T) {
	e := newEnv(t, nil)
	addr, g := startGRPC(t)
	e.put("/apisix/routes/g", `{"uri":"/grpc.testing.TestService/*","upstream":{"scheme":"grpc","nodes":`+nodesJSON(addr)+`}}`)
	cc, err := grpc.NewClient(e.http, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	cl := testpb.NewTestServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	t.Run("unary with trailer", func(t *testing.T) {
		var tr metadata.MD
		r, err := cl.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("hi")}}, grpc.Trailer(&tr))
		if err != nil {
			t.Fatal(err)
		}
		if string(r.GetPayload().GetBody()) != "hi" {
			t.Fatalf("payload %q", r.GetPayload().GetBody())
		}
		if got := tr.Get("x-trailer"); len(got) != 1 || got[0] != "t-value" {
			t.Fatalf("trailer %v", tr)
		}
	})
	t.Run("server streaming", func(t *testing.T) {
		st, err := cl.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: 1}, {Size: 2}, {Size: 3}}})
		if err != nil {
			t.Fatal(err)
		}
		sizes := recvSizes(t, st)
		if len(sizes) != 3 || sizes[2] != 3 {
			t.Fatalf("sizes %v", sizes)
		}
		if got := st.Trailer().Get("x-stream-trailer"); len(got) != 1 || got[0] != "done" {
			t.Fatalf("stream trailer %v", st.Trailer())
		}
	})
	t.Run("bidirectional streaming, message by message", func(t *testing.T) {
		st, err := cl.FullDuplexCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range []string{"a", "bb", "ccc"} {
			if err := st.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte(m)}}); err != nil {
				t.Fatal(err)
			}
			// The reply must come back before the next message is sent:
			// neither direction is buffered to the end by the proxy.
			r, err := st.Recv()
			if err != nil || string(r.GetPayload().GetBody()) != m {
				t.Fatalf("echo of %q: %v %v", m, r, err)
			}
		}
		if err := st.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("end of stream: %v", err)
		}
	})
	t.Run("deadline becomes grpc-timeout", func(t *testing.T) {
		dctx, dcancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer dcancel()
		_, err := cl.UnaryCall(dctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("sleep")}})
		if status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("err %v, want DeadlineExceeded", err)
		}
		select {
		case d := <-g.sawDeadline:
			if d <= 0 || d > 300*time.Millisecond {
				t.Fatalf("backend deadline %v, want within 300ms", d)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("backend never saw the call")
		}
	})
}

func TestH2CAndSniffingOnOnePort(t *testing.T) {
	e := newEnv(t, nil)
	b := backend(t, "b")
	certPEM, keyPEM := selfSigned(t, "a.test.local")
	ssl, _ := json.Marshal(map[string]any{"cert": certPEM, "key": keyPEM, "snis": []string{"a.test.local"}})
	e.put("/apisix/ssls/s1", string(ssl))
	e.put("/apisix/routes/r", `{"uri":"/*","upstream":{"nodes":`+nodesJSON(b)+`}}`)

	h2c := &http.Client{Transport: &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, n, a string, _ *tls.Config) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, n, a)
	}}}
	tlsConf := &tls.Config{InsecureSkipVerify: true, ServerName: "a.test.local"}
	h1tls := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConf}}
	h2tls := &http.Client{Transport: &http2.Transport{TLSClientConfig: tlsConf}}
	cases := []struct {
		name   string
		c      *http.Client
		scheme string
		proto  string
	}{
		{"http/1.1", client, "http", "HTTP/1.1"},
		{"h2c prior knowledge", h2c, "http", "HTTP/2.0"},
		{"tls http/1.1", h1tls, "https", "HTTP/1.1"},
		{"tls h2 by ALPN", h2tls, "https", "HTTP/2.0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := c.c.Get(c.scheme + "://" + e.http + "/p")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(r.Body)
			r.Body.Close()
			if r.StatusCode != 200 || r.Proto != c.proto || !strings.HasPrefix(string(body), "b:") {
				t.Fatalf("status %d proto %s body %q", r.StatusCode, r.Proto, body)
			}
			if c.scheme == "https" && r.Header.Get("X-Seen-XFP") != "https" {
				t.Fatalf("X-Forwarded-Proto %q", r.Header.Get("X-Seen-XFP"))
			}
		})
	}
	t.Run("opaque bytes are refused on the http port", func(t *testing.T) {
		c, err := net.Dial("tcp", e.http)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte{0, 1, 2, 3})
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("expected the connection to be closed")
		}
	})
}

func TestWebSocket(t *testing.T) {
	e := newEnv(t, nil)
	up := websocket.Upgrader{}
	ws := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			mt, m, err := c.ReadMessage()
			if err != nil {
				return
			}
			c.WriteMessage(mt, append([]byte("echo:"), m...))
		}
	})}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	go ws.Serve(l)
	t.Cleanup(func() { ws.Close() })
	e.put("/apisix/routes/ws", `{"uri":"/ws","enable_websocket":true,"upstream":{"nodes":`+nodesJSON(l.Addr().String())+`}}`)
	c, _, err := websocket.DefaultDialer.Dial("ws://"+e.http+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, m := range []string{"one", "two"} {
		if err := c.WriteMessage(websocket.TextMessage, []byte(m)); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.ReadMessage()
		if err != nil || string(got) != "echo:"+m {
			t.Fatalf("got %q, %v", got, err)
		}
	}
}

// tcpEcho echoes until the client half-closes, then says "bye" and closes.
func tcpEcho(t *testing.T, greeting string) string {
	l := listen(t)
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if greeting != "" {
					c.Write([]byte(greeting))
				}
				io.Copy(c, c)
				c.Write([]byte("bye"))
			}()
		}
	}()
	return l.Addr().String()
}

func TestTCPStreamRouteHalfClose(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.StreamListen = "127.0.0.1:0" })
	echo := tcpEcho(t, "")
	e.put("/apisix/stream_routes/s", `{"upstream":{"nodes":`+nodesJSON(echo)+`}}`)
	c, err := net.Dial("tcp", e.stream)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("ping"))
	c.(*net.TCPConn).CloseWrite()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	all, err := io.ReadAll(c)
	if err != nil || string(all) != "pingbye" {
		t.Fatalf("got %q, %v (half-close must reach the backend and its reply come back)", all, err)
	}
}

func selfSigned(t *testing.T, names ...string) (string, string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(k)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}))
}

func TestStreamRouteMatching(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.StreamListen = "127.0.0.1:0" })
	one, two := tcpEcho(t, "one\n"), tcpEcho(t, "two\n")
	_, port, _ := net.SplitHostPort(e.stream)
	// Routes are tried in id order; the first whose conditions match wins.
	e.put("/apisix/stream_routes/a-sni", `{"sni":"a.test","upstream":{"nodes":`+nodesJSON(one)+`}}`)
	e.put("/apisix/stream_routes/b-remote", `{"remote_addr":"10.0.0.0/8","upstream":{"nodes":`+nodesJSON(one)+`}}`)
	e.put("/apisix/stream_routes/c-port", `{"server_port":`+port+`,"upstream":{"nodes":`+nodesJSON(two)+`}}`)
	greet := func(tlsSNI string) string {
		c, err := net.Dial("tcp", e.stream)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if tlsSNI != "" {
			c.Write(clientHello(t, tlsSNI, nil))
		}
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		return line
	}
	if got := greet("a.test"); got != "one\n" {
		t.Fatalf("sni a.test: %q", got)
	}
	if got := greet(""); got != "two\n" {
		t.Fatalf("no sni, loopback client: %q", got)
	}
	if got := greet("b.test"); got != "two\n" {
		t.Fatalf("other sni: %q", got)
	}
}

// recvSizes receives a server stream to its end and returns the sizes of
// the payloads.
func recvSizes(t *testing.T, st grpc.ServerStreamingClient[testpb.StreamingOutputCallResponse]) []int {
	t.Helper()
	var sizes []int
	for {
		m, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return sizes
		}
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(m.GetPayload().GetBody()))
	}
}
