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
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2client is the HTTP/2 client of gRPC upstreams: one multiplexed
// connection per node (more when the node's stream limit is reached),
// written frame by frame with x/net/http2's Framer and hpack.
//
// Compared to http2.Transport it spends no goroutine per request on the
// response side, and coalesces the frames of all streams into one write:
// writers fill a shared buffer and a per-connection flusher goroutine
// writes it out once they yield, so a unary call costs one write
// syscall for HEADERS, DATA and END_STREAM.

// HTTP/2 client settings, those of http2.Transport.
const (
	h2StreamWindow  = 4 << 20 // receive window of a stream
	h2ConnWindow    = 1 << 30 // receive window of the connection
	h2ConnWUpdate   = 4 << 20 // connection window credit sent in one WINDOW_UPDATE
	h2MaxHeaderList = 10 << 20
	h2PingInterval  = 30 * time.Second // idle time before a health PING (ReadIdleTimeout)
	h2MaxRefused    = 3                // retries of a stream refused unprocessed
)

var (
	// errH2Refused: the upstream did not process the stream (GOAWAY
	// before it, REFUSED_STREAM); it may be sent again.
	errH2Refused = errors.New("dataplane: h2 stream refused by upstream")
	// errH2Closed: the connection is closed.
	errH2Closed = errors.New("dataplane: h2 upstream connection closed")
)

// h2Transport is an http.RoundTripper to the nodes of one gRPC upstream.
type h2Transport struct {
	dial    func(ctx context.Context, network, addr string) (net.Conn, error)
	tlsConf *tls.Config // nil: h2c prior knowledge
	connTO  time.Duration

	mu    sync.Mutex
	pools map[string]*h2Pool
}

// h2Pool holds the connections to one address.
type h2Pool struct {
	t     *h2Transport
	addr  string
	mu    sync.Mutex
	conns []*h2Conn
	dial  *h2Dial // in progress
}

// h2Dial is a connection attempt other requests wait for.
type h2Dial struct {
	done chan struct{}
	cc   *h2Conn
	err  error
}

func (t *h2Transport) pool(addr string) *h2Pool {
	t.mu.Lock()
	p := t.pools[addr]
	if p == nil {
		if t.pools == nil {
			t.pools = make(map[string]*h2Pool)
		}
		p = &h2Pool{t: t, addr: addr}
		t.pools[addr] = p
	}
	t.mu.Unlock()
	return p
}

// CloseIdleConnections closes connections without streams; busy ones
// leave the pools and close once their streams end.
func (t *h2Transport) CloseIdleConnections() {
	t.mu.Lock()
	pools := make([]*h2Pool, 0, len(t.pools))
	for _, p := range t.pools {
		pools = append(pools, p)
	}
	t.mu.Unlock()
	for _, p := range pools {
		p.mu.Lock()
		conns := p.conns
		p.conns = nil
		p.mu.Unlock()
		for _, cc := range conns {
			cc.closeWhenIdle()
		}
	}
}

// get returns a connection that can open one more stream; the stream is
// reserved (cc.reserved) and is opened, or released, by roundTrip.
func (p *h2Pool) get(ctx context.Context) (*h2Conn, error) {
	for {
		p.mu.Lock()
		for i := 0; i < len(p.conns); i++ {
			cc := p.conns[i]
			ok, dead := cc.reserve()
			if ok {
				p.mu.Unlock()
				return cc, nil
			}
			if dead {
				p.conns = append(p.conns[:i], p.conns[i+1:]...)
				i--
			}
		}
		d := p.dial
		if d == nil {
			d = &h2Dial{done: make(chan struct{})}
			p.dial = d
			p.mu.Unlock()
			d.cc, d.err = p.t.newConn(ctx, p)
			p.mu.Lock()
			p.dial = nil
			if d.err == nil {
				p.conns = append(p.conns, d.cc)
			}
			p.mu.Unlock()
			close(d.done)
			if d.err != nil {
				return nil, d.err
			}
			continue
		}
		p.mu.Unlock()
		select {
		case <-d.done:
			if d.err != nil {
				return nil, d.err
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// remove drops cc from the pool (GOAWAY, error).
func (p *h2Pool) remove(cc *h2Conn) {
	p.mu.Lock()
	for i, c := range p.conns {
		if c == cc {
			p.conns = append(p.conns[:i], p.conns[i+1:]...)
			break
		}
	}
	p.mu.Unlock()
}

func (t *h2Transport) newConn(ctx context.Context, p *h2Pool) (*h2Conn, error) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.connTO)
	defer cancel()
	nc, err := t.dial(dctx, "tcp", p.addr)
	if err != nil {
		return nil, err // a *connectError
	}
	if t.tlsConf != nil {
		cfg := t.tlsConf.Clone()
		cfg.NextProtos = []string{"h2"}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(dctx); err != nil {
			nc.Close()
			return nil, &connectError{err}
		}
		nc = tc
	}
	cc := &h2Conn{
		pool:       p,
		nc:         nc,
		nextID:     1,
		streams:    make(map[uint32]*h2Stream),
		maxStreams: 100, // until the server's SETTINGS say otherwise
		sendWin:    65535,
		initWin:    65535,
		maxFrame:   16384,
		flushCh:    make(chan struct{}, 1),
		done:       make(chan struct{}),
	}
	var rd io.Reader = nc
	var wr io.Writer = nc
	if rio := newH2RawIO(nc); rio != nil { // h2raw_linux.go
		rd, wr = rio, rio.writer()
	}
	cc.bw, cc.br = bufio.NewWriterSize(wr, 32<<10), bufio.NewReaderSize(rd, 32<<10)
	cc.fr = http2.NewFramer(cc.bw, cc.br)
	cc.fr.MaxHeaderListSize = h2MaxHeaderList
	cc.fields = newH2FieldReader(cc.fr, h2MaxHeaderList)
	cc.fr.SetReuseFrames()
	cc.henc = newH2Encoder(&cc.hbuf)
	cc.cond = sync.NewCond(&cc.mu)
	// Preface, settings and the connection window, in one write.
	_, _ = cc.bw.WriteString(http2.ClientPreface)
	_ = cc.fr.WriteSettings(
		http2.Setting{ID: http2.SettingEnablePush, Val: 0},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: h2StreamWindow},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: h2MaxHeaderList},
	)
	_ = cc.fr.WriteWindowUpdate(0, h2ConnWindow-65535)
	if err := cc.bw.Flush(); err != nil {
		nc.Close()
		return nil, &connectError{err}
	}
	// The server's SETTINGS come first: wait for them, so that no more
	// streams are opened than the server takes (REFUSED_STREAM).
	if dl, ok := dctx.Deadline(); ok {
		_ = nc.SetReadDeadline(dl)
	}
	f, err := cc.fr.ReadFrame()
	if err == nil {
		if sf, ok := f.(*http2.SettingsFrame); !ok || sf.IsAck() {
			err = fmt.Errorf("dataplane: h2 upstream: first frame %v is not SETTINGS", f.Header().Type)
		} else {
			err = cc.onSettings(sf)
		}
	}
	if err != nil {
		nc.Close()
		return nil, &connectError{err}
	}
	_ = nc.SetReadDeadline(time.Time{})
	cc.ping = time.AfterFunc(h2PingInterval, cc.healthCheck)
	go cc.readLoop()
	go h2FlushLoop(cc.flushCh, cc.done, false, cc.flushOut)
	return cc, nil
}

// h2Conn is one client connection. Lock order: wmu before mu.
type h2Conn struct {
	pool *h2Pool
	nc   net.Conn
	br   *bufio.Reader
	fr   *http2.Framer // reads: readLoop only (through fields); writes: under wmu

	fields *h2FieldReader // readLoop only

	wmu    sync.Mutex
	bw     *bufio.Writer
	henc   *h2Encoder
	hbuf   bytes.Buffer
	nextID uint32
	werr   error

	flushCh chan struct{}
	done    chan struct{} // closed with the connection

	mu         sync.Mutex
	cond       *sync.Cond // send window, stream state changes
	streams    map[uint32]*h2Stream
	reserved   int // streams reserved by get, not yet opened
	maxStreams uint32
	sendWin    int64 // connection send window
	initWin    int64 // stream send window from SETTINGS
	maxFrame   uint32
	recvCredit int64 // connection receive window consumed, not yet returned
	goAway     bool
	idleClose  bool // close once the last stream ends
	closed     bool
	err        error

	frames    atomic.Uint32 // frames read, for the health check
	lastSeen  uint32
	pingSent  bool
	ping      *time.Timer
	closeOnce sync.Once
}

// reserve takes a stream slot; dead reports a connection to drop.
func (cc *h2Conn) reserve() (ok, dead bool) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.closed || cc.goAway || cc.idleClose {
		return false, true
	}
	if uint32(len(cc.streams)+cc.reserved) >= cc.maxStreams || cc.nextID >= 1<<31-2 {
		return false, cc.nextID >= 1<<31-2
	}
	cc.reserved++
	return true, false
}

func (cc *h2Conn) closeWhenIdle() {
	cc.mu.Lock()
	cc.idleClose = true
	idle := len(cc.streams) == 0 && cc.reserved == 0
	cc.mu.Unlock()
	if idle {
		cc.close(errH2Closed)
	}
}

// close closes the connection and fails its streams with err.
func (cc *h2Conn) close(err error) {
	cc.closeOnce.Do(func() {
		cc.mu.Lock()
		cc.closed, cc.err = true, err
		for _, s := range cc.streams {
			s.failLocked(err)
		}
		cc.cond.Broadcast()
		cc.mu.Unlock()
		cc.ping.Stop()
		close(cc.done)
		cc.nc.Close()
		cc.pool.remove(cc)
	})
}

// flush asks the flusher to write the buffered frames out.
func (cc *h2Conn) flush() { poke(cc.flushCh) }

// flushOut writes out the buffered frames; a failed write closes the
// connection.
func (cc *h2Conn) flushOut() error {
	cc.wmu.Lock()
	var err error
	if cc.bw.Buffered() > 0 && cc.werr == nil {
		if err = cc.bw.Flush(); err != nil {
			cc.werr = err
		}
	}
	cc.wmu.Unlock()
	if err != nil {
		cc.close(err)
	}
	return err
}

// healthCheck pings a connection nothing was read from for an interval,
// and closes it when the ping got no answer for another.
func (cc *h2Conn) healthCheck() {
	n := cc.frames.Load()
	cc.mu.Lock()
	if cc.closed {
		cc.mu.Unlock()
		return
	}
	seen := n != cc.lastSeen
	cc.lastSeen = n
	dead := !seen && cc.pingSent
	sendPing := !seen && !cc.pingSent
	if seen {
		cc.pingSent = false
	}
	if sendPing {
		cc.pingSent = true
	}
	cc.mu.Unlock()
	if dead {
		cc.close(errors.New("dataplane: h2 upstream connection: ping timeout"))
		return
	}
	if sendPing {
		cc.wmu.Lock()
		_ = cc.fr.WritePing(false, [8]byte{'m', 'e', 's', 'h'})
		cc.wmu.Unlock()
		cc.flush()
	}
	cc.ping.Reset(h2PingInterval)
}

// readLoop reads the frames of the connection and dispatches them.
func (cc *h2Conn) readLoop() {
	err := cc.readFrames()
	cc.close(err)
}

func (cc *h2Conn) readFrames() error {
	for {
		f, err := cc.fields.ReadFrame()
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) { // malformed frame on one stream
				if s := cc.stream(se.StreamID); s != nil {
					s.fail(se)
					cc.reset(s, se.Code)
				}
				continue
			}
			return err
		}
		cc.frames.Add(1)
		switch f := f.(type) {
		case *h2Fields:
			if s := cc.stream(f.StreamID); s != nil {
				s.onHeaders(f)
			}
		case *http2.DataFrame:
			cc.onData(f)
		case *http2.RSTStreamFrame:
			if s := cc.stream(f.StreamID); s != nil {
				err := error(http2.StreamError{StreamID: f.StreamID, Code: f.ErrCode})
				if f.ErrCode == http2.ErrCodeRefusedStream {
					err = errH2Refused
				}
				s.fail(err)
				cc.forget(s)
			}
		case *http2.SettingsFrame:
			if f.IsAck() {
				break
			}
			if err := cc.onSettings(f); err != nil {
				return err
			}
		case *http2.WindowUpdateFrame:
			cc.onWindowUpdate(f)
		case *http2.PingFrame:
			if !f.IsAck() {
				cc.wmu.Lock()
				_ = cc.fr.WritePing(true, f.Data)
				cc.wmu.Unlock()
				cc.flush()
			}
		case *http2.GoAwayFrame:
			cc.onGoAway(f)
		case *http2.PushPromiseFrame:
			return errors.New("dataplane: h2 upstream sent PUSH_PROMISE")
		}
	}
}

func (cc *h2Conn) stream(id uint32) *h2Stream {
	cc.mu.Lock()
	s := cc.streams[id]
	cc.mu.Unlock()
	return s
}

// forget removes a finished stream; the last one of a connection going
// away closes it.
func (cc *h2Conn) forget(s *h2Stream) {
	cc.mu.Lock()
	if cc.streams[s.id] == s {
		delete(cc.streams, s.id)
	}
	last := len(cc.streams) == 0 && cc.reserved == 0 && (cc.goAway || cc.idleClose)
	cc.cond.Broadcast()
	cc.mu.Unlock()
	if last {
		cc.close(errH2Closed)
	}
}

// reset sends RST_STREAM for s.
func (cc *h2Conn) reset(s *h2Stream, code http2.ErrCode) {
	cc.wmu.Lock()
	_ = cc.fr.WriteRSTStream(s.id, code)
	cc.wmu.Unlock()
	cc.flush()
	cc.forget(s)
}

func (cc *h2Conn) onSettings(f *http2.SettingsFrame) error {
	cc.wmu.Lock()
	defer cc.wmu.Unlock()
	cc.mu.Lock()
	err := applyH2Settings(f, cc.henc, &cc.maxFrame, &cc.initWin, func(delta int64) bool { return moveWindows(cc.streams, delta) }, func(n uint32) { cc.maxStreams = n })
	cc.cond.Broadcast()
	cc.mu.Unlock()
	if err != nil {
		return err
	}
	_ = cc.fr.WriteSettingsAck()
	cc.flush()
	return nil
}

func (cc *h2Conn) onWindowUpdate(f *http2.WindowUpdateFrame) {
	cc.mu.Lock()
	if f.StreamID == 0 {
		cc.sendWin += int64(f.Increment)
	} else if s := cc.streams[f.StreamID]; s != nil {
		s.sendWin += int64(f.Increment)
	}
	cc.cond.Broadcast()
	cc.mu.Unlock()
}

func (cc *h2Conn) onGoAway(f *http2.GoAwayFrame) {
	cc.mu.Lock()
	cc.goAway = true
	var refused []*h2Stream
	for id, s := range cc.streams {
		if id > f.LastStreamID {
			refused = append(refused, s)
		}
	}
	for _, s := range refused {
		s.failLocked(errH2Refused)
		delete(cc.streams, s.id)
	}
	idle := len(cc.streams) == 0 && cc.reserved == 0
	cc.cond.Broadcast()
	cc.mu.Unlock()
	cc.pool.remove(cc)
	if idle {
		cc.close(errH2Closed)
	}
}

// onData queues the payload of f on its stream and returns the window
// of data no stream will read.
func (cc *h2Conn) onData(f *http2.DataFrame) {
	n := int64(f.Length)
	cc.mu.Lock()
	s := cc.streams[f.StreamID]
	if s == nil || s.err != nil || s.remoteEnd {
		cc.recvCredit += n
		upd := cc.connCreditLocked()
		cc.mu.Unlock()
		cc.sendConnCredit(upd)
		return
	}
	data := f.Data()
	if pad := n - int64(len(data)); pad > 0 { // padding is consumed now
		cc.recvCredit += pad
		s.recvCredit += pad
	}
	s.buf.Write(data)
	if f.StreamEnded() {
		s.remoteEnd = true
	}
	s.cond.Signal()
	upd := cc.connCreditLocked()
	cc.mu.Unlock()
	cc.sendConnCredit(upd)
}

// connCreditLocked returns the connection window to give back now.
func (cc *h2Conn) connCreditLocked() uint32 {
	if cc.recvCredit < h2ConnWUpdate {
		return 0
	}
	n := cc.recvCredit
	cc.recvCredit = 0
	return uint32(n)
}

func (cc *h2Conn) sendConnCredit(n uint32) { sendWindowUpdates(&cc.wmu, cc.fr, cc, 0, 0, n) }

// h2Stream is one request on an h2Conn; it is the response body.
type h2Stream struct {
	cc   *h2Conn
	id   uint32
	cond sync.Cond // L is &cc.mu

	// Guarded by cc.mu.
	sendWin    int64
	recvCredit int64 // stream receive window consumed, not yet returned
	gotHeaders bool
	status     int
	header     http.Header
	trailer    http.Header
	buf        h2DataBuf // received DATA not read yet
	remoteEnd  bool
	localEnd   bool
	err        error
	replay     *[]byte // request body read, until the response headers came (h2ChunkPool)
	replayOff  bool    // no more is kept: the headers came, too much was read, or the stream failed
	replayOver bool    // more than h2MaxReplay was read
	bodyEOF    bool
	bodyErr    error
	bodyDone   chan struct{} // closed when writeBody returns

	resp  *http.Response
	respv http.Response // what resp points to
	// wbody and wtrailer are the request body and trailers for
	// writeBody, run by runTask.
	wbody     io.Reader
	wtrailer  http.Header
	stopCtx   func() bool
	srvCtx    *h2srvCtx // aborts s when cancelled, instead of stopCtx
	closeOnce sync.Once
}

// onHeaders handles the response headers or trailers.
func (s *h2Stream) onHeaders(f *h2Fields) {
	cc := s.cc
	if !s.gotHeaders { // only the reader goroutine writes it
		status := 0
		for _, hf := range f.Fields {
			if hf.Name == ":status" {
				status, _ = strconv.Atoi(hf.Value)
			}
		}
		h := h2Header(f.Fields)
		if status == 0 {
			s.fail(errors.New("dataplane: h2 upstream response without :status"))
			cc.reset(s, http2.ErrCodeProtocol)
			return
		}
		if status >= 100 && status < 200 && !f.StreamEnded() {
			return // informational response
		}
		cc.mu.Lock()
		s.gotHeaders, s.status, s.header = true, status, h
		if f.StreamEnded() {
			s.remoteEnd = true
		}
		s.cond.Broadcast()
		cc.mu.Unlock()
		return
	}
	t := h2Header(f.Fields)
	cc.mu.Lock()
	s.trailer, s.remoteEnd = t, true
	s.cond.Broadcast()
	cc.mu.Unlock()
}

func (s *h2Stream) fail(err error) {
	s.cc.mu.Lock()
	s.failLocked(err)
	s.cc.mu.Unlock()
}

func (s *h2Stream) failLocked(err error) {
	if s.err == nil && !(s.remoteEnd && s.localEnd) {
		s.err = err
	}
	s.cond.Broadcast()
	s.cc.cond.Broadcast()
}

// abort ends the stream on a cancelled request context.
func (s *h2Stream) abort(err error) {
	cc := s.cc
	cc.mu.Lock()
	done := s.err != nil || (s.remoteEnd && s.localEnd)
	s.failLocked(err)
	cc.mu.Unlock()
	if !done {
		cc.reset(s, http2.ErrCodeCancel)
	}
}

// Read implements io.Reader for the response body.
func (s *h2Stream) Read(p []byte) (int, error) {
	cc := s.cc
	cc.mu.Lock()
	for s.buf.Len() == 0 && !s.remoteEnd && s.err == nil {
		s.cond.Wait()
	}
	if s.buf.Len() == 0 {
		err := s.err
		if s.remoteEnd { // the response is complete
			err = io.EOF
			if s.resp.Trailer == nil {
				s.resp.Trailer = s.trailer
			} else {
				for k, vv := range s.trailer {
					s.resp.Trailer[k] = vv
				}
			}
		}
		cc.mu.Unlock()
		return 0, err
	}
	n := s.buf.Read(p)
	s.recvCredit += int64(n)
	cc.recvCredit += int64(n)
	var supd uint32
	if !s.remoteEnd && s.recvCredit >= h2StreamWindow/4 {
		supd, s.recvCredit = uint32(s.recvCredit), 0
	}
	cupd := cc.connCreditLocked()
	cc.mu.Unlock()
	sendWindowUpdates(&cc.wmu, cc.fr, cc, s.id, supd, cupd)
	return n, nil
}

// more reports whether Read would return at once: data or the end of the
// response is already there.
func (s *h2Stream) more() bool {
	s.cc.mu.Lock()
	m := s.buf.Len() > 0 || s.remoteEnd || s.err != nil
	s.cc.mu.Unlock()
	return m
}

// Close implements io.Closer: a stream not finished is reset.
func (s *h2Stream) Close() error {
	s.closeOnce.Do(func() {
		if s.stopCtx != nil {
			s.stopCtx()
		}
		if s.srvCtx != nil {
			s.srvCtx.clearAbort(s)
		}
		cc := s.cc
		cc.mu.Lock()
		finished := s.remoteEnd && s.localEnd || s.err != nil
		unread := int64(s.buf.Len())
		s.buf.Reset()
		if !finished {
			s.err = errH2Closed
		}
		cc.recvCredit += unread
		cupd := cc.connCreditLocked()
		cc.mu.Unlock()
		cc.sendConnCredit(cupd)
		if finished {
			cc.forget(s)
			return
		}
		cc.reset(s, http2.ErrCodeCancel)
	})
	return nil
}

// RoundTrip implements http.RoundTripper.
func (t *h2Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	p := t.pool(req.URL.Host)
	ctx := req.Context()
	var body io.Reader
	if req.Body != nil && req.Body != http.NoBody {
		body = req.Body
	}
	for try := 0; ; try++ {
		cc, err := p.get(ctx)
		if err != nil {
			return nil, err
		}
		resp, replay, err := cc.roundTrip(req, body)
		if err == errH2Refused && try < h2MaxRefused && ctx.Err() == nil {
			body = replay // not processed: send it again, on another connection
			continue
		}
		return resp, err
	}
}

// h2MaxReplay bounds the request body kept to send a refused stream
// again.
const (
	h2MaxReplay  = h2ChunkSize
	h2ReplayWait = 500 * time.Millisecond
)

// roundTrip sends req with body on a reserved stream of cc and waits for
// the response headers. When the upstream refused the stream unprocessed
// (errH2Refused), replay is the body to send it again with.
func (cc *h2Conn) roundTrip(req *http.Request, body io.Reader) (resp *http.Response, replay io.Reader, err error) {
	s := &h2Stream{cc: cc}
	s.cond.L = &cc.mu
	hasTrailers := len(req.Trailer) > 0
	cc.wmu.Lock()
	cc.mu.Lock()
	cc.reserved--
	if cc.closed || cc.goAway || cc.werr != nil {
		idle := len(cc.streams) == 0 && cc.reserved == 0
		cc.mu.Unlock()
		cc.wmu.Unlock()
		if idle {
			cc.close(errH2Closed)
		}
		return nil, body, errH2Refused // not sent: another connection may take it
	}
	s.id = cc.nextID
	cc.nextID += 2
	s.sendWin = cc.initWin
	s.localEnd = body == nil && !hasTrailers
	cc.streams[s.id] = s
	cc.mu.Unlock()
	err = cc.writeHeaders(s.id, req, s.localEnd)
	cc.wmu.Unlock()
	if err != nil { // the connection is broken: nothing was sent
		cc.close(err)
		return nil, body, errH2Refused
	}
	cc.flush()
	if sctx, ok := req.Context().(*h2srvCtx); ok { // a request of our server: no AfterFunc
		if sctx.setAbort(s) {
			s.srvCtx = sctx
		} else {
			h2Go(h2Func(func() { s.abort(context.Canceled) }))
		}
	} else if ctx := req.Context(); ctx.Done() != nil {
		s.stopCtx = context.AfterFunc(ctx, func() { s.abort(ctx.Err()) })
	}
	if !s.localEnd {
		s.bodyDone = make(chan struct{})
		s.wbody, s.wtrailer = body, req.Trailer
		h2Go(s) // s.runTask: writeBody; h2worker.go
	}
	cc.mu.Lock()
	for !s.gotHeaders && s.err == nil {
		s.cond.Wait()
	}
	if s.err != nil && !s.gotHeaders {
		err := s.err
		if err != errH2Refused || s.bodyDone == nil {
			s.dropReplayLocked()
			cc.mu.Unlock()
			s.Close()
			return nil, nil, err
		}
		cc.mu.Unlock()
		s.Close()
		// Take the body back from the writer: what it read is sent
		// again. A writer still waiting for the client's first bytes
		// after a while keeps the body: the stream is not sent again.
		t := time.NewTimer(h2ReplayWait)
		select {
		case <-s.bodyDone:
			t.Stop()
		case <-t.C:
			cc.mu.Lock()
			s.dropReplayLocked()
			cc.mu.Unlock()
			return nil, nil, errors.New("dataplane: h2 stream refused by upstream while its request body was being read")
		}
		cc.mu.Lock()
		defer cc.mu.Unlock()
		var sent []byte
		if s.replay != nil {
			sent = *s.replay // handed over to the retry, not pooled again
		}
		s.replay, s.replayOff = nil, true
		switch {
		case s.replayOver:
			return nil, nil, fmt.Errorf("dataplane: h2 stream refused by upstream after more than %d bytes of the request body were sent", h2MaxReplay)
		case s.bodyErr != nil:
			return nil, nil, s.bodyErr
		case s.bodyEOF:
			return nil, bytes.NewReader(sent), err
		}
		return nil, io.MultiReader(bytes.NewReader(sent), body), err
	}
	resp = &s.respv // in s: no allocation of its own
	*resp = http.Response{
		Status:        h2Status(s.status),
		StatusCode:    s.status,
		Proto:         "HTTP/2.0",
		ProtoMajor:    2,
		Header:        s.header,
		Body:          s,
		ContentLength: -1,
		Request:       req,
	}
	s.dropReplayLocked() // sent for good
	cc.mu.Unlock()
	s.resp = resp
	if cl := resp.Header["Content-Length"]; len(cl) == 1 {
		if n, err := strconv.ParseInt(cl[0], 10, 64); err == nil {
			resp.ContentLength = n
		}
	}
	if decl := resp.Header["Trailer"]; len(decl) > 0 {
		resp.Trailer = make(http.Header)
		for _, v := range decl {
			for _, k := range strings.Split(v, ",") {
				if k = strings.TrimSpace(k); k != "" {
					resp.Trailer[http.CanonicalHeaderKey(k)] = nil
				}
			}
		}
	}
	return resp, nil, nil
}

var teTrailers = []string{"trailers"}

// writeHeaders writes the request HEADERS (and CONTINUATION) frames of
// stream id; wmu is held.
func (cc *h2Conn) writeHeaders(id uint32, req *http.Request, end bool) error {
	if cc.werr != nil {
		return cc.werr
	}
	cc.hbuf.Reset()
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	e := cc.henc
	_ = e.WriteField(hpack.HeaderField{Name: ":authority", Value: host})
	_ = e.WriteField(hpack.HeaderField{Name: ":method", Value: req.Method})
	_ = e.WriteField(hpack.HeaderField{Name: ":path", Value: req.URL.RequestURI()})
	_ = e.WriteField(hpack.HeaderField{Name: ":scheme", Value: req.URL.Scheme})
	for k, vv := range req.Header {
		switch k {
		case "Connection", "Proxy-Connection", "Transfer-Encoding", "Upgrade", "Keep-Alive", "Host":
			continue
		case "Te":
			vv = teTrailers
		}
		name := lowerH2Key(k)
		for _, v := range vv {
			_ = e.WriteField(hpack.HeaderField{Name: name, Value: v})
		}
	}
	if len(req.Trailer) > 0 { // declared, for servers that keep only those (net/http)
		keys := make([]string, 0, len(req.Trailer))
		for k := range req.Trailer {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		_ = e.WriteField(hpack.HeaderField{Name: "trailer", Value: strings.Join(keys, ",")})
	}
	if req.ContentLength > 0 && req.Header["Content-Length"] == nil {
		_ = e.WriteField(hpack.HeaderField{Name: "content-length", Value: strconv.FormatInt(req.ContentLength, 10)})
	}
	return cc.writeBlock(id, cc.hbuf.Bytes(), end)
}

// writeBlock writes a header block as HEADERS and CONTINUATION frames.
func (cc *h2Conn) writeBlock(id uint32, blk []byte, end bool) error {
	max := int(cc.maxFrameSize())
	first := true
	for first || len(blk) > 0 {
		chunk := blk
		if len(chunk) > max {
			chunk = chunk[:max]
		}
		blk = blk[len(chunk):]
		var err error
		if first {
			err = cc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: chunk, EndStream: end, EndHeaders: len(blk) == 0})
			first = false
		} else {
			err = cc.fr.WriteContinuation(id, len(blk) == 0, chunk)
		}
		if err != nil {
			cc.werr = err
			return err
		}
	}
	return nil
}

func (cc *h2Conn) maxFrameSize() uint32 {
	cc.mu.Lock()
	n := cc.maxFrame
	cc.mu.Unlock()
	return n
}

// dropReplayLocked gives the replay buffer back and keeps no more.
func (s *h2Stream) dropReplayLocked() {
	if s.replay != nil {
		*s.replay = (*s.replay)[:0]
		h2ChunkPool.Put(s.replay)
		s.replay = nil
	}
	s.replayOff = true
}

// writeBody sends the request body and trailers of s. Until the
// response headers came, it keeps what it read (up to h2MaxReplay) for
// roundTrip to send again on a refused stream.
// runTask implements h2Task: writeBody, on a worker of h2Go.
func (s *h2Stream) runTask() {
	body, trailer := s.wbody, s.wtrailer
	s.wbody, s.wtrailer = nil, nil
	s.writeBody(body, trailer)
}

func (s *h2Stream) writeBody(body io.Reader, trailer http.Header) {
	defer close(s.bodyDone)
	cc := s.cc
	if body != nil {
		bp := copyBufPool.Get().(*[]byte)
		defer copyBufPool.Put(bp)
		buf := *bp
		for {
			cc.mu.Lock()
			if s.err != nil { // refused, reset or cancelled: stop reading
				cc.mu.Unlock()
				return
			}
			cc.mu.Unlock()
			n, rerr := body.Read(buf)
			if n > 0 || rerr != nil {
				cc.mu.Lock()
				if !s.replayOff {
					if s.replay == nil {
						s.replay = h2ChunkPool.Get().(*[]byte)
					}
					if len(*s.replay)+n > h2MaxReplay {
						s.replayOver = true
						s.dropReplayLocked()
					} else {
						*s.replay = append(*s.replay, buf[:n]...)
					}
				}
				if rerr == io.EOF {
					s.bodyEOF = true
				} else if rerr != nil {
					s.bodyErr = rerr
				}
				cc.mu.Unlock()
			}
			if n > 0 {
				if err := s.writeData(buf[:n]); err != nil {
					return
				}
			}
			if rerr == io.EOF {
				break
			}
			if rerr != nil { // the client went away
				s.abort(rerr)
				return
			}
		}
	}
	cc.wmu.Lock()
	cc.mu.Lock()
	live := s.err == nil && cc.streams[s.id] == s
	s.localEnd = true
	finished := s.remoteEnd
	cc.mu.Unlock()
	if live {
		if len(trailer) > 0 {
			cc.hbuf.Reset()
			for k, vv := range trailer {
				name := lowerH2Key(k)
				for _, v := range vv {
					_ = cc.henc.WriteField(hpack.HeaderField{Name: name, Value: v})
				}
			}
			_ = cc.writeBlock(s.id, cc.hbuf.Bytes(), true)
		} else {
			_ = cc.fr.WriteData(s.id, true, nil)
		}
	}
	cc.wmu.Unlock()
	cc.flush()
	if finished {
		cc.mu.Lock()
		s.cond.Broadcast()
		cc.mu.Unlock()
	}
}

// writeData sends p as DATA frames within the send windows.
func (s *h2Stream) writeData(p []byte) error {
	cc := s.cc
	for len(p) > 0 {
		cc.mu.Lock()
		for s.err == nil && !cc.closed && (cc.sendWin <= 0 || s.sendWin <= 0) {
			cc.cond.Wait()
		}
		if err := s.err; err != nil || cc.closed {
			if err == nil {
				err = errH2Closed
			}
			cc.mu.Unlock()
			return err
		}
		n := int64(len(p))
		n = min(n, cc.sendWin, s.sendWin, int64(cc.maxFrame))
		cc.sendWin -= n
		s.sendWin -= n
		cc.mu.Unlock()
		cc.wmu.Lock()
		err := cc.werr
		if err == nil {
			err = cc.fr.WriteData(s.id, false, p[:n])
			if err != nil {
				cc.werr = err
			}
		}
		cc.wmu.Unlock()
		if err != nil {
			return err
		}
		cc.flush()
		p = p[n:]
	}
	return nil
}

// h2Header returns the regular fields of a header block as an
// http.Header; the values share one backing array.
func h2Header(fields []hpack.HeaderField) http.Header {
	h := make(http.Header, len(fields))
	vals := make([]string, 0, len(fields))
	for _, hf := range fields {
		if strings.HasPrefix(hf.Name, ":") {
			continue
		}
		k := canonicalH2Key(hf.Name)
		if vv, ok := h[k]; ok {
			h[k] = append(vv[:len(vv):len(vv)], hf.Value) // copies: vv is in vals
			continue
		}
		vals = append(vals, hf.Value)
		h[k] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	return h
}

// h2Status is the Status line of common response codes.
func h2Status(code int) string {
	switch code {
	case 200:
		return "200 OK"
	case 204:
		return "204 No Content"
	}
	return strconv.Itoa(code) + " " + http.StatusText(code)
}

// lowerH2Key lower-cases a canonical header name for HTTP/2, without
// allocating for the common ones.
func lowerH2Key(k string) string {
	if v, ok := h2LowerKeys[k]; ok {
		return v
	}
	return strings.ToLower(k)
}

// canonicalH2Key is http.CanonicalHeaderKey, without allocating for the
// common ones.
func canonicalH2Key(k string) string {
	if v, ok := h2CanonKeys[k]; ok {
		return v
	}
	return http.CanonicalHeaderKey(k)
}

var h2LowerKeys, h2CanonKeys, h2InternKeys = func() (map[string]string, map[string]string, map[string]string) {
	names := []string{
		"Accept", "Accept-Encoding", "Authorization", "Content-Encoding", "Content-Length", "Content-Type",
		"Date", "Grpc-Accept-Encoding", "Grpc-Encoding", "Grpc-Message", "Grpc-Status", "Grpc-Status-Details-Bin",
		"Grpc-Timeout", "Server", "Te", "Trailer", "User-Agent", "Via", "X-Forwarded-For", "X-Forwarded-Host",
		"X-Forwarded-Port", "X-Forwarded-Proto", "X-Real-Ip", "X-Request-Id",
		"Cache-Control", "Etag", "Expires", "Last-Modified", "Location", "Set-Cookie", "Vary",
	}
	lower, canon, intern := make(map[string]string), make(map[string]string), make(map[string]string)
	for _, n := range names {
		l := strings.ToLower(n)
		lower[n], canon[l], intern[n] = l, n, n
	}
	return lower, canon, intern
}()

func (s *h2Stream) sendWindow() *int64 { return &s.sendWin }
