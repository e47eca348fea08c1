//go:build linux

package dataplane

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/meshagent/meshagent/plugins"
	"github.com/valyala/fasthttp"

	"github.com/meshagent/meshagent/dataplane/router"
	"golang.org/x/sys/unix"
)

// clientEvent continues whatever the client connection was doing.
func (l *h1loop) clientEvent(c *evConn) {
	x := c.x
	if x == nil {
		l.serveClient(c)
		return
	}
	if c.wr && (len(x.out) > 0 || len(x.out2) > 0) {
		if x.local {
			l.flushLocal(c)
		} else {
			l.relayResponse(c)
		}
		return
	}
	if c.rd && x.bodyLeft > 0 && x.uc != nil && x.uc.state == usSending && len(x.req) == x.reqOff {
		l.pumpBody(c)
	}
}

// serveClient reads and starts requests until one is in progress or the
// client has nothing more for now.
func (l *h1loop) serveClient(c *evConn) {
	for c.x == nil && !c.closed {
		if c.rhi > c.rlo {
			x := l.getExchange()
			ok, err := parseReqHead(c.rbuf[c.rlo:c.rhi], &x.head)
			if err != nil {
				l.putExchange(x)
				l.fallback(c)
				return
			}
			if ok {
				x.c = c
				c.x = x
				l.startRequest(c)
				continue
			}
			l.putExchange(x)
			if c.rlo > 0 {
				c.rhi = copy(c.rbuf, c.rbuf[c.rlo:c.rhi])
				c.rlo = 0
			}
			if c.rhi == len(c.rbuf) {
				l.fallback(c) // a head larger than the buffer: fasthttp answers it
				return
			}
		}
		if !c.rd {
			if c.rhi == c.rlo && c.rbuf != nil {
				l.putBuf(c.rbuf)
				c.rbuf, c.rlo, c.rhi = nil, 0, 0
			}
			l.setDeadline(c, l.d.servers.idleTimeout())
			return
		}
		if c.rbuf == nil {
			c.rbuf = l.getBuf()
		}
		if c.rhi == c.rlo {
			c.rlo, c.rhi = 0, 0
		}
		n, e := rawRead(c.fd, c.rbuf[c.rhi:])
		switch {
		case e == syscall.EAGAIN:
			c.rd = false
		case e != 0 || n == 0:
			l.closeClient(c)
			return
		default:
			if n < len(c.rbuf)-c.rhi && !c.hup {
				c.rd = false
			}
			c.rhi += n
		}
	}
}

// fallback hands c to the fasthttp engine with its unread bytes.
func (l *h1loop) fallback(c *evConn) {
	var pending []byte
	if c.rhi > c.rlo {
		pending = append([]byte(nil), c.rbuf[c.rlo:c.rhi]...)
	}
	l.d.stats.H1Fallbacks.Add(1)
	_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
	l.unregister(c)
	f := os.NewFile(uintptr(c.fd), "")
	nc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		l.d.stats.ActiveConns.Add(-1)
		return
	}
	d := l.d
	table, od, local, untrack := c.table, c.od, c.local, c.untrack
	c.untrack = nil
	go func() {
		if untrack != nil {
			defer untrack()
		}
		defer d.stats.ActiveConns.Add(-1)
		if !d.track(nc) {
			nc.Close()
			return
		}
		defer d.untrack(nc)
		var conn net.Conn = nc
		if od {
			conn = newODConn(nc, local) // original_dst upstreams look for it (origdst.go)
		}
		pc := &peekConn{Conn: conn, buf: pending, lazyIdle: d.servers.idleTimeout()}
		_ = d.servers.getLazy(table).ServeConn(pc)
	}()
}

// startRequest routes the parsed request in c.x and starts it, answers it
// locally, or hands the connection to fasthttp.
func (l *h1loop) startRequest(c *evConn) {
	x := c.x
	h := &x.head
	d := l.d
	s := d.snap.Load()
	var rt *route
	if s != nil {
		if t := s.tables[c.table]; t != nil {
			x.host = hostNoPort(x.host[:0], h.host)
			x.rreq = router.Request{Path: b2s(h.path), Host: b2s(x.host), HostHeader: b2s(h.host), Method: b2s(h.method),
				RemoteAddr: c.remoteIP, Vars: (*evVars)(x)}
			if res, ok := t.Match(&x.rreq); ok {
				rt = res.Route.Value
			}
		}
	}
	if rt != nil && !x.slow && !rt.chain.Empty() {
		if !loopChain(rt.chain) {
			x.slow = true
		} else {
			x.rt = rt // plugins read route_id
			d.runPhase(rt.chain, plugins.PhaseAccess, (*evCtx)(x))
		}
	}
	if x.slow {
		c.x = nil
		l.putExchange(x)
		l.fallback(c)
		return
	}
	up := (*upstream)(nil)
	if rt != nil {
		up = rt.up
		if x.over != nil {
			up = x.over // traffic-split
		}
		if up != nil && !up.fastH1() {
			c.x = nil
			l.putExchange(x)
			l.fallback(c)
			return
		}
	}
	d.stats.Requests.Add(1)
	c.deadline = 0 // the idle timeout ends; upstream timeouts run now
	// Consume the head and the body bytes that came with it.
	c.rlo += h.len
	x.isHead = string(h.method) == "HEAD"
	if h.close || c.drain != nil && c.drain.on.Load() { // drain.go: its filter chain changed
		c.closeAfter = true
	}
	if h.contentLength > 0 {
		k := min(int64(c.rhi-c.rlo), h.contentLength)
		x.body = c.rbuf[c.rlo : c.rlo+int(k)]
		c.rlo += int(k)
		x.bodyLeft = h.contentLength - k
	}
	if rt == nil {
		d.stats.NoRoute.Add(1)
		l.respond(c, 404, "application/json", body404)
		return
	}
	x.rt = rt
	if up == nil || len(up.nodes) == 0 {
		l.respond(c, 503, "text/html", body503)
		return
	}
	x.up = up
	m := h.method
	x.idem = string(m) == "GET" || x.isHead || string(m) == "PUT" || string(m) == "DELETE" || string(m) == "OPTIONS" || string(m) == "TRACE"
	if up.keySpec != nil {
		x.key = up.keySpec.Append(x.key[:0], (*evVars)(x))
		x.att.ResetBytes(x.key, up.hf)
	} else {
		x.att.Reset("", up.hf)
	}
	if up.retryTO > 0 {
		x.start = time.Now()
	}
	l.attempt(c)
}

// fastH1 reports whether the event-loop engine can forward to u: plain
// HTTP to IP-literal nodes.
func (u *upstream) fastH1() bool {
	switch u.fast.Load() {
	case 1:
		return true
	case 2:
		return false
	}
	ok := !u.tls && !u.grpc && u.od == nil && u.dial == nil && u.scheme == "http"
	for _, n := range u.nodes {
		if _, err := netip.ParseAddrPort(n.addr); err != nil {
			ok = false
		}
	}
	if ok {
		u.fast.Store(1)
	} else {
		u.fast.Store(2)
	}
	return ok
}

// attempt picks a node and sends the request to it.
func (l *h1loop) attempt(c *evConn) {
	x := c.x
	up := x.up
	ni, ok := up.picker.Pick(&x.att)
	if !ok {
		l.failed(c)
		return
	}
	x.ni, x.picked = ni, true
	if x.attempt > 0 {
		l.d.stats.Retries.Add(1)
	}
	x.t0 = up.startTry()
	l.connect(c, true)
}

// connect gets a connection to the picked node (pooled unless !pooled)
// and starts sending.
func (l *h1loop) connect(c *evConn, pooled bool) {
	x := c.x
	up := x.up
	n := up.nodes[x.ni]
	p := l.pool(n.hc, n.addr)
	var uc *evConn
	if pooled {
		uc = p.get(l)
	}
	if uc == nil {
		var err error
		if uc, err = l.dial(p); err != nil {
			l.tryFailed(c, &connectError{err})
			return
		}
	}
	uc.owner = c
	x.uc = uc
	l.buildRequest(x, n)
	if uc.state == usConnecting {
		l.setDeadline(uc, up.to.connect)
		return
	}
	uc.state = usSending
	l.sendRequest(c)
}

// buildRequest writes the head for the upstream into x.req, followed by
// the body bytes that came with it.
func (l *h1loop) buildRequest(x *exchange, n *node) {
	h := &x.head
	c := x.c
	b := x.req[:0]
	b = append(b, h.method...)
	b = append(b, ' ')
	b = append(b, h.target...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	switch x.up.passHost {
	case passHostNode:
		b = append(b, n.hostHdr...)
	case passHostRewrite:
		b = append(b, x.up.host...)
	default:
		b = append(b, h.host...)
	}
	b = append(b, crlf...)
	for i := 0; i < h.n; i++ {
		if !isReqHop(h.hdrs[i].name) {
			b = append(b, h.hdrs[i].name...)
			b = append(b, ": "...)
			b = append(b, h.hdrs[i].value...)
			b = append(b, crlf...)
		}
	}
	b = append(b, "X-Forwarded-For: "...)
	if h.xffCount > 0 {
		for i := 0; i < h.n; i++ {
			if equalFoldASCII(h.hdrs[i].name, "X-Forwarded-For") && len(h.hdrs[i].value) > 0 {
				b = append(b, h.hdrs[i].value...)
				b = append(b, ", "...)
			}
		}
	}
	b = append(b, c.remote...)
	b = append(b, "\r\nX-Real-IP: "...)
	b = append(b, c.remote...)
	b = append(b, crlf...)
	if !h.hasXFProto {
		b = append(b, "X-Forwarded-Proto: http\r\n"...)
	}
	if !h.hasXFHost {
		b = append(b, "X-Forwarded-Host: "...)
		b = append(b, x.host...)
		b = append(b, crlf...)
	}
	if !h.hasXFPort {
		b = append(b, "X-Forwarded-Port: "...)
		b = append(b, c.localPort...)
		b = append(b, crlf...)
	}
	b = append(b, crlf...)
	b = append(b, x.body...)
	x.req, x.reqOff = b, 0
}

// sendRequest writes the request to the upstream until done or blocked.
func (l *h1loop) sendRequest(c *evConn) {
	x := c.x
	uc := x.uc
	for x.reqOff < len(x.req) {
		if !uc.wr {
			return
		}
		n, e := rawWritev(uc.fd, x.req[x.reqOff:], nil)
		if e == syscall.EAGAIN {
			uc.wr = false
			l.setDeadline(uc, x.up.to.send)
			return
		}
		if e != 0 {
			l.tryFailed(c, e)
			return
		}
		x.reqOff += n
	}
	if x.bodyLeft > 0 {
		l.setDeadline(uc, x.up.to.send)
		l.pumpBody(c)
		return
	}
	l.awaitResponse(c)
}

// pumpBody relays the rest of the request body from the client.
func (l *h1loop) pumpBody(c *evConn) {
	x := c.x
	uc := x.uc
	for {
		for len(x.pend) > 0 {
			if !uc.wr {
				return
			}
			n, e := rawWritev(uc.fd, x.pend, nil)
			if e == syscall.EAGAIN {
				uc.wr = false
				return
			}
			if e != 0 {
				l.abort(c, e)
				return
			}
			x.pend = x.pend[n:]
		}
		if x.bodyLeft == 0 {
			l.awaitResponse(c)
			return
		}
		if !c.rd {
			return
		}
		if c.rbuf == nil {
			c.rbuf = l.getBuf()
		}
		n, e := rawRead(c.fd, c.rbuf)
		switch {
		case e == syscall.EAGAIN:
			c.rd = false
			continue
		case e != 0 || n == 0:
			l.abort(c, nil) // the client left mid-body
			return
		}
		if n < len(c.rbuf) && !c.hup {
			c.rd = false
		}
		x.streamed = true
		k := int(min(int64(n), x.bodyLeft))
		x.bodyLeft -= int64(k)
		x.pend = c.rbuf[:k]
		c.rlo, c.rhi = k, n // a pipelined request may follow the body
	}
}

func (l *h1loop) awaitResponse(c *evConn) {
	x := c.x
	x.uc.state = usWaiting
	l.setDeadline(x.uc, x.up.to.read)
	if x.uc.rd {
		l.relayResponse(c)
	}
}

// upstreamEvent continues an upstream connection's work.
func (l *h1loop) upstreamEvent(uc *evConn) {
	o := uc.owner
	if o == nil {
		if uc.rd {
			l.closeUp(uc) // an idle connection closed (or spoke) out of turn
		}
		return
	}
	switch uc.state {
	case usConnecting:
		if !uc.wr {
			return
		}
		if soerr, err := unix.GetsockoptInt(uc.fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || soerr != 0 {
			if err == nil {
				err = syscall.Errno(soerr)
			}
			l.tryFailed(o, &connectError{err})
			return
		}
		uc.state = usSending
		l.sendRequest(o)
	case usSending:
		if !uc.wr {
			return
		}
		if o.x.reqOff < len(o.x.req) {
			l.sendRequest(o)
		} else {
			l.pumpBody(o)
		}
	case usWaiting:
		if uc.rd {
			l.relayResponse(o)
		}
	}
}

// relayResponse reads the upstream response and writes it to the client
// until done or blocked on either side.
func (l *h1loop) relayResponse(c *evConn) {
	x := c.x
	uc := x.uc
	for {
		if len(x.out) > 0 || len(x.out2) > 0 {
			if !l.flush(c) {
				return
			}
		}
		if x.started && x.respDone() {
			l.finish(c)
			return
		}
		if !uc.rd {
			l.setDeadline(uc, x.up.to.read)
			return
		}
		if uc.rbuf == nil {
			uc.rbuf = l.getBuf()
		}
		if x.started {
			uc.rlo, uc.rhi = 0, 0
		}
		n, e := rawRead(uc.fd, uc.rbuf[uc.rhi:])
		if e == syscall.EAGAIN {
			uc.rd = false
			continue
		}
		if e != 0 || n == 0 {
			var err error = io.ErrUnexpectedEOF
			if e != 0 {
				err = e
			}
			switch {
			case !x.started:
				l.tryFailed(c, err)
			case x.resp.mode == bodyUntilClose && e == 0:
				// The end of a close-delimited body: the last chunk.
				x.eof = true
				end := "0\r\n\r\n"
				if x.chunks {
					end = "\r\n0\r\n\r\n"
				}
				x.obuf = append(x.obuf[:0], end...)
				x.out = x.obuf
				continue
			default:
				l.abort(c, err)
			}
			return
		}
		if n < len(uc.rbuf)-uc.rhi && !uc.hup {
			uc.rd = false // drained; the next edge says when there is more
		}
		uc.rhi += n
		if !x.started {
			if !l.startResponse(c) {
				return
			}
			continue
		}
		if !l.takeBody(c, uc.rbuf[:uc.rhi]) {
			return
		}
	}
}

// startResponse parses the response head in the upstream's buffer and
// queues it, with the body bytes after it, for the client. false: not
// complete yet, or the exchange ended.
func (l *h1loop) startResponse(c *evConn) bool {
	x := c.x
	uc := x.uc
	for {
		out, ok, err := parseRespHead(x.obuf[:0], uc.rbuf[uc.rlo:uc.rhi], &x.resp, x.isHead)
		if err != nil {
			l.tryFailed(c, err)
			return false
		}
		if !ok {
			if uc.rhi == len(uc.rbuf) {
				if uc.rlo > 0 {
					uc.rhi = copy(uc.rbuf, uc.rbuf[uc.rlo:uc.rhi])
					uc.rlo = 0
					return true
				}
				x.obuf = out
				l.tryFailed(c, errBadResponse) // a head larger than the buffer
				return false
			}
			x.obuf = out
			return true
		}
		if x.resp.status < 200 {
			if x.resp.status == 101 {
				x.obuf = out
				l.tryFailed(c, errBadResponse) // no upgrade was asked for
				return false
			}
			uc.rlo += x.resp.len // interim (1xx): dropped, as nginx does
			continue
		}
		x.started = true
		if !x.resp.hasDate {
			out = append(out, l.dateHeader()...)
		}
		if c.hup {
			c.closeAfter = true
		}
		if c.closeAfter {
			out = append(out, "Connection: close\r\n"...)
		}
		out = append(out, crlf...)
		x.obuf = out
		x.out = out
		x.left = x.resp.length
		rest := uc.rbuf[uc.rlo+x.resp.len : uc.rhi]
		return l.takeBody(c, rest)
	}
}

// takeBody queues the body bytes b for the client, up to the end of the
// response; false when the exchange ended.
func (l *h1loop) takeBody(c *evConn, b []byte) bool {
	x := c.x
	k := len(b)
	switch x.resp.mode {
	case bodyNone:
		k = 0
	case bodyLength:
		k = int(min(int64(k), x.left))
		x.left -= int64(k)
	case bodyChunked:
		n, _, err := x.chunk.feed(b)
		if err != nil {
			l.abort(c, err)
			return false
		}
		k = n
	case bodyUntilClose:
		if k > 0 {
			// Each read becomes a chunk; its CRLF goes before the next.
			out := x.obuf[:0]
			if len(x.out) > 0 {
				out = x.out // the head is still to be sent
			}
			if x.chunks {
				out = append(out, crlf...)
			}
			out = strconv.AppendInt(out, int64(k), 16)
			out = append(out, crlf...)
			x.obuf, x.out, x.chunks = out, out, true
		}
	}
	if k < len(b) {
		x.resp.reuse = false // bytes after the response: never reuse
	}
	x.out2 = b[:k]
	return true
}

func (x *exchange) respDone() bool {
	switch x.resp.mode {
	case bodyNone:
		return true
	case bodyLength:
		return x.left == 0
	case bodyChunked:
		return x.chunk.done()
	}
	return x.eof // bodyUntilClose: the upstream's EOF, then the last chunk
}

// flush writes pending bytes to the client; false when blocked or failed.
func (l *h1loop) flush(c *evConn) bool {
	x := c.x
	for len(x.out) > 0 || len(x.out2) > 0 {
		if !c.wr {
			return false
		}
		n, e := rawWritev(c.fd, x.out, x.out2)
		if e == syscall.EAGAIN {
			c.wr = false
			l.setDeadline(c, l.d.servers.sendTimeout()) // nginx's send_timeout
			if x.uc != nil {
				x.uc.deadline = 0 // not reading the upstream meanwhile
			}
			return false
		}
		if e != 0 {
			l.abort(c, nil)
			return false
		}
		if n >= len(x.out) {
			n -= len(x.out)
			x.out = nil
			x.out2 = x.out2[n:]
		} else {
			x.out = x.out[n:]
		}
	}
	c.deadline = 0
	return true
}

// finish ends a completed exchange: the upstream connection back to its
// pool, the balancer and passive health told, the next request started.
func (l *h1loop) finish(c *evConn) {
	x := c.x
	if uc := x.uc; uc != nil {
		x.uc = nil
		x.up.done(x.ni, x.t0, x.resp.status, nil)
		if x.resp.reuse && x.bodyLeft == 0 && !uc.hup {
			uc.pool.put(l, uc)
		} else {
			l.closeUp(uc)
		}
	}
	l.endExchange(c)
}

func (l *h1loop) endExchange(c *evConn) {
	x := c.x
	c.x = nil
	l.putExchange(x)
	if c.closeAfter {
		l.closeClient(c)
		return
	}
	l.runq = append(l.runq, c)
}

// tryFailed handles an attempt that failed before any response byte
// reached the client: retry as forwardH1 does, or answer an error.
func (l *h1loop) tryFailed(c *evConn, err error) {
	x := c.x
	up := x.up
	var ce *connectError
	isConnect := errors.As(err, &ce)
	if uc := x.uc; uc != nil {
		x.uc = nil
		reused := uc.reused
		l.closeUp(uc)
		if reused && !isConnect && !x.stale && x.idem && x.bodyLeft == 0 && !x.streamed && !isTimeout(err) {
			// A keep-alive connection the node had closed: once more on
			// a fresh one, not counted against the node (fasthttp's rule).
			x.stale = true
			l.connect(c, false)
			return
		}
	}
	x.lastErr = err
	up.done(x.ni, x.t0, 0, err)
	x.picked = false
	l.d.stats.UpstreamErrors.Add(1)
	retry := !isTimeout(err) && (isConnect || x.idem && x.bodyLeft == 0 && !x.streamed) && x.attempt < up.retries &&
		(up.retryTO <= 0 || time.Since(x.start) <= up.retryTO)
	if retry {
		x.attempt++
		x.stale = false
		l.attempt(c)
		return
	}
	l.failed(c)
}

// failed answers the client after the last attempt.
func (l *h1loop) failed(c *evConn) {
	x := c.x
	if x.lastErr == nil {
		l.respond(c, 503, "text/html", body503)
		return
	}
	l.d.log.Warn("dataplane: upstream failed", "route", x.rt.id, "upstream", x.up.id, "err", x.lastErr)
	l.respondErr(c, x.lastErr)
}

func (l *h1loop) respondErr(c *evConn, err error) {
	if isTimeout(err) {
		l.respond(c, 504, "text/html", body504)
		return
	}
	l.respond(c, 502, "text/html", body502)
}

// abort ends an exchange that cannot complete: both connections closed.
// upErr, when set, is reported against the node.
func (l *h1loop) abort(c *evConn, upErr error) {
	x := c.x
	if x != nil {
		if uc := x.uc; uc != nil {
			x.uc = nil
			l.closeUp(uc)
			if upErr != nil {
				l.d.stats.UpstreamErrors.Add(1)
				x.up.done(x.ni, x.t0, 0, upErr)
			} else {
				x.up.picker.Done(x.ni, 0)
			}
		}
	}
	l.closeClient(c)
}

// respond answers the current request locally.
func (l *h1loop) respond(c *evConn, status int, ctype string, body []byte) {
	x := c.x
	if x.bodyLeft > 0 {
		c.closeAfter = true // the rest of the body is not read
	}
	b := x.obuf[:0]
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = append(b, fasthttp.StatusMessage(status)...)
	b = append(b, "\r\nContent-Type: "...)
	b = append(b, ctype...)
	b = append(b, "\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, crlf...)
	b = append(b, l.dateHeader()...)
	if c.closeAfter {
		b = append(b, "Connection: close\r\n"...)
	}
	b = append(b, crlf...)
	x.obuf, x.out, x.local = b, b, true
	if !x.isHead {
		x.out2 = body
	}
	l.flushLocal(c)
}

func (l *h1loop) flushLocal(c *evConn) {
	if l.flush(c) {
		l.endExchange(c)
	}
}

// dateHeader is "Date: <now>\r\n", formatted once a second.
func (l *h1loop) dateHeader() []byte {
	sec := l.now / int64(time.Second)
	if l.date == nil || sec != l.dateSec {
		l.dateSec = sec
		l.date = append(l.date[:0], "Date: "...)
		l.date = time.Now().UTC().AppendFormat(l.date, http.TimeFormat)
		l.date = append(l.date, crlf...)
	}
	return l.date
}

func (l *h1loop) closeClient(c *evConn) {
	if x := c.x; x != nil {
		c.x = nil
		if uc := x.uc; uc != nil {
			x.uc = nil
			l.closeUp(uc)
			x.up.picker.Done(x.ni, 0)
		}
		l.putExchange(x)
	}
	if c.closed {
		return
	}
	if c.untrack != nil {
		c.untrack()
		c.untrack = nil
	}
	l.unregister(c)
	unix.Close(c.fd)
	l.d.stats.ActiveConns.Add(-1)
}

func (l *h1loop) closeUp(uc *evConn) {
	if uc.pool != nil {
		uc.pool.remove(uc)
	}
	uc.owner = nil
	if !uc.closed {
		l.unregister(uc)
		unix.Close(uc.fd)
	}
}
