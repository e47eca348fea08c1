package dataplane

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/meshagent/meshagent/plugins"
)

// Bodies of the data plane's own answers, as APISIX/openresty sends them.
var (
	body404 = []byte(`{"error_msg":"404 Route Not Found"}` + "\n")
	body500 = errPage("500 Internal Server Error")
	body502 = errPage("502 Bad Gateway")
	body503 = errPage("503 Service Temporarily Unavailable")
	body504 = errPage("504 Gateway Time-out")
)

func errPage(s string) []byte {
	return []byte("<html>\r\n<head><title>" + s + "</title></head>\r\n<body>\r\n<center><h1>" + s +
		"</h1></center>\r\n<hr><center>meshagent</center>\r\n</body>\r\n</html>\r\n")
}

var eventStream = []byte("text/event-stream")

// servers holds one fasthttp.Server per (route table, TLS) pair; their
// handlers differ only in the table they route with.
type servers struct {
	d  *Dataplane
	mu sync.Mutex
	m  map[serverKey]*fasthttp.Server
	// idle overrides httpIdleTimeout when set (tests); set it before the
	// first connection.
	idle time.Duration
	// send overrides httpSendTimeout when set (tests).
	send time.Duration
	// drains tracks the connections of filter chains (drain.go).
	drains drainSet
	// h2drain overrides h2DrainTimeout when set (tests).
	h2drain time.Duration
}

// sendTimeout bounds each write of a streamed response body to a client.
func (s *servers) sendTimeout() time.Duration {
	if s.send > 0 {
		return s.send
	}
	return httpSendTimeout
}

// idleTimeout is the keep-alive idle timeout of HTTP/1.1 connections.
func (s *servers) idleTimeout() time.Duration {
	if s.idle > 0 {
		return s.idle
	}
	return httpIdleTimeout
}

type serverKey struct {
	table string
	tls   bool
	// lazyIdle: the server sets no idle deadline per request; its
	// connections are *peekConn with lazyIdle set (see serveSniffed).
	lazyIdle bool
}

// httpIdleTimeout closes HTTP/1.1 keep-alive connections idle that long.
const httpIdleTimeout = 120 * time.Second

// httpSendTimeout closes a client connection that takes no part of a
// streamed response body for that long (nginx's send_timeout), which
// frees the node connection the body comes from.
const httpSendTimeout = 60 * time.Second

// get returns the server of route table table; tls says whether its
// connections arrive over TLS.
func (s *servers) get(table string, tls bool) *fasthttp.Server {
	return s.getKey(serverKey{table: table, tls: tls})
}

// getLazy returns the plaintext server of table for connections whose
// idle timeout the *peekConn enforces (peekConn.lazyIdle).
func (s *servers) getLazy(table string) *fasthttp.Server {
	return s.getKey(serverKey{table: table, lazyIdle: true})
}

func (s *servers) getKey(k serverKey) *fasthttp.Server {
	table, tls := k.table, k.tls
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[serverKey]*fasthttp.Server{}
	}
	if srv, ok := s.m[k]; ok {
		return srv
	}
	d := s.d
	srv := &fasthttp.Server{
		Handler:                      func(fc *fasthttp.RequestCtx) { d.serveH1(fc, table, tls) },
		Name:                         "",
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
		DisablePreParseMultipartForm: true,
		ReadBufferSize:               8192,
		// Request bodies up to 1 MiB are read before the handler runs
		// (retryable, visible to plugins); larger and chunked ones are
		// streamed to the upstream, so uploads of any size pass in
		// bounded memory.
		MaxRequestBodySize: 1 << 20,
		StreamRequestBody:  true,
		IdleTimeout:        s.idleTimeout(),
		Logger:             fasthttpLogger{d},
	}
	if k.lazyIdle {
		// Two deadline updates and clock reads per request saved; the
		// connection refreshes its read deadline at most every
		// httpIdleTimeout/2 instead (peekConn.Read).
		srv.IdleTimeout = 0
	}
	s.m[k] = srv
	return srv
}

type fasthttpLogger struct{ d *Dataplane }

func (l fasthttpLogger) Printf(format string, args ...any) {
	l.d.log.Debug("dataplane: fasthttp", "msg", format, "args", args)
}

// serveH1 is the HTTP/1.1 request path: route, plugins, upstream.
func (d *Dataplane) serveH1(fc *fasthttp.RequestCtx, table string, isTLS bool) {
	d.stats.Requests.Add(1)
	if d.servers.drains.n.Load() != 0 && d.servers.drains.draining(fc) {
		defer fc.SetConnectionClose() // its filter chain changed (drain.go)
	}
	s := d.snap.Load()
	c := acquireH1(fc, isTLS)
	defer releaseH1(c)
	rt := d.matchH1(s, table, c)
	if rt == nil {
		d.stats.NoRoute.Add(1)
		fc.Response.Header.SetContentType("application/json")
		fc.Response.SetStatusCode(404)
		fc.Response.SetBodyRaw(body404)
		return
	}
	c.rt = rt
	ch := rt.chain
	if ch.Has(plugins.PhaseRewrite) && d.runPhase(ch, plugins.PhaseRewrite, c) {
		d.runLog(ch, c)
		return
	}
	if cons := c.consumer; cons != nil && len(cons.Entries) > 0 {
		// An auth plugin identified a consumer with plugins of its own:
		// run their rewrite phase, then the merged chain (APISIX).
		ch = ch.WithConsumer(cons)
		if own := cons.Chain(); own.Has(plugins.PhaseRewrite) && d.runPhase(own, plugins.PhaseRewrite, c) {
			d.runLog(ch, c)
			return
		}
	}
	if ch.Has(plugins.PhaseAccess) && d.runPhase(ch, plugins.PhaseAccess, c) {
		d.runLog(ch, c)
		return
	}
	up := rt.up
	if c.upSet {
		up = c.up
	}
	if up != nil && up.od != nil { // original_dst (origdst.go)
		up = d.origDstH1(c, up)
	}
	if up == nil || len(up.nodes) == 0 {
		fc.Response.SetStatusCode(503)
		fc.Response.Header.SetContentType("text/html")
		fc.Response.SetBodyRaw(body503)
		d.runLog(ch, c)
		return
	}
	if rt.websocket && isWebsocket(&fc.Request) {
		d.proxyWebsocket(c, up)
		return
	}
	if !d.forwardH1(c, up, ch) {
		d.runLog(ch, c)
		return
	}
	if ch.Has(plugins.PhaseHeaderFilter) {
		d.runPhase(ch, plugins.PhaseHeaderFilter, c)
	}
	if ch.Has(plugins.PhaseBodyFilter) && !c.stream {
		d.runPhase(ch, plugins.PhaseBodyFilter, c)
	}
	d.runLog(ch, c)
}

func (d *Dataplane) matchH1(s *snapshot, table string, c *h1Ctx) *route {
	if s == nil {
		return nil
	}
	t := s.tables[table]
	if t == nil {
		return nil
	}
	r := &c.fc.Request
	c.rreq.Path = b2s(r.URI().Path())
	c.rreq.Host = b2s(c.host)
	c.rreq.HostHeader = b2s(r.Header.Host())
	c.rreq.Method = b2s(r.Header.Method())
	c.rreq.RemoteAddr = c.remoteIP
	c.rreq.Vars = c.exprVars()
	res, ok := t.Match(&c.rreq)
	if !ok {
		return nil
	}
	return res.Route.Value
}

// runPhase runs one phase and reports whether the request was answered.
func (d *Dataplane) runPhase(ch *plugins.Chain, p plugins.Phase, c plugins.Ctx) bool {
	res := ch.Run(p, c)
	if res.Fault != plugins.FaultNone {
		d.fault(res, p, c)
	}
	return res.Status == plugins.Stop
}

func (d *Dataplane) runLog(ch *plugins.Chain, c plugins.Ctx) {
	if ch.Has(plugins.PhaseLog) {
		ch.Run(plugins.PhaseLog, c)
	}
}

func (d *Dataplane) fault(res plugins.Result, p plugins.Phase, c plugins.Ctx) {
	switch res.Fault {
	case plugins.FaultPanic:
		d.stats.PluginPanics.Add(1)
		d.log.Error("dataplane: plugin panicked; request answered 500", "plugin", res.Plugin, "phase", p.String(), "route", c.RouteID(), "panic", res.Panic)
	case plugins.FaultStopWithoutResponse:
		d.stats.PluginBugs.Add(1)
		d.log.Error("dataplane: plugin bug: Stop without a response; request answered 500", "plugin", res.Plugin, "phase", p.String(), "route", c.RouteID())
	}
}

// hop-by-hop headers removed in both directions (RFC 9110 7.6.1).
var hopHeaders = [...]string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Upgrade"}

// prepareH1 rewrites the request for the upstream: hop-by-hop headers,
// X-Forwarded-*, scheme.
func (d *Dataplane) prepareH1(c *h1Ctx, up *upstream) {
	r := &c.fc.Request
	h := &r.Header
	delHopRequest(h)
	c.buf = c.buf[:0]
	if prior := h.Peek("X-Forwarded-For"); len(prior) > 0 {
		c.buf = append(append(c.buf, prior...), ", "...)
	}
	c.buf = append(c.buf, c.remote...)
	h.SetBytesV("X-Forwarded-For", c.buf)
	if len(h.Peek("X-Forwarded-Proto")) == 0 {
		if c.tls {
			h.Set("X-Forwarded-Proto", "https")
		} else {
			h.Set("X-Forwarded-Proto", "http")
		}
	}
	if len(h.Peek("X-Forwarded-Host")) == 0 {
		h.SetBytesV("X-Forwarded-Host", c.host)
	}
	if len(h.Peek("X-Forwarded-Port")) == 0 {
		if a, ok := c.fc.LocalAddr().(*net.TCPAddr); ok {
			c.buf = strconv.AppendInt(c.buf[:0], int64(a.Port), 10)
			h.SetBytesV("X-Forwarded-Port", c.buf)
		}
	}
	h.SetBytesV("X-Real-IP", c.remote)
	scheme := c.scheme
	if scheme == "" {
		scheme = "http"
		if up.tls {
			scheme = "https"
		}
	}
	r.URI().SetScheme(scheme)
	r.UseHostHeader = true
}

// forwardH1 sends the request to up with retries and reports whether a
// response from the upstream is in fc.Response (false: an error answer
// was written).
func (d *Dataplane) forwardH1(c *h1Ctx, up *upstream, ch *plugins.Chain) bool {
	fc := c.fc
	if c.scheme == "https" && !up.tls || c.scheme == "http" && up.tls {
		c.scheme = "" // the node pools are per scheme; the upstream's wins
	}
	d.prepareH1(c, up)
	var start time.Time
	if up.retryTO > 0 {
		start = time.Now()
	}
	c.resetAttempt(up)
	c.stream = bytes.Contains(fc.Request.Header.Peek("Accept"), eventStream)
	var err error
	idem := idempotent(&fc.Request)
	for attempt := 0; attempt <= up.retries; attempt++ {
		ni, ok := up.picker.Pick(&c.att)
		if !ok {
			break
		}
		n := up.nodes[ni]
		if !c.hostSet {
			switch up.passHost {
			case passHostNode:
				fc.Request.Header.SetHostBytes(n.hostHdr)
			case passHostRewrite:
				fc.Request.Header.SetHostBytes(up.host)
			}
		}
		if attempt == 0 && ch.Has(plugins.PhaseBeforeProxy) && d.runPhase(ch, plugins.PhaseBeforeProxy, c) {
			up.picker.Done(ni, 0)
			return false
		}
		if attempt > 0 {
			d.stats.Retries.Add(1)
		}
		t0 := up.startTry()
		// Bodies over streamMax or of unknown length are relayed as they
		// arrive (hostPool.Do), in bounded memory, unless a body_filter
		// plugin needs the whole body; smaller ones are read whole, which
		// keeps the common path allocation-free. Event streams are
		// always relayed. HTTP/1.0 clients get whole bodies: fasthttp
		// would stream to them chunked, which they do not know.
		fc.Response.StreamBody = (c.stream || !ch.Has(plugins.PhaseBodyFilter)) && fc.Request.Header.IsHTTP11()
		err = n.hc.Do(&fc.Request, &fc.Response)
		up.done(ni, t0, fc.Response.StatusCode(), err)
		if err == nil {
			if b, ok := fc.Response.BodyStream().(*upstreamBody); ok {
				b.client, b.sendTO = fc.Conn(), d.servers.sendTimeout()
			}
			c.buf = delHopResponse(&fc.Response.Header, c.buf)
			c.applyPending()
			return true
		}
		d.stats.UpstreamErrors.Add(1)
		if isTimeout(err) {
			break
		}
		var ce *connectError
		if !errors.As(err, &ce) && !idem {
			break
		}
		if up.retryTO > 0 && time.Since(start) > up.retryTO {
			break
		}
	}
	fc.Response.Reset()
	c.applyPending()
	fc.Response.Header.SetContentType("text/html")
	switch {
	case err == nil:
		fc.Response.SetStatusCode(503)
		fc.Response.SetBodyRaw(body503)
	case isTimeout(err):
		fc.Response.SetStatusCode(504)
		fc.Response.SetBodyRaw(body504)
	default:
		fc.Response.SetStatusCode(502)
		fc.Response.SetBodyRaw(body502)
	}
	d.log.Warn("dataplane: upstream failed", "route", c.RouteID(), "upstream", up.id, "err", err)
	return false
}

func isTimeout(err error) bool {
	if errors.Is(err, fasthttp.ErrTimeout) || errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, fasthttp.ErrDialTimeout) {
		return true
	}
	var ne net.Error
	var ce *connectError
	return errors.As(err, &ne) && ne.Timeout() && !errors.As(err, &ce)
}

func isWebsocket(r *fasthttp.Request) bool {
	return r.Header.ConnectionUpgrade() && string(r.Header.Peek("Upgrade")) != "" && equalFoldASCII(r.Header.Peek("Upgrade"), "websocket")
}

func equalFoldASCII(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		x, y := b[i], s[i]
		if x >= 'A' && x <= 'Z' {
			x += 'a' - 'A'
		}
		if y >= 'A' && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// proxyWebsocket hijacks the client connection, replays the upgrade
// request to a node and copies bytes both ways until either side closes.
func (d *Dataplane) proxyWebsocket(c *h1Ctx, up *upstream) {
	fc := c.fc
	c.resetAttempt(up)
	ni, ok := up.picker.Pick(&c.att)
	if ok {
		defer up.picker.Done(ni, 0)
	}
	if !ok {
		fc.Response.SetStatusCode(503)
		fc.Response.SetBodyRaw(body503)
		return
	}
	n := up.nodes[ni]
	if !c.hostSet {
		switch up.passHost {
		case passHostNode:
			fc.Request.Header.SetHostBytes(n.hostHdr)
		case passHostRewrite:
			fc.Request.Header.SetHostBytes(up.host)
		}
	}
	uc, err := up.dialAddr(n.addr, up.dial) // up.dial: original destinations (origdst.go)
	if err != nil {
		d.stats.UpstreamErrors.Add(1)
		fc.Response.SetStatusCode(502)
		fc.Response.SetBodyRaw(body502)
		return
	}
	h := &fc.Request.Header
	prior := string(h.Peek("X-Forwarded-For"))
	if prior != "" {
		prior += ", "
	}
	h.Set("X-Forwarded-For", prior+string(c.remote))
	bw := bufio.NewWriter(uc)
	if err := fc.Request.Header.Write(bw); err == nil {
		err = bw.Flush()
	}
	if err != nil {
		uc.Close()
		fc.Response.SetStatusCode(502)
		fc.Response.SetBodyRaw(body502)
		return
	}
	fc.HijackSetNoResponse(true)
	fc.Hijack(func(cc net.Conn) {
		pipe(cc, uc)
	})
}
