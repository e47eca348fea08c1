// Package backend owns the servers the perf harness measures against: one
// HTTP port speaking HTTP/1.1 (fasthttp) and h2c with prior knowledge
// (x/net/http2), a gRPC echo service (unary and bidirectional streaming,
// hand-written codec, no generated code), and a TCP port offering echo and a
// bulk sink. It can stall once on demand, to test coordinated-omission
// correction. It does not generate load nor proxy anything.
package backend

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/net/http2"
	"google.golang.org/grpc"
)

// Config says where and how the backend serves. The zero value serves on
// ephemeral loopback ports with a 128-byte body.
type Config struct {
	// HTTPAddr, GRPCAddr and TCPAddr are the listen addresses; empty means
	// 127.0.0.1:0.
	HTTPAddr, GRPCAddr, TCPAddr string
	// BodySize is the HTTP response body size in bytes (default 128).
	BodySize int
	// Logger receives serve errors; nil discards them.
	Logger *slog.Logger
}

// Server is a running backend. Its methods are safe for concurrent use.
type Server struct {
	// HTTPAddr, GRPCAddr and TCPAddr are the bound addresses.
	HTTPAddr, GRPCAddr, TCPAddr string

	log      *slog.Logger
	body     []byte
	requests atomic.Int64
	stall    stall

	lns  []net.Listener
	fh   *fasthttp.Server
	h1   *chanListener
	h2   *http2.Server
	gs   *grpc.Server
	wg   sync.WaitGroup
	mu   sync.Mutex
	tcps map[net.Conn]struct{}
	done chan struct{}
}

// Start binds the three listeners and serves until Close.
func Start(cfg Config) (*Server, error) {
	if cfg.BodySize < 0 {
		return nil, fmt.Errorf("backend: body size %d: must be >= 0", cfg.BodySize)
	}
	if cfg.BodySize == 0 {
		cfg.BodySize = 128
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{log: log, body: bytes.Repeat([]byte("x"), cfg.BodySize), tcps: map[net.Conn]struct{}{}, done: make(chan struct{})}
	listen := func(a string) (net.Listener, error) {
		if a == "" {
			a = "127.0.0.1:0"
		}
		ln, err := net.Listen("tcp", a)
		if err != nil {
			return nil, fmt.Errorf("backend: listen %s: %w", a, err)
		}
		s.lns = append(s.lns, ln)
		return ln, nil
	}
	hl, err := listen(cfg.HTTPAddr)
	if err != nil {
		return nil, s.closeErr(err)
	}
	gl, err := listen(cfg.GRPCAddr)
	if err != nil {
		return nil, s.closeErr(err)
	}
	tl, err := listen(cfg.TCPAddr)
	if err != nil {
		return nil, s.closeErr(err)
	}
	s.HTTPAddr, s.GRPCAddr, s.TCPAddr = hl.Addr().String(), gl.Addr().String(), tl.Addr().String()

	s.h1 = newChanListener(hl.Addr())
	s.fh = &fasthttp.Server{Handler: s.serveFast, Name: "perf-backend", ReadTimeout: time.Minute, IdleTimeout: time.Minute}
	s.h2 = &http2.Server{MaxConcurrentStreams: 1000}
	s.gs = grpc.NewServer(grpc.ForceServerCodec(Codec{}))
	s.gs.RegisterService(&EchoServiceDesc, echoImpl{s})

	s.goServe(func() { _ = s.fh.Serve(s.h1) })
	s.goServe(func() { s.acceptHTTP(hl) })
	s.goServe(func() { _ = s.gs.Serve(gl) })
	s.goServe(func() { s.acceptTCP(tl) })
	return s, nil
}

func (s *Server) goServe(f func()) {
	s.wg.Add(1)
	go func() { defer s.wg.Done(); f() }()
}

func (s *Server) closeErr(err error) error {
	for _, ln := range s.lns {
		_ = ln.Close()
	}
	return err
}

// Requests is the number of HTTP and gRPC requests served so far.
func (s *Server) Requests() int64 { return s.requests.Load() }

// StallOnce arms a single stall: the next request to arrive makes the whole
// backend (every protocol, every connection) hold responses for d, like a
// stop-the-world pause; requests arriving during the pause wait until it
// ends.
func (s *Server) StallOnce(d time.Duration) { s.stall.arm(d) }

// Close stops every listener and connection and waits for the serve loops.
func (s *Server) Close() error {
	close(s.done)
	var errs []error
	for _, ln := range s.lns {
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	_ = s.h1.Close()
	_ = s.fh.Shutdown()
	s.gs.Stop()
	s.mu.Lock()
	for c := range s.tcps {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return errors.Join(errs...)
}

func (s *Server) serveFast(ctx *fasthttp.RequestCtx) {
	s.requests.Add(1)
	s.stall.wait()
	ctx.SetContentType("text/plain")
	ctx.SetBody(s.body)
}

func (s *Server) serveH2(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	s.stall.wait()
	_, _ = io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write(s.body)
}

// acceptHTTP hands each connection to h2 when it starts with the HTTP/2
// client preface and to fasthttp otherwise.
func (s *Server) acceptHTTP(ln net.Listener) {
	h := http.HandlerFunc(s.serveH2)
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s.goServe(func() {
			pc, isH2, err := sniffPreface(c)
			if err != nil {
				_ = c.Close()
				return
			}
			if isH2 {
				s.h2.ServeConn(pc, &http2.ServeConnOpts{Handler: h, BaseConfig: &http.Server{}})
				return
			}
			if !s.h1.deliver(pc) {
				_ = c.Close()
			}
		})
	}
}

var h2Preface = []byte(http2.ClientPreface)

// sniffPreface reads only as many bytes as needed to tell whether c starts
// with the HTTP/2 preface and returns a conn that replays them.
func sniffPreface(c net.Conn) (net.Conn, bool, error) {
	buf := make([]byte, len(h2Preface))
	n := 0
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for n < len(buf) {
		m, err := c.Read(buf[n:])
		n += m
		if !bytes.HasPrefix(h2Preface, buf[:n]) {
			break
		}
		if err != nil {
			return nil, false, err
		}
	}
	_ = c.SetReadDeadline(time.Time{})
	return &replayConn{Conn: c, pending: buf[:n]}, n == len(buf) && bytes.Equal(buf, h2Preface), nil
}

// replayConn returns pending bytes before reading from the connection.
type replayConn struct {
	net.Conn
	pending []byte
}

func (r *replayConn) Read(p []byte) (int, error) {
	if len(r.pending) > 0 {
		n := copy(p, r.pending)
		r.pending = r.pending[n:]
		return n, nil
	}
	return r.Conn.Read(p)
}

// stall is a one-shot pause shared by every handler.
type stall struct {
	armed atomic.Int64 // pause length in ns, 0 when not armed
	until atomic.Int64 // unix ns the current pause ends
}

func (s *stall) arm(d time.Duration) { s.armed.Store(int64(d)) }

func (s *stall) wait() {
	if d := s.armed.Swap(0); d > 0 {
		s.until.Store(time.Now().Add(time.Duration(d)).UnixNano())
	}
	if u := s.until.Load(); u > 0 {
		if w := time.Until(time.Unix(0, u)); w > 0 {
			time.Sleep(w)
		}
	}
}

// chanListener is a net.Listener fed by acceptHTTP.
type chanListener struct {
	addr net.Addr
	ch   chan net.Conn
	once sync.Once
	done chan struct{}
}

func newChanListener(a net.Addr) *chanListener {
	return &chanListener{addr: a, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) deliver(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }
