package dataplane

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	testpb "google.golang.org/grpc/interop/grpc_testing"
)

// countingListener counts the connections it accepted.
type countingListener struct {
	net.Listener
	n atomic.Int32
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// serveGRPC serves the grpcBackend test service with opts on l.
func serveGRPC(t testing.TB, l net.Listener, svc testpb.TestServiceServer, opts ...grpc.ServerOption) *grpc.Server {
	s := grpc.NewServer(opts...)
	testpb.RegisterTestServiceServer(s, svc)
	go s.Serve(l)
	t.Cleanup(s.Stop)
	return s
}

// grpcProxy routes the test service to the nodes at addrs and returns a
// client connected through the proxy.
func grpcProxy(t testing.TB, opts []grpc.DialOption, addrs ...string) testpb.TestServiceClient {
	e := newEnv(t, nil)
	e.put("/apisix/routes/g", `{"uri":"/grpc.testing.TestService/*","upstream":{"scheme":"grpc","nodes":`+nodesJSON(addrs...)+`}}`)
	opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	cc, err := grpc.NewClient(e.http, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return testpb.NewTestServiceClient(cc)
}

func listen(t testing.TB) net.Listener {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// Many concurrent calls share the upstream connections; a node's
// MAX_CONCURRENT_STREAMS makes the proxy open more.
func TestGRPCManyConcurrentStreams(t *testing.T) {
	l := &countingListener{Listener: listen(t)}
	serveGRPC(t, l, &grpcBackend{}, grpc.MaxConcurrentStreams(8))
	cl := grpcProxy(t, nil, l.Addr().String())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 300)
	for i := range 300 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%10 == 0 {
				st, err := cl.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: 10}, {Size: 20000}, {Size: int32(i)}}})
				if err != nil {
					errs <- err
					return
				}
				n := 0
				for {
					m, err := st.Recv()
					if errors.Is(err, io.EOF) {
						break
					}
					if err != nil {
						errs <- err
						return
					}
					n += len(m.GetPayload().GetBody())
				}
				if n != 20010+i {
					errs <- errors.New("short stream")
				}
				return
			}
			body := bytes.Repeat([]byte{byte(i)}, i*37)
			r, err := cl.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: body}})
			if err != nil {
				errs <- err
				return
			}
			if !bytes.Equal(r.GetPayload().GetBody(), body) {
				errs <- errors.New("payload mismatch")
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := l.n.Load(); n < 2 {
		t.Fatalf("%d upstream connections for 300 calls with at most 8 streams each", n)
	}
}

// Messages larger than every flow-control window: the backend's 64 KiB
// windows (request), the proxy's 4 MiB stream window and a client that
// reads slowly with a 64 KiB window (responses).
func TestGRPCLargeMessagesAndFlowControl(t *testing.T) {
	l := listen(t)
	serveGRPC(t, l, &grpcBackend{}, grpc.InitialWindowSize(64<<10), grpc.InitialConnWindowSize(64<<10),
		grpc.MaxRecvMsgSize(32<<20), grpc.MaxSendMsgSize(32<<20))
	cl := grpcProxy(t, []grpc.DialOption{grpc.WithInitialWindowSize(64 << 10), grpc.WithInitialConnWindowSize(64 << 10),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(32<<20), grpc.MaxCallSendMsgSize(32<<20))}, l.Addr().String())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("unary 9 MiB each way", func(t *testing.T) {
		body := make([]byte, 9<<20)
		for i := range body {
			body[i] = byte(i * 7)
		}
		r, err := cl.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: body}})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(r.GetPayload().GetBody(), body) {
			t.Fatal("payload mismatch")
		}
	})
	t.Run("12 MiB streamed to a slow reader", func(t *testing.T) {
		var params []*testpb.ResponseParameters
		for range 12 {
			params = append(params, &testpb.ResponseParameters{Size: 1 << 20})
		}
		st, err := cl.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{ResponseParameters: params})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for {
			m, err := st.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			n += len(m.GetPayload().GetBody())
			time.Sleep(20 * time.Millisecond)
		}
		if n != 12<<20 {
			t.Fatalf("got %d bytes", n)
		}
		if got := st.Trailer().Get("x-stream-trailer"); len(got) != 1 || got[0] != "done" {
			t.Fatalf("trailer %v", st.Trailer())
		}
	})
}

// statusBackend answers UnaryCall with an error status and trailers, and
// records when the calls it holds are cancelled.
type statusBackend struct {
	testpb.UnimplementedTestServiceServer
	cancelled chan struct{}
}

func (b *statusBackend) UnaryCall(ctx context.Context, in *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	switch string(in.GetPayload().GetBody()) {
	case "hold":
		<-ctx.Done()
		b.cancelled <- struct{}{}
		return nil, ctx.Err()
	case "error":
		_ = grpc.SetTrailer(ctx, metadata.Pairs("x-detail-bin", string([]byte{0, 1, 0xff}), "x-text", "a b"))
		return nil, status.Error(codes.NotFound, "nothing at 100% here: ü")
	}
	return &testpb.SimpleResponse{}, nil
}

func TestGRPCStatusTrailersAndCancel(t *testing.T) {
	l := listen(t)
	b := &statusBackend{cancelled: make(chan struct{}, 1)}
	serveGRPC(t, l, b)
	cl := grpcProxy(t, nil, l.Addr().String())

	t.Run("trailers-only error with binary metadata", func(t *testing.T) {
		var tr metadata.MD
		_, err := cl.UnaryCall(context.Background(), &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("error")}}, grpc.Trailer(&tr))
		st := status.Convert(err)
		if st.Code() != codes.NotFound || st.Message() != "nothing at 100% here: ü" {
			t.Fatalf("status %v", st)
		}
		if got := tr.Get("x-detail-bin"); len(got) != 1 || got[0] != string([]byte{0, 1, 0xff}) {
			t.Fatalf("binary trailer %q", got)
		}
		if got := tr.Get("x-text"); len(got) != 1 || got[0] != "a b" {
			t.Fatalf("trailer %q", got)
		}
	})
	t.Run("client cancel resets the upstream stream", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			time.Sleep(100 * time.Millisecond)
			cancel()
		}()
		_, err := cl.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("hold")}})
		if status.Code(err) != codes.Canceled {
			t.Fatalf("err %v", err)
		}
		select {
		case <-b.cancelled:
		case <-time.After(3 * time.Second):
			t.Fatal("the backend call was not cancelled")
		}
	})
}

// A backend that resets streams: before the response (the client gets
// UNAVAILABLE from the proxy) and in the middle of it (an error, not a
// truncated success).
func TestGRPCUpstreamReset(t *testing.T) {
	l := listen(t)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		if r.Header.Get("X-Mode") == "mid" {
			w.Header().Set("Content-Type", "application/grpc")
			w.WriteHeader(200)
			_, _ = w.Write([]byte{0, 0, 0, 0, 10, 1, 2})
			w.(http.Flusher).Flush()
			time.Sleep(20 * time.Millisecond)
		}
		panic(http.ErrAbortHandler) // RST_STREAM
	})}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go (&http2.Server{}).ServeConn(c, &http2.ServeConnOpts{BaseConfig: srv})
		}
	}()
	t.Cleanup(func() { l.Close() })
	cl := grpcProxy(t, nil, l.Addr().String())
	for _, mode := range []string{"early", "mid"} {
		t.Run(mode, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "x-mode", mode), 5*time.Second)
			defer cancel()
			_, err := cl.UnaryCall(ctx, &testpb.SimpleRequest{})
			code := status.Code(err)
			switch {
			case mode == "early" && code != codes.Unavailable:
				t.Fatalf("err %v, want Unavailable", err)
			case code == codes.OK || code == codes.DeadlineExceeded:
				t.Fatalf("err %v", err)
			}
		})
	}
}

// chanListener hands connections to a server.
type chanListener struct {
	ch   chan net.Conn
	addr net.Addr
	once sync.Once
	done chan struct{}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}
func (l *chanListener) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *chanListener) Addr() net.Addr { return l.addr }

// An upstream that answers the first stream of its first connection
// with GOAWAY (last stream 0): the stream was not processed, and the
// proxy sends it again, body included, on a new connection.
func TestGRPCRefusedStreamIsRetried(t *testing.T) {
	l := listen(t)
	t.Cleanup(func() { l.Close() })
	cl := &chanListener{ch: make(chan net.Conn), addr: l.Addr(), done: make(chan struct{})}
	serveGRPC(t, cl, &grpcBackend{})
	refused := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go refuseFirst(c, refused)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			select {
			case cl.ch <- c:
			case <-cl.done:
				c.Close()
				return
			}
		}
	}()
	cc := grpcProxy(t, nil, l.Addr().String())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := cc.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("again")}})
	if err != nil {
		t.Fatal(err)
	}
	if string(r.GetPayload().GetBody()) != "again" {
		t.Fatalf("payload %q", r.GetPayload().GetBody())
	}
	select {
	case p := <-refused:
		if p != "/grpc.testing.TestService/UnaryCall" {
			t.Fatalf("refused %q", p)
		}
	default:
		t.Fatal("the first connection saw no stream")
	}
}

// refuseFirst speaks just enough HTTP/2 to refuse the first stream.
func refuseFirst(c net.Conn, refused chan<- string) {
	defer c.Close()
	pre := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(c, pre); err != nil {
		return
	}
	fr := http2.NewFramer(c, c)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if err := fr.WriteSettings(); err != nil {
		return
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return
		}
		if h, ok := f.(*http2.MetaHeadersFrame); ok {
			refused <- h.PseudoValue("path")
			_ = fr.WriteGoAway(0, http2.ErrCodeNo, nil)
			time.Sleep(50 * time.Millisecond)
			return
		}
	}
}

// A backend stopping gracefully (GOAWAY) finishes its streams in flight
// while new calls go to its successor on the same address.
func TestGRPCUpstreamGracefulGoAway(t *testing.T) {
	l := listen(t)
	addr := l.Addr().String()
	old := serveGRPC(t, l, &grpcBackend{})
	cl := grpcProxy(t, nil, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := cl.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	echo := func(m string) {
		t.Helper()
		if err := st.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte(m)}}); err != nil {
			t.Fatal(err)
		}
		r, err := st.Recv()
		if err != nil || string(r.GetPayload().GetBody()) != m {
			t.Fatalf("echo of %q: %v %v", m, r, err)
		}
	}
	echo("before")
	stopped := make(chan struct{})
	go func() { old.GracefulStop(); close(stopped) }()
	// The successor listens on the same address once the old listener
	// is closed.
	var l2 net.Listener
	for i := 0; ; i++ {
		if l2, err = net.Listen("tcp", addr); err == nil {
			break
		}
		if i == 100 {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	serveGRPC(t, l2, &grpcBackend{})
	for i := range 20 {
		r, err := cl.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte{byte(i)}}})
		if err != nil {
			t.Fatalf("call %d during the old backend's shutdown: %v", i, err)
		}
		if !bytes.Equal(r.GetPayload().GetBody(), []byte{byte(i)}) {
			t.Fatal("payload mismatch")
		}
	}
	echo("during") // the old stream still works
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("end of stream: %v", err)
	}
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("the old backend did not stop once its stream ended")
	}
}
