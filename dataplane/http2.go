package dataplane

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshagent/meshagent/plugins"
)

// serveH2Conn serves one HTTP/2 connection with route table table, with
// the data plane's own HTTP/2 server (h2server.go).
func (d *Dataplane) serveH2Conn(c net.Conn, table string, isTLS bool) {
	d.serveH2(c, h2ConnContext(c), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { // original destination (origdst.go)
		d.serveHTTP(w, r, table, isTLS)
	}))
}

// serveHTTP is the net/http request path (HTTP/2, gRPC).
func (d *Dataplane) serveHTTP(w http.ResponseWriter, r *http.Request, table string, isTLS bool) {
	d.stats.Requests.Add(1)
	s := d.snap.Load()
	c := newH2Ctx(w, r, isTLS)
	var rt *route
	if s != nil {
		if t := s.tables[table]; t != nil {
			c.rreq.Path, c.rreq.Host, c.rreq.HostHeader, c.rreq.Method = r.URL.Path, c.host, r.Host, r.Method
			c.rreq.RemoteAddr, c.rreq.Vars = c.remoteIP, c.exprVars()
			if res, ok := t.Match(&c.rreq); ok {
				rt = res.Route.Value
			}
		}
	}
	if rt == nil {
		d.stats.NoRoute.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(404)
		_, _ = w.Write(body404)
		return
	}
	c.rt = rt
	ch := rt.chain
	defer func() { d.runLog(ch, c) }()
	if d.runPhase(ch, plugins.PhaseRewrite, c) {
		d.writeH2Local(c)
		return
	}
	if cons := c.consumer; cons != nil && len(cons.Entries) > 0 {
		ch = ch.WithConsumer(cons) // see serveH1
		if d.runPhase(cons.Chain(), plugins.PhaseRewrite, c) {
			d.writeH2Local(c)
			return
		}
	}
	if d.runPhase(ch, plugins.PhaseAccess, c) {
		d.writeH2Local(c)
		return
	}
	up := rt.up
	if c.upSet {
		up = c.up
	}
	if up != nil && up.od != nil { // original_dst (origdst.go)
		up = d.origDstHTTP(r, up)
	}
	if up == nil || len(up.nodes) == 0 {
		c.Respond(503, body503)
		d.writeH2Local(c)
		return
	}
	d.forwardHTTP(c, up, ch)
}

func (d *Dataplane) writeH2Local(c *h2Ctx) {
	c.w.WriteHeader(c.status)
	if len(c.body) > 0 {
		_, _ = c.w.Write(c.body)
	}
}

// onceBody lets a request body be retried while nothing was read from it.
type onceBody struct {
	rc   io.ReadCloser
	read atomic.Bool
}

func (b *onceBody) Read(p []byte) (int, error) { b.read.Store(true); return b.rc.Read(p) }
func (b *onceBody) Close() error               { return nil }

// forwardHTTP proxies a net/http request, streaming both bodies and
// copying trailers; retries on connect errors while no body was sent.
func (d *Dataplane) forwardHTTP(c *h2Ctx, up *upstream, ch *plugins.Chain) {
	r := c.r
	if viaH1(r, up) {
		d.forwardHTTPViaH1(c, up, ch)
		return
	}
	ctx := r.Context()
	if gt := headerValue(r.Header, "Grpc-Timeout"); gt != "" {
		if to, ok := parseGRPCTimeout(gt); ok {
			if sctx, ok := ctx.(*h2srvCtx); ok {
				sctx.setTimeout(to) // ends with the stream (h2srvctx.go)
			} else {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, to)
				defer cancel()
			}
		}
	}
	// The hash key reads the request as the client sent it, before
	// upstreamRequest may edit its header in place.
	att := &c.att // in c: no allocation of its own
	if up.keySpec != nil {
		att.ResetBytes(up.keySpec.Append(nil, c.exprVars()), up.hf)
	} else {
		att.Reset("", up.hf)
	}
	out := c.upstreamRequest(ctx, up.grpc, ch.Empty())
	var body *onceBody
	if r.Body != nil && r.Body != http.NoBody {
		body = &c.obody
		body.rc = r.Body
		out.Body = body
	}
	rt := up.h2.get(up)
	var start time.Time
	if up.retryTO > 0 {
		start = time.Now()
	}
	var resp *http.Response
	var err error
	for attempt := 0; attempt <= up.retries; attempt++ {
		ni, ok := up.picker.Pick(att)
		if !ok {
			break
		}
		n := up.nodes[ni]
		out.URL.Scheme = "http"
		if up.tls {
			out.URL.Scheme = "https"
		}
		out.URL.Host = n.addr
		if !c.hostSet {
			switch up.passHost {
			case passHostPass:
				out.Host = r.Host
			case passHostNode:
				out.Host = string(n.hostHdr)
			case passHostRewrite:
				out.Host = string(up.host)
			}
		} else {
			out.Host = c.r.Host
		}
		if attempt == 0 && ch.Has(plugins.PhaseBeforeProxy) && d.runPhase(ch, plugins.PhaseBeforeProxy, c) {
			up.picker.Done(ni, 0)
			d.writeH2Local(c)
			return
		}
		if attempt > 0 {
			d.stats.Retries.Add(1)
		}
		t0 := up.startTry()
		resp, err = rt.RoundTrip(out)
		st := 0
		if resp != nil {
			st = resp.StatusCode
		}
		up.done(ni, t0, st, err)
		if err == nil {
			break
		}
		d.stats.UpstreamErrors.Add(1)
		var ce *connectError
		if !errors.As(err, &ce) || (body != nil && body.read.Load()) || ctx.Err() != nil {
			break
		}
		if up.retryTO > 0 && time.Since(start) > up.retryTO {
			break
		}
	}
	if err != nil || resp == nil {
		if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("%w (%w)", err, context.DeadlineExceeded)
		}
		d.upstreamFailed(c, up, err)
		if isGRPCRequest(r) {
			writeGRPCError(c.w, c.status)
			return
		}
		d.writeH2Local(c)
		return
	}
	defer resp.Body.Close()
	c.resp = resp
	if s, ok := c.w.(*h2srvStream); !ok || !s.adoptHeader(resp.Header) { // adopted: no copy
		wh := c.w.Header()
		var pending http.Header
		if len(wh) > 0 {
			pending = wh.Clone() // set by plugins before the upstream answered
		}
		for k, vv := range resp.Header {
			wh[k] = vv
		}
		for k, vv := range pending {
			wh[k] = vv
		}
	}
	wh := c.w.Header()
	for _, k := range hopHeaders {
		delete(wh, k)
	}
	// A body_filter needs the whole body, read before the header filters
	// as on the HTTP/1.1 path; event streams and gRPC stream on.
	filter := ch.Has(plugins.PhaseBodyFilter) && bufferForFilter(r)
	if filter {
		var b bytes.Buffer
		if cl := resp.ContentLength; cl >= 0 && cl < 1<<20 { // a larger one grows as it arrives
			b.Grow(int(cl) + bytes.MinRead)
		}
		if _, err := b.ReadFrom(resp.Body); err != nil {
			d.stats.UpstreamErrors.Add(1)
			clear(wh)
			wh["Content-Type"] = []string{"text/html"}
			d.upstreamFailed(c, up, err)
			d.writeH2Local(c)
			return
		}
		c.body = b.Bytes()
	}
	if ch.Has(plugins.PhaseHeaderFilter) && d.runPhase(ch, plugins.PhaseHeaderFilter, c) {
		d.writeH2Local(c)
		return
	}
	for k := range resp.Trailer {
		wh.Add("Trailer", k)
	}
	if filter {
		d.writeFiltered(c, ch, func(n int) { wh["Content-Length"] = []string{strconv.Itoa(n)} })
	} else {
		streamH2Body(c, resp)
	}
	for k, vv := range resp.Trailer {
		wh[trailerKey(k)] = vv
	}
}

// streamH2Body writes the answer resp of c's upstream as it arrives: its
// status, then its body; an answer cut short resets the client's stream.
func streamH2Body(c *h2Ctx, resp *http.Response) {
	c.w.WriteHeader(resp.StatusCode)
	fl, _ := c.w.(http.Flusher)
	// Responses of h2client.go are flushed only when no more of them is
	// at hand, so a unary gRPC answer leaves in one go with its trailers.
	more, _ := resp.Body.(interface{ more() bool })
	buf := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(buf)
	for {
		n, rerr := resp.Body.Read(*buf)
		if n > 0 {
			if _, werr := c.w.Write((*buf)[:n]); werr != nil {
				return
			}
			if fl != nil && (more == nil || !more.more()) {
				fl.Flush()
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			// Cut short (the upstream reset the stream, the connection
			// failed): reset the client's too, so neither a truncated
			// body nor missing trailers pass for a complete answer.
			panic(http.ErrAbortHandler)
		}
	}
}

// upstreamFailed answers c for a failed upstream request (err nil: no
// node left to try) and logs it: 503, 504 on a timeout or an expired
// deadline, else 502. The caller writes the answer.
func (d *Dataplane) upstreamFailed(c *h2Ctx, up *upstream, err error) {
	switch {
	case err == nil:
		c.Respond(503, body503)
	case isTimeout(err) || errors.Is(err, context.DeadlineExceeded):
		c.Respond(504, body504)
	default:
		c.Respond(502, body502)
	}
	d.log.Warn("dataplane: upstream failed", "route", c.RouteID(), "upstream", up.id, "err", err)
}

// bufferForFilter reports whether the response to r is read whole for
// the body_filter phase, the rule of the HTTP/1.1 path: not for event
// streams (Accept: text/event-stream), which stream on and skip the
// phase. Nor for gRPC: its answers are length-prefixed messages, often
// server streams, which a body rewrite would corrupt or hold back; they
// stream too (header filters still run).
func bufferForFilter(r *http.Request) bool {
	return !isGRPCRequest(r) && !strings.Contains(headerValue(r.Header, "Accept"), "text/event-stream")
}

// writeFiltered runs the body_filter phase on the buffered response
// body in c.body and writes the response: the status of the filters
// (Respond, ResponseStatusSetter) and the body they left, whose length
// setLen sets as Content-Length (none for HEAD, whose body the filters
// did not see). The caller adds the trailers once it returned.
func (d *Dataplane) writeFiltered(c *h2Ctx, ch *plugins.Chain, setLen func(n int)) {
	d.runPhase(ch, plugins.PhaseBodyFilter, c)
	status := c.resp.StatusCode
	if c.responded {
		status = c.status
	}
	head := c.r.Method == http.MethodHead
	if head || !bodyAllowedForStatus(status) {
		delete(c.w.Header(), "Content-Length")
	} else {
		setLen(len(c.body))
	}
	c.w.WriteHeader(status)
	if len(c.body) > 0 && !head && bodyAllowedForStatus(status) {
		_, _ = c.w.Write(c.body)
	}
}

// upstreamRequest is the request of c to send upstream, with context
// ctx: a copy of c.r (kept in c) whose header has no hop-by-hop fields
// (but TE for gRPC) and has the X-Forwarded-* ones. As r.Clone, with
// fewer allocations: the request and URL are in c, the header and its
// values are sized for the fields added. With inPlace (no plugin on the
// route, so nothing reads the client's header after this) the header of
// c.r itself is edited and sent: no copy.
func (c *h2Ctx) upstreamRequest(ctx context.Context, isGRPC, inPlace bool) *http.Request {
	r := c.r
	if ctx == r.Context() {
		c.out = *r // the same context: no WithContext copy
	} else {
		c.out = *r.WithContext(ctx)
	}
	out := &c.out
	if r.URL != nil {
		c.outURL = *r.URL
		if r.URL.User != nil {
			u := *r.URL.User
			c.outURL.User = &u
		}
		out.URL = &c.outURL
	}
	out.RequestURI = ""
	out.Trailer = r.Trailer // filled in once the body is read: not a copy
	if r.TransferEncoding != nil {
		out.TransferEncoding = slices.Clone(r.TransferEncoding)
	}
	const nFwd = 5 // fields setForwarded may add
	if inPlace {
		h := r.Header
		deleteHop(h, isGRPC)
		out.Header = h
		setForwarded(h, c, r, make([]string, 0, nFwd))
		return out
	}
	nv := 0
	for _, vv := range r.Header {
		nv += len(vv)
	}
	h := make(http.Header, len(r.Header)+nFwd)
	vals := make([]string, nv, nv+nFwd)
	sv := vals
	for k, vv := range r.Header {
		if vv == nil {
			h[k] = nil
			continue
		}
		n := copy(sv, vv)
		h[k] = sv[:n:n]
		sv = sv[n:]
	}
	deleteHop(h, isGRPC)
	out.Header = h
	setForwarded(h, c, r, vals[nv:nv:nv+nFwd])
	return out
}

// deleteHop deletes the hop-by-hop fields of h, but TE for gRPC.
func deleteHop(h http.Header, isGRPC bool) {
	for _, k := range hopHeaders {
		if k == "Te" && isGRPC {
			continue
		}
		delete(h, k) // canonical already: no Del's canonicalization
	}
}

// setForwarded sets the X-Forwarded-* and X-Real-Ip fields of h, the
// header of the upstream request of c; the values share one array, vals
// (appended to: its capacity saves an allocation).
func setForwarded(h http.Header, c *h2Ctx, r *http.Request, vals []string) {
	set := func(k, v string) {
		vals = append(vals, v)
		h[k] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	if prior := h["X-Forwarded-For"]; len(prior) > 0 && prior[0] != "" {
		set("X-Forwarded-For", prior[0]+", "+c.remote)
	} else {
		set("X-Forwarded-For", c.remote)
	}
	if len(h["X-Forwarded-Proto"]) == 0 || h["X-Forwarded-Proto"][0] == "" {
		xfp := "http"
		if c.tls {
			xfp = "https"
		}
		set("X-Forwarded-Proto", xfp)
	}
	set("X-Real-Ip", c.remote)
	if len(h["X-Forwarded-Host"]) == 0 || h["X-Forwarded-Host"][0] == "" {
		set("X-Forwarded-Host", c.host)
	}
	if len(h["X-Forwarded-Port"]) == 0 || h["X-Forwarded-Port"][0] == "" {
		if s, ok := c.w.(*h2srvStream); ok && s.sc.localPort != "" {
			set("X-Forwarded-Port", s.sc.localPort)
		} else if a, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr); ok {
			set("X-Forwarded-Port", strconv.Itoa(a.Port))
		}
	}
}

// trailerKey is http.TrailerPrefix+k, without allocating for the
// trailers of gRPC.
func trailerKey(k string) string {
	switch k {
	case "Grpc-Status":
		return http.TrailerPrefix + "Grpc-Status"
	case "Grpc-Message":
		return http.TrailerPrefix + "Grpc-Message"
	case "Grpc-Status-Details-Bin":
		return http.TrailerPrefix + "Grpc-Status-Details-Bin"
	}
	return http.TrailerPrefix + k
}

// headerValue is h.Get(k) for a canonical k, without canonicalizing.
func headerValue(h http.Header, k string) string {
	if vv := h[k]; len(vv) > 0 {
		return vv[0]
	}
	return ""
}

func isGRPCRequest(r *http.Request) bool {
	ct := headerValue(r.Header, "Content-Type")
	return len(ct) >= 16 && ct[:16] == "application/grpc"
}

// writeGRPCError answers a gRPC call the proxy could not forward with a
// trailers-only gRPC response, so clients see the gRPC code (as Envoy
// does) instead of an HTTP status: 504 -> DEADLINE_EXCEEDED (4), 502 and
// 503 -> UNAVAILABLE (14).
func writeGRPCError(w http.ResponseWriter, status int) {
	code, msg := "14", "upstream unavailable"
	if status == 504 {
		code, msg = "4", "upstream timeout"
	}
	h := w.Header()
	h.Set("Content-Type", "application/grpc")
	h.Set("Grpc-Status", code)
	h.Set("Grpc-Message", msg)
	w.WriteHeader(http.StatusOK)
}

var copyBufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// parseGRPCTimeout parses a grpc-timeout header value ("100m", "5S").
func parseGRPCTimeout(s string) (time.Duration, bool) {
	if len(s) < 2 || len(s) > 9 {
		return 0, false
	}
	n, err := strconv.ParseInt(s[:len(s)-1], 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	var u time.Duration
	switch s[len(s)-1] {
	case 'H':
		u = time.Hour
	case 'M':
		u = time.Minute
	case 'S':
		u = time.Second
	case 'm':
		u = time.Millisecond
	case 'u':
		u = time.Microsecond
	case 'n':
		u = time.Nanosecond
	default:
		return 0, false
	}
	if n > int64(math.MaxInt64/u) {
		return time.Duration(math.MaxInt64), true
	}
	return time.Duration(n) * u, true
}

// h2Upstream holds the net/http transport of an upstream, built once.
type h2Upstream struct {
	once  sync.Once
	rt    http.RoundTripper
	idle  func()
	built atomic.Bool // rt and idle are set
}

func (h *h2Upstream) get(up *upstream) http.RoundTripper {
	h.once.Do(func() {
		defer h.built.Store(true)
		dialer := &net.Dialer{Timeout: up.to.connect, KeepAlive: 30 * time.Second}
		dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
			dc := dialer.DialContext
			if up.dial != nil { // original destinations (origdst.go)
				dc = up.dial
			}
			c, err := dc(ctx, network, addr)
			if err != nil {
				return nil, &connectError{err}
			}
			return c, nil
		}
		tlsConf := up.clientTLS() // mTLS (dataplane/tls.go)
		if up.grpc {
			t := &h2Transport{dial: dial, connTO: up.to.connect} // h2client.go
			if up.tls {
				t.tlsConf = tlsConf
			}
			h.rt, h.idle = t, t.CloseIdleConnections
			return
		}
		t := &http.Transport{
			DialContext:           dial,
			TLSClientConfig:       tlsConf,
			MaxIdleConnsPerHost:   defaultPoolSize,
			IdleConnTimeout:       defaultPoolIdle,
			ResponseHeaderTimeout: up.to.read,
			ForceAttemptHTTP2:     false,
		}
		h.rt, h.idle = t, t.CloseIdleConnections
	})
	return h.rt
}

// close closes idle connections of a built transport; it may be called
// before (or without) get, and get still works afterwards.
func (h *h2Upstream) close() {
	if h.built.Load() {
		h.idle()
	}
}
