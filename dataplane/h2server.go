package dataplane

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2server.go is the HTTP/2 server of the data plane's front end, in
// place of http2.Server: frames are read by the connection's goroutine,
// which starts one handler goroutine per stream (serveHTTP, plugins
// included), and handlers write their frames straight into the
// connection's buffer; a flusher goroutine writes it out once they
// yielded, so a gRPC answer (HEADERS, DATA, trailers) and frames of other
// streams share one write. http2.Server hands every frame from a reader
// goroutine to a serve goroutine and every frame written by a handler
// back to it, each a goroutine switch.

// Server settings, those of http2.Server as the data plane used it.
const (
	h2SrvMaxStreams   = 1000
	h2SrvStreamWindow = 1 << 20
	h2SrvConnWindow   = 1 << 20
	h2SrvMaxHeader    = 1 << 20
	h2SrvBodyBuffer   = 4 << 10         // response body buffered until a flush, as http2.Server
	h2SrvHandlerSlack = 100             // handlers of reset streams allowed beyond the stream limit
	h2SrvCloseFlush   = 2 * time.Second // bound of the last flush at close
)

// h2srvConn is one server connection.
type h2srvConn struct {
	d       *Dataplane
	handler http.Handler
	nc      net.Conn
	br      *bufio.Reader
	fr      *http2.Framer
	fields  *h2FieldReader // serve only
	baseCtx context.Context
	remote  string
	tls     *tls.ConnectionState
	// remoteIP and remoteStr are remote parsed, localPort the local
	// port: once per connection, for h2Ctx and X-Forwarded-*.
	remoteIP  netip.Addr
	remoteStr string
	localPort string

	wmu     sync.Mutex
	bw      *h2WriteBuf
	henc    *h2Encoder
	hbuf    bytes.Buffer
	werr    error
	flushCh chan struct{}
	done    chan struct{}

	mu         sync.Mutex
	cond       sync.Cond // send windows
	streams    map[uint32]*h2srvStream
	maxID      uint32 // highest client stream id seen
	handlers   int    // running handler goroutines
	sendWin    int64
	initWin    int64 // the client's initial stream window
	maxFrame   uint32
	inflow     int64 // connection receive window left
	recvCredit int64 // connection window consumed, not yet returned
	closed     bool
	// Drain (h2drain.go): goaway, GOAWAY sent, refuses new streams; the
	// timers close the connection.
	goaway     bool
	drainTimer *time.Timer
	closeTimer *time.Timer
}

// serveH2 serves HTTP/2 on c (after the sniffer, or TLS with ALPN h2)
// with handler h until the connection ends. The requests' context derives
// from base (nil: context.Background()).
func (d *Dataplane) serveH2(c net.Conn, base context.Context, h http.Handler) {
	sc := &h2srvConn{
		d: d, handler: h, nc: c,
		bw:       &h2WriteBuf{w: c},
		flushCh:  make(chan struct{}, 1),
		done:     make(chan struct{}),
		streams:  make(map[uint32]*h2srvStream),
		sendWin:  65535,
		initWin:  65535,
		maxFrame: 16384,
		inflow:   h2SrvConnWindow,
		remote:   c.RemoteAddr().String(),
	}
	sc.cond.L = &sc.mu
	var rd io.Reader = c
	if rio := newH2RawIO(c); rio != nil { // h2raw_linux.go
		rd, sc.bw.w = rio, rio.writer()
	}
	sc.br = bufio.NewReaderSize(rd, 4<<10)
	sc.fr = http2.NewFramer(sc.bw, sc.br)
	sc.fr.MaxHeaderListSize = h2SrvMaxHeader
	sc.fields = newH2FieldReader(sc.fr, h2SrvMaxHeader)
	sc.fr.SetReuseFrames()
	sc.henc = newH2Encoder(&sc.hbuf)
	if base == nil {
		base = context.Background()
	}
	sc.baseCtx = context.WithValue(base, http.LocalAddrContextKey, c.LocalAddr())
	if ap, err := netip.ParseAddrPort(sc.remote); err == nil {
		sc.remoteIP = ap.Addr().Unmap()
		sc.remoteStr = sc.remoteIP.String()
	}
	if a, ok := c.LocalAddr().(*net.TCPAddr); ok {
		sc.localPort = strconv.Itoa(a.Port)
	}
	if cs, ok := c.(interface{ ConnectionState() tls.ConnectionState }); ok {
		st := cs.ConnectionState()
		sc.tls = &st
	}
	// Yield before each write: the flusher, readied by the first frame of
	// an answer, would otherwise run as soon as its writer blocks, before
	// the next frame of the same answer.
	go h2FlushLoop(sc.flushCh, sc.done, true, sc.flushOut)
	err := sc.serve()
	sc.shutdown(err)
}

// serve reads and handles frames until the connection fails.
func (sc *h2srvConn) serve() error {
	_ = sc.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	pre := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(sc.br, pre); err != nil {
		return err
	}
	if string(pre) != http2.ClientPreface {
		return errors.New("dataplane: bad HTTP/2 client preface")
	}
	_ = sc.nc.SetReadDeadline(time.Time{})
	sc.wmu.Lock()
	_ = sc.fr.WriteSettings(
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: h2SrvMaxStreams},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: h2SrvStreamWindow},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: h2SrvMaxHeader},
	)
	_ = sc.fr.WriteWindowUpdate(0, h2SrvConnWindow-65535)
	sc.wmu.Unlock()
	sc.flush()
	// A connection of a filter chain is drained when the chain changes
	// (drain.go, h2drain.go); after the SETTINGS, which come first.
	if untrack := sc.d.servers.drains.watch(sc.nc, sc.drain); untrack != nil {
		defer untrack()
	}
	for {
		f, err := sc.fields.ReadFrame()
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				sc.resetID(se.StreamID, se.Code)
				continue
			}
			return err
		}
		if err := sc.processFrame(f); err != nil {
			return err
		}
	}
}

// shutdown ends the connection: a GOAWAY for a protocol error, then the
// streams fail and the connection closes.
func (sc *h2srvConn) shutdown(err error) {
	_ = sc.nc.SetWriteDeadline(time.Now().Add(h2SrvCloseFlush)) // bounds the last writes
	var ce http2.ConnectionError
	if errors.As(err, &ce) {
		sc.wmu.Lock()
		_ = sc.fr.WriteGoAway(sc.maxID, http2.ErrCode(ce), nil)
		if sc.werr == nil {
			_ = sc.bw.flush()
		}
		sc.wmu.Unlock()
	}
	sc.mu.Lock()
	sc.closed = true
	sc.stopDrainLocked()
	streams := make([]*h2srvStream, 0, len(sc.streams))
	for _, s := range sc.streams {
		streams = append(streams, s)
	}
	sc.cond.Broadcast()
	sc.mu.Unlock()
	for _, s := range streams {
		s.abort(errH2Closed)
	}
	close(sc.done)
	// Write what handlers queued before the connection failed (the
	// GOAWAY of the client's, a response...).
	sc.closeFlushed()
}

// closeFlushed writes out what is queued (within h2SrvCloseFlush), then
// closes the connection; nothing is written after.
func (sc *h2srvConn) closeFlushed() {
	sc.wmu.Lock()
	if sc.werr == nil {
		_ = sc.nc.SetWriteDeadline(time.Now().Add(h2SrvCloseFlush))
		_ = sc.bw.flush()
		sc.werr = errH2Closed
	}
	sc.wmu.Unlock()
	_ = sc.nc.Close()
}

func (sc *h2srvConn) flush() { poke(sc.flushCh) }

// flushOut writes out the buffered frames; a failed write closes the
// connection (the reader fails, the connection ends).
func (sc *h2srvConn) flushOut() error {
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	return sc.flushLocked()
}

func (sc *h2srvConn) flushLocked() error {
	if sc.werr != nil {
		return sc.werr
	}
	if err := sc.bw.flush(); err != nil {
		sc.werr = err
		_ = sc.nc.Close()
		return err
	}
	return nil
}

// flushAfter writes out what the handler of s wrote last: on the
// handler's goroutine when no other stream of the connection is open, as
// there are no frames of others to share the write with (a unary gRPC
// call per connection saves the flusher's wake-up), else, or when another
// goroutine is writing, through the flusher.
func (sc *h2srvConn) flushAfter(s *h2srvStream) {
	sc.mu.Lock()
	n := len(sc.streams)
	alone := n == 0 || n == 1 && sc.streams[s.id] == s
	sc.mu.Unlock()
	if !alone || !sc.wmu.TryLock() {
		sc.flush()
		return
	}
	_ = sc.flushLocked()
	sc.wmu.Unlock()
}

func (sc *h2srvConn) processFrame(f any) error {
	switch f := f.(type) {
	case *h2Fields:
		return sc.onHeaders(f)
	case *http2.DataFrame:
		return sc.onData(f)
	case *http2.RSTStreamFrame:
		if f.StreamID == 0 {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		sc.mu.Lock()
		s := sc.streams[f.StreamID]
		sc.mu.Unlock()
		if s != nil {
			s.abort(fmt.Errorf("dataplane: stream reset by the client (%v)", f.ErrCode))
		} else if f.StreamID > sc.maxID {
			return http2.ConnectionError(http2.ErrCodeProtocol) // idle stream
		}
	case *http2.SettingsFrame:
		if f.IsAck() {
			return nil
		}
		return sc.onSettings(f)
	case *http2.WindowUpdateFrame:
		return sc.onWindowUpdate(f)
	case *http2.PingFrame:
		if f.StreamID != 0 {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		if !f.IsAck() {
			sc.wmu.Lock()
			_ = sc.fr.WritePing(true, f.Data)
			sc.wmu.Unlock()
			sc.flush()
		}
	case *http2.GoAwayFrame:
		// The client sends no more streams; those open go on.
	case *http2.PushPromiseFrame:
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	return nil
}

func (sc *h2srvConn) onSettings(f *http2.SettingsFrame) error {
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	sc.mu.Lock()
	err := applyH2Settings(f, sc.henc, &sc.maxFrame, &sc.initWin, func(delta int64) bool { return moveWindows(sc.streams, delta) }, nil)
	sc.cond.Broadcast()
	sc.mu.Unlock()
	if err != nil {
		return err
	}
	_ = sc.fr.WriteSettingsAck()
	sc.flush()
	return nil
}

func (sc *h2srvConn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if f.StreamID == 0 {
		if sc.sendWin+int64(f.Increment) > 1<<31-1 {
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
		sc.sendWin += int64(f.Increment)
	} else if s := sc.streams[f.StreamID]; s != nil {
		if s.sendWin+int64(f.Increment) > 1<<31-1 {
			s.failLocked(errors.New("dataplane: stream window overflow"))
			go sc.reset(s, http2.ErrCodeFlowControl)
			return nil
		}
		s.sendWin += int64(f.Increment)
	} else if f.StreamID > sc.maxID {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	sc.cond.Broadcast()
	return nil
}

// onHeaders opens a stream, or ends one with trailers.
func (sc *h2srvConn) onHeaders(f *h2Fields) error {
	id := f.StreamID
	if id%2 == 0 {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	if id <= sc.maxID {
		sc.mu.Lock()
		s := sc.streams[id]
		sc.mu.Unlock()
		if s == nil {
			// A closed stream: STREAM_CLOSED, as http2.Server.
			return http2.ConnectionError(http2.ErrCodeStreamClosed)
		}
		return sc.onTrailers(s, f)
	}
	sc.mu.Lock()
	sc.maxID = id // written under mu: drain reads it
	refuse := sc.goaway || len(sc.streams) >= h2SrvMaxStreams || sc.handlers >= h2SrvMaxStreams+h2SrvHandlerSlack
	sc.mu.Unlock()
	if refuse {
		sc.resetID(id, http2.ErrCodeRefusedStream)
		return nil
	}
	s := &h2srvStream{sc: sc, id: id, sendWin: 0, inflow: h2SrvStreamWindow, declLen: -1}
	s.rcond.L = &sc.mu
	req, status, err := sc.newRequest(s, f)
	if err != nil {
		sc.resetID(id, http2.ErrCodeProtocol)
		return nil
	}
	s.req = req
	s.remoteEnd = f.StreamEnded()
	sc.mu.Lock()
	s.sendWin = sc.initWin
	sc.streams[id] = s
	sc.handlers++
	sc.mu.Unlock()
	s.startStatus = status
	h2Go(s) // s.runTask: runHandler; h2worker.go
	return nil
}

// newRequest builds the request of stream s; a status other than 0 is
// answered without the handler (a malformed request).
func (sc *h2srvConn) newRequest(s *h2srvStream, f *h2Fields) (*http.Request, int, error) {
	var method, scheme, authority, path string
	for _, hf := range f.Fields {
		if !hf.IsPseudo() {
			break
		}
		switch hf.Name {
		case ":method":
			method = hf.Value
		case ":scheme":
			scheme = hf.Value
		case ":authority":
			authority = hf.Value
		case ":path":
			path = hf.Value
		default:
			return nil, 0, errors.New("bad pseudo header") // :protocol included: no extended CONNECT
		}
	}
	isConnect := method == "CONNECT"
	if isConnect {
		if path != "" || scheme != "" || authority == "" {
			return nil, 0, errors.New("bad CONNECT")
		}
	} else if method == "" || path == "" || (scheme != "https" && scheme != "http") {
		return nil, 0, errors.New("bad request pseudo headers")
	}
	hdr := h2RequestHeader(f.RegularFields())
	status := 0
	if f.Truncated {
		status = http.StatusRequestHeaderFieldsTooLarge
	}
	if authority == "" {
		authority = hdr.Get("Host")
	}
	if err := validH2RequestHeader(hdr); err != nil {
		status = http.StatusBadRequest
	}
	var u *url.URL
	requestURI := path
	if isConnect {
		u = &url.URL{Host: authority}
		requestURI = authority
	} else {
		var err error
		if u, err = url.ParseRequestURI(path); err != nil {
			return nil, 0, err
		}
	}
	var ctx context.Context
	if sc.baseCtx.Done() == nil { // never cancelled: the stream's own context
		s.ctx.parent = sc.baseCtx
		ctx = &s.ctx
	} else {
		ctx, s.cancelFn = context.WithCancel(sc.baseCtx)
	}
	req := &http.Request{
		Method:     method,
		URL:        u,
		Proto:      "HTTP/2.0",
		ProtoMajor: 2,
		Header:     hdr,
		Host:       authority,
		RemoteAddr: sc.remote,
		RequestURI: requestURI,
		Body:       http.NoBody,
	}
	if scheme == "https" {
		req.TLS = sc.tls
	}
	if !f.StreamEnded() {
		req.ContentLength = -1
		if vv, ok := hdr["Content-Length"]; ok {
			if cl, err := strconv.ParseUint(vv[0], 10, 63); err == nil {
				req.ContentLength = int64(cl)
			} else {
				req.ContentLength = 0
			}
			s.declLen = req.ContentLength
		}
		req.Body = (*h2srvBody)(s)
		if v := hdr["Expect"]; len(v) == 1 && strings.EqualFold(v[0], "100-continue") {
			s.expectContinue = true // 100 Continue on the first read, as http2.Server
		}
	}
	for _, v := range hdr["Trailer"] {
		for _, k := range strings.Split(v, ",") {
			k = http.CanonicalHeaderKey(strings.TrimSpace(k))
			switch k {
			case "Transfer-Encoding", "Trailer", "Content-Length":
			default:
				if req.Trailer == nil {
					req.Trailer = make(http.Header)
				}
				req.Trailer[k] = nil
			}
		}
	}
	return req.WithContext(ctx), status, nil
}

// h2RequestHeader is the http.Header of request fields; the values of
// cookie fields are joined (RFC 9113 8.2.3), values share one array.
func h2RequestHeader(fields []hpack.HeaderField) http.Header {
	h := make(http.Header, len(fields))
	vals := make([]string, 0, len(fields))
	var cookies []string
	for _, hf := range fields {
		if hf.Name == "cookie" {
			cookies = append(cookies, hf.Value)
			continue
		}
		k := canonicalH2Key(hf.Name)
		if vv, ok := h[k]; ok {
			h[k] = append(vv[:len(vv):len(vv)], hf.Value)
			continue
		}
		vals = append(vals, hf.Value)
		h[k] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	if len(cookies) > 0 {
		h["Cookie"] = []string{strings.Join(cookies, "; ")}
	}
	return h
}

// validH2RequestHeader refuses connection-specific fields (RFC 9113
// 8.2.2), answered 400 as by http2.Server.
func validH2RequestHeader(h http.Header) error {
	for _, k := range []string{"Connection", "Proxy-Connection", "Keep-Alive", "Transfer-Encoding", "Upgrade"} {
		if _, ok := h[k]; ok {
			return fmt.Errorf("request header %q is not valid in HTTP/2", k)
		}
	}
	if te := h["Te"]; len(te) > 0 && (len(te) > 1 || (te[0] != "trailers" && te[0] != "")) {
		return errors.New(`request header "TE" may only be "trailers" in HTTP/2`)
	}
	return nil
}

func (sc *h2srvConn) onTrailers(s *h2srvStream, f *h2Fields) error {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if s.remoteEnd || s.gotTrailers {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	s.gotTrailers = true
	if !f.StreamEnded() || len(f.PseudoFields()) > 0 {
		s.failLocked(errors.New("dataplane: malformed request trailers"))
		go sc.reset(s, http2.ErrCodeProtocol)
		return nil
	}
	for _, hf := range f.RegularFields() {
		if !httpguts.ValidTrailerHeader(canonicalH2Key(hf.Name)) {
			s.failLocked(errors.New("dataplane: bad request trailer"))
			go sc.reset(s, http2.ErrCodeProtocol)
			return nil
		}
	}
	if s.req.Trailer != nil {
		s.reqTrailer = slices.Clone(f.RegularFields()) // f is reused; into req.Trailer by the body's reader, at EOF
	}
	s.endRemoteLocked()
	return nil
}

func (sc *h2srvConn) onData(f *http2.DataFrame) error {
	n := int64(f.Length)
	sc.mu.Lock()
	if sc.inflow < n {
		sc.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	sc.inflow -= n
	s := sc.streams[f.StreamID]
	if s == nil || s.remoteEnd || s.rerr != nil || s.bodyClosed || s.inflow < n {
		// Not taken: the window goes back at once.
		sc.recvCredit += n
		upd := sc.creditLocked()
		switch {
		case s == nil && f.StreamID > sc.maxID:
			sc.mu.Unlock()
			return http2.ConnectionError(http2.ErrCodeProtocol)
		case s == nil || s.remoteEnd:
			sc.mu.Unlock()
			sc.sendCredit(upd)
			sc.resetID(f.StreamID, http2.ErrCodeStreamClosed)
			return nil
		case s.inflow < n:
			s.failLocked(errors.New("dataplane: stream flow control window exceeded"))
			sc.mu.Unlock()
			sc.sendCredit(upd)
			sc.reset(s, http2.ErrCodeFlowControl)
			return nil
		}
		sc.mu.Unlock() // the handler closed the body or the stream failed
		sc.sendCredit(upd)
		if f.StreamEnded() {
			sc.mu.Lock()
			s.endRemoteLocked()
			sc.mu.Unlock()
		}
		return nil
	}
	s.inflow -= n
	data := f.Data()
	if pad := n - int64(len(data)); pad > 0 {
		sc.recvCredit += pad
		s.recvCredit += pad
	}
	s.recvd += int64(len(data))
	if s.declLen >= 0 && s.recvd > s.declLen {
		s.failLocked(fmt.Errorf("dataplane: request body longer than its Content-Length %d", s.declLen))
		sc.mu.Unlock()
		sc.reset(s, http2.ErrCodeProtocol)
		return nil
	}
	s.rbuf.Write(data)
	if f.StreamEnded() {
		if s.declLen >= 0 && s.recvd != s.declLen {
			s.failLocked(fmt.Errorf("dataplane: request body of %d bytes, Content-Length %d", s.recvd, s.declLen))
			sc.mu.Unlock()
			sc.reset(s, http2.ErrCodeProtocol)
			return nil
		}
		s.endRemoteLocked()
	}
	s.rcond.Signal()
	upd := sc.creditLocked()
	sc.mu.Unlock()
	sc.sendCredit(upd)
	return nil
}

// creditLocked returns the connection window to give back now.
func (sc *h2srvConn) creditLocked() uint32 {
	if sc.recvCredit < h2SrvConnWindow/4 {
		return 0
	}
	n := sc.recvCredit
	sc.recvCredit = 0
	sc.inflow += n
	return uint32(n)
}

func (sc *h2srvConn) sendCredit(n uint32) { sendWindowUpdates(&sc.wmu, sc.fr, sc, 0, 0, n) }

// resetID sends RST_STREAM for a stream id.
func (sc *h2srvConn) resetID(id uint32, code http2.ErrCode) {
	sc.wmu.Lock()
	_ = sc.fr.WriteRSTStream(id, code)
	sc.wmu.Unlock()
	sc.flush()
}

// reset sends RST_STREAM for s and forgets it.
func (sc *h2srvConn) reset(s *h2srvStream, code http2.ErrCode) {
	sc.resetID(s.id, code)
	sc.mu.Lock()
	s.resetSent = true
	s.failLocked(errH2Closed)
	sc.forgetLocked(s)
	sc.mu.Unlock()
}

func (sc *h2srvConn) forgetLocked(s *h2srvStream) {
	if sc.streams[s.id] == s {
		delete(sc.streams, s.id)
	}
	if n := int64(s.rbuf.Len()); n > 0 { // unread body: its window goes back
		sc.recvCredit += n
		s.rbuf.Reset()
	}
	sc.cond.Broadcast()
	sc.doneLocked() // a draining connection closes with its last stream (h2drain.go)
}

// runTask implements h2Task: runHandler, on a worker of h2Go.
func (s *h2srvStream) runTask() { s.sc.runHandler(s, s.startStatus) }

// runHandler serves stream s and ends its response.
func (sc *h2srvConn) runHandler(s *h2srvStream, status int) {
	defer func() {
		p := recover()
		if p != nil && p != http.ErrAbortHandler {
			buf := make([]byte, 64<<10)
			buf = buf[:runtime.Stack(buf, false)]
			sc.d.log.Error("dataplane: panic serving HTTP/2", "remote", sc.remote, "panic", p, "stack", string(buf))
		}
		if p != nil {
			sc.mu.Lock()
			done := s.resetSent
			sc.mu.Unlock()
			if !done {
				sc.reset(s, http2.ErrCodeInternal)
			}
		} else {
			s.finish()
		}
		s.releaseOut() // written (copied) or dropped
		s.cancel()
		sc.mu.Lock()
		sc.handlers--
		sc.mu.Unlock()
	}()
	if status != 0 {
		s.WriteHeader(status)
		return
	}
	sc.handler.ServeHTTP(s, s.req)
}

// h2srvStream is a stream of an h2srvConn, and its http.ResponseWriter.
type h2srvStream struct {
	sc  *h2srvConn
	id  uint32
	req *http.Request
	cl  [1]string // the Content-Length value set by finish: no slice of its own
	// startStatus is the status of runHandler, run by runTask.
	startStatus int
	// ctx is the request's context, unless the connection's may be
	// cancelled: then cancelFn cancels the request's. Both end at reset,
	// or once the handler returned (cancel).
	ctx      h2srvCtx
	cancelFn context.CancelFunc

	// Guarded by sc.mu.
	rcond       sync.Cond
	rbuf        h2DataBuf // request body received, not read
	remoteEnd   bool      // the client ended the stream
	gotTrailers bool      // request trailers received
	reqTrailer  []hpack.HeaderField
	rerr        error // the stream failed
	declLen     int64 // request Content-Length, -1 if none
	recvd       int64
	inflow      int64 // stream receive window left
	recvCredit  int64
	bodyClosed  bool
	// expectContinue: the client waits for 100 Continue before the body.
	expectContinue bool
	sendWin        int64
	resetSent      bool // RST_STREAM sent or received: nothing more is written
	localEnd       bool // the response ended

	// The handler goroutine only.
	hdr         http.Header
	status      int
	wroteHeader bool
	sentHeader  bool
	out         []byte  // response body not sent yet
	outBuf      *[]byte // out's array, from h2srvOutPool
	isHead      bool
	trBuf       [4]h2Trailer
	holdFlush   bool // finish runs: its frames are written at its end
}

// cancel ends the request's context.
func (s *h2srvStream) cancel() {
	if s.cancelFn != nil {
		s.cancelFn()
		return
	}
	s.ctx.cancel()
}

// abort fails the stream (reset by the client, connection gone).
func (s *h2srvStream) abort(err error) {
	sc := s.sc
	sc.mu.Lock()
	s.resetSent = true
	s.failLocked(err)
	sc.forgetLocked(s)
	sc.mu.Unlock()
	s.cancel()
}

func (s *h2srvStream) failLocked(err error) {
	if s.rerr == nil {
		s.rerr = err
	}
	s.rcond.Broadcast()
	s.sc.cond.Broadcast()
}

// endRemoteLocked records the end of the request; a stream whose
// response also ended is done.
func (s *h2srvStream) endRemoteLocked() {
	s.remoteEnd = true
	s.rcond.Broadcast()
	if s.localEnd {
		s.sc.forgetLocked(s)
	}
}

func hasKey(h http.Header, k string) bool { _, ok := h[k]; return ok }

// h2srvBody is the request body of a stream.
type h2srvBody h2srvStream

// Read implements io.Reader.
func (b *h2srvBody) Read(p []byte) (int, error) {
	s := (*h2srvStream)(b)
	sc := s.sc
	sc.mu.Lock()
	if s.expectContinue {
		s.expectContinue = false
		if s.rbuf.Len() == 0 && !s.remoteEnd && s.rerr == nil {
			sc.mu.Unlock()
			_ = s.writeHeaderFrame(http.StatusContinue, nil, nil, false)
			sc.mu.Lock()
		}
	}
	for s.rbuf.Len() == 0 && !s.remoteEnd && s.rerr == nil && !s.bodyClosed {
		s.rcond.Wait()
	}
	if s.rbuf.Len() == 0 {
		var err error
		switch {
		case s.bodyClosed:
			err = errors.New("http2: request body closed")
		case s.rerr != nil && !s.remoteEnd:
			err = s.rerr
		default:
			err = io.EOF
			if t := s.req.Trailer; t != nil {
				for _, hf := range s.reqTrailer { // declared ones only, as http2.Server
					if k := canonicalH2Key(hf.Name); hasKey(t, k) {
						t[k] = append(t[k], hf.Value)
					}
				}
				s.reqTrailer = nil
			}
		}
		sc.mu.Unlock()
		return 0, err
	}
	n := s.rbuf.Read(p)
	s.recvCredit += int64(n)
	sc.recvCredit += int64(n)
	var supd uint32
	if !s.remoteEnd && s.recvCredit >= h2SrvStreamWindow/4 {
		supd = uint32(s.recvCredit)
		s.inflow += s.recvCredit
		s.recvCredit = 0
	}
	cupd := sc.creditLocked()
	sc.mu.Unlock()
	sendWindowUpdates(&sc.wmu, sc.fr, sc, s.id, supd, cupd)
	return n, nil
}

// Close implements io.Closer: the rest of the body is discarded.
func (b *h2srvBody) Close() error {
	s := (*h2srvStream)(b)
	sc := s.sc
	sc.mu.Lock()
	s.bodyClosed = true
	n := int64(s.rbuf.Len())
	s.rbuf.Reset()
	sc.recvCredit += n
	upd := sc.creditLocked()
	s.rcond.Broadcast()
	sc.mu.Unlock()
	sc.sendCredit(upd)
	return nil
}

// Header implements http.ResponseWriter.
func (s *h2srvStream) Header() http.Header {
	if s.hdr == nil {
		s.hdr = make(http.Header)
	}
	return s.hdr
}

// adoptHeader makes h (the upstream's response header, not used
// elsewhere) the response header while none was set: no copy of it.
// False when some was set: nothing done.
func (s *h2srvStream) adoptHeader(h http.Header) bool {
	if s.hdr != nil || s.wroteHeader || h == nil {
		return false
	}
	s.hdr = h
	return true
}

// WriteHeader implements http.ResponseWriter.
func (s *h2srvStream) WriteHeader(code int) {
	if s.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		s.writeHeaderFrame(code, s.hdr, nil, false) // informational
		return
	}
	s.wroteHeader, s.status = true, code
	s.isHead = s.req.Method == http.MethodHead
}

// Write implements http.ResponseWriter.
func (s *h2srvStream) Write(p []byte) (int, error) {
	if !s.wroteHeader {
		s.WriteHeader(http.StatusOK)
	}
	if !bodyAllowedForStatus(s.status) {
		return 0, http.ErrBodyNotAllowed
	}
	if err := s.writeErr(); err != nil {
		return 0, err
	}
	if s.isHead {
		return len(p), nil
	}
	if len(s.out)+len(p) <= h2SrvBodyBuffer {
		if s.outBuf == nil {
			s.outBuf = h2srvOutPool.Get().(*[]byte)
			s.out = append((*s.outBuf)[:0], s.out...)
		}
		s.out = append(s.out, p...) // within its capacity
		return len(p), nil
	}
	if err := s.sendHeader(false); err != nil {
		return 0, err
	}
	if len(s.out) > 0 {
		if err := s.writeData(s.out, false); err != nil {
			return 0, err
		}
		s.out = s.out[:0]
	}
	if err := s.writeData(p, false); err != nil {
		return 0, err
	}
	return len(p), nil
}

// h2srvOutPool holds the arrays of buffered response bodies.
var h2srvOutPool = sync.Pool{New: func() any { b := make([]byte, 0, h2SrvBodyBuffer); return &b }}

// releaseOut gives the array of out back, once the handler is done.
func (s *h2srvStream) releaseOut() {
	s.out = nil
	if b := s.outBuf; b != nil {
		s.outBuf = nil
		h2srvOutPool.Put(b)
	}
}

// Flush implements http.Flusher.
func (s *h2srvStream) Flush() {
	if !s.wroteHeader {
		s.WriteHeader(http.StatusOK)
	}
	if s.sendHeader(false) != nil {
		return
	}
	if len(s.out) > 0 {
		_ = s.writeData(s.out, false)
		s.out = s.out[:0]
	}
	s.sc.flush()
}

func (s *h2srvStream) writeErr() error {
	s.sc.mu.Lock()
	defer s.sc.mu.Unlock()
	if s.resetSent || s.sc.closed {
		return errH2Closed
	}
	return nil
}

// sendHeader sends the response HEADERS if not yet sent; the body
// follows (end: the response has neither body nor trailers).
func (s *h2srvStream) sendHeader(end bool) error {
	if s.sentHeader {
		return nil
	}
	s.sentHeader = true
	return s.writeHeaderFrame(s.status, s.hdr, nil, end)
}

// finish ends the response once the handler returned: the headers (with
// a Content-Length when the whole body is known, as http2.Server), the
// body buffered and the trailers.
func (s *h2srvStream) finish() {
	s.holdFlush = true
	defer func() {
		s.holdFlush = false
		s.sc.flushAfter(s)
	}()
	if !s.wroteHeader {
		s.WriteHeader(http.StatusOK)
	}
	trailers := s.trailers()
	if !s.sentHeader {
		h := s.hdr
		if bodyAllowedForStatus(s.status) {
			if _, ok := h["Content-Length"]; !ok && (len(s.out) > 0 || !s.isHead) {
				h = s.Header()
				s.cl[0] = strconv.Itoa(len(s.out))
				h["Content-Length"] = s.cl[:]
			}
			if _, ok := h["Content-Type"]; !ok && len(s.out) > 0 && h.Get("Content-Encoding") == "" {
				h = s.Header()
				h["Content-Type"] = []string{http.DetectContentType(s.out)}
			}
		}
		s.sentHeader = true
		end := len(s.out) == 0 && len(trailers) == 0
		if s.writeHeaderFrame(s.status, h, nil, end) != nil || end {
			return
		}
	}
	if len(s.out) > 0 || len(trailers) == 0 {
		if s.writeData(s.out, len(trailers) == 0) != nil {
			return
		}
		s.out = nil
	}
	if len(trailers) > 0 {
		if s.writeHeaderFrame(0, nil, trailers, true) != nil {
			return
		}
	}
}

// h2Trailer is a response trailer field and its values.
type h2Trailer struct {
	k  string
	vv []string
}

// trailers returns the trailers the handler set: declared ones, and keys
// with http.TrailerPrefix (those first); in s.trBuf while few.
func (s *h2srvStream) trailers() []h2Trailer {
	t := s.trBuf[:0]
	add := func(k string, vv []string) {
		for _, e := range t {
			if e.k == k {
				return
			}
		}
		t = append(t, h2Trailer{k, vv})
	}
	for k, vv := range s.hdr {
		if strings.HasPrefix(k, http.TrailerPrefix) && len(vv) > 0 {
			add(http.CanonicalHeaderKey(k[len(http.TrailerPrefix):]), vv)
		}
	}
	for _, v := range s.hdr["Trailer"] {
		for _, k := range strings.Split(v, ",") {
			k = http.CanonicalHeaderKey(strings.TrimSpace(k))
			if vv := s.hdr[k]; len(vv) > 0 {
				add(k, vv)
			}
		}
	}
	return t
}

// writeHeaderFrame writes a response header block: status (0 for
// trailers) and h, or trailers; end sets END_STREAM.
func (s *h2srvStream) writeHeaderFrame(status int, h http.Header, trailers []h2Trailer, end bool) error {
	sc := s.sc
	sc.wmu.Lock()
	sc.mu.Lock()
	if s.resetSent || sc.closed || sc.werr != nil {
		sc.mu.Unlock()
		sc.wmu.Unlock()
		return errH2Closed
	}
	sc.mu.Unlock()
	sc.hbuf.Reset()
	e := sc.henc
	if status != 0 {
		_ = e.WriteField(hpack.HeaderField{Name: ":status", Value: h2StatusCode(status)})
		for k, vv := range h {
			if !h2ResponseField(k) {
				continue
			}
			name := lowerH2Key(k)
			for _, v := range vv {
				if httpguts.ValidHeaderFieldValue(v) {
					_ = e.WriteField(hpack.HeaderField{Name: name, Value: v})
				}
			}
		}
		if _, ok := h["Date"]; !ok && status >= 200 {
			_ = e.WriteField(hpack.HeaderField{Name: "date", Value: h2Date()})
		}
	} else {
		for _, t := range trailers {
			if !h2ResponseField(t.k) {
				continue
			}
			name := lowerH2Key(t.k)
			for _, v := range t.vv {
				if httpguts.ValidHeaderFieldValue(v) {
					_ = e.WriteField(hpack.HeaderField{Name: name, Value: v})
				}
			}
		}
	}
	blk := sc.hbuf.Bytes()
	max := int(sc.maxFrameLocked())
	first := true
	var err error
	for err == nil && (first || len(blk) > 0) {
		chunk := blk
		if len(chunk) > max {
			chunk = chunk[:max]
		}
		blk = blk[len(chunk):]
		if first {
			err = sc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: s.id, BlockFragment: chunk, EndStream: end, EndHeaders: len(blk) == 0})
			first = false
		} else {
			err = sc.fr.WriteContinuation(s.id, len(blk) == 0, chunk)
		}
	}
	if err != nil {
		sc.werr = err
	}
	sc.wmu.Unlock()
	if end {
		s.endLocal()
	}
	s.flush()
	return err
}

// flush asks for the frames of s to be written, unless finish holds them
// to write them all at its end (flushAfter).
func (s *h2srvStream) flush() {
	if !s.holdFlush {
		s.sc.flush()
	}
}

func (sc *h2srvConn) maxFrameLocked() uint32 {
	sc.mu.Lock()
	n := sc.maxFrame
	sc.mu.Unlock()
	return n
}

// endLocal records the end of the response: a stream whose request is
// not finished is reset (NO_ERROR, RFC 9113 8.1), as by http2.Server.
func (s *h2srvStream) endLocal() {
	sc := s.sc
	sc.mu.Lock()
	s.localEnd = true
	if s.remoteEnd || s.rerr != nil {
		sc.forgetLocked(s)
		sc.mu.Unlock()
		return
	}
	sc.mu.Unlock()
	sc.reset(s, http2.ErrCodeNo)
}

// writeData sends p as DATA frames within the send windows; end sets
// END_STREAM on the last one (an empty frame when p is empty).
func (s *h2srvStream) writeData(p []byte, end bool) error {
	sc := s.sc
	for len(p) > 0 || end {
		sc.mu.Lock()
		for len(p) > 0 && !s.resetSent && !sc.closed && (sc.sendWin <= 0 || s.sendWin <= 0) {
			if s.holdFlush {
				sc.flush() // the client must see the frames held to credit more
			}
			sc.cond.Wait()
		}
		if s.resetSent || sc.closed {
			sc.mu.Unlock()
			return errH2Closed
		}
		n := min(int64(len(p)), sc.sendWin, s.sendWin, int64(sc.maxFrame))
		sc.sendWin -= n
		s.sendWin -= n
		sc.mu.Unlock()
		last := end && int(n) == len(p)
		sc.wmu.Lock()
		err := sc.werr
		if err == nil {
			if err = sc.fr.WriteData(s.id, last, p[:n]); err != nil {
				sc.werr = err
			}
		}
		sc.wmu.Unlock()
		if err != nil {
			return err
		}
		p = p[n:]
		s.flush()
		if last {
			s.endLocal()
			break
		}
	}
	return nil
}

// h2ResponseField reports whether header k goes into a response block.
func h2ResponseField(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Transfer-Encoding", "Upgrade":
		return false
	}
	return httpguts.ValidHeaderFieldName(k) // no "Trailer:" keys either
}

func bodyAllowedForStatus(status int) bool {
	switch {
	case status >= 100 && status <= 199:
		return false
	case status == 204, status == 304:
		return false
	}
	return true
}

func h2StatusCode(code int) string {
	switch code {
	case 200:
		return "200"
	case 404:
		return "404"
	}
	return strconv.Itoa(code)
}

// h2WriteBuf buffers the frames of a connection (under its wmu). The
// buffer comes from a pool and goes back once written, so an idle
// connection holds none; a writer past h2WriteBufMax writes it out.
type h2WriteBuf struct {
	w   io.Writer // the connection
	b   *[]byte
	err error
}

const h2WriteBufMax = 64 << 10

var h2WriteBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// Write implements io.Writer.
func (w *h2WriteBuf) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.b == nil {
		w.b = h2WriteBufPool.Get().(*[]byte)
	}
	*w.b = append(*w.b, p...)
	if len(*w.b) >= h2WriteBufMax {
		if err := w.flush(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// flush writes the buffer out and gives it back.
func (w *h2WriteBuf) flush() error {
	if w.b == nil || w.err != nil {
		return w.err
	}
	b := w.b
	w.b = nil
	_, w.err = w.w.Write(*b)
	if cap(*b) <= 4*h2WriteBufMax {
		*b = (*b)[:0]
		h2WriteBufPool.Put(b)
	}
	return w.err
}

// h2Date is the Date header value, formatted once a second.
func h2Date() string {
	now := time.Now().Unix()
	if d := h2DateCache.Load(); d != nil && d.sec == now {
		return d.s
	}
	d := &h2DateVal{sec: now, s: time.Unix(now, 0).UTC().Format(http.TimeFormat)}
	h2DateCache.Store(d)
	return d.s
}

type h2DateVal struct {
	sec int64
	s   string
}

var h2DateCache atomic.Pointer[h2DateVal]

var (
	_ http.ResponseWriter = (*h2srvStream)(nil)
	_ http.Flusher        = (*h2srvStream)(nil)
)

func (s *h2srvStream) sendWindow() *int64 { return &s.sendWin }
