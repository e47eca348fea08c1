package dataplane

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/meshagent/meshagent/dataplane/balancer"
	"github.com/meshagent/meshagent/plugins"
)

// maxBufferedH2Body bounds the request bodies forwardHTTPViaH1 buffers;
// larger ones, and bodies of unknown length, take the streaming
// http.Transport path.
const maxBufferedH2Body = 1 << 20

// viaH1 reports whether an HTTP/2 request for up can be forwarded through
// the node's fasthttp pool (HTTP/1.1 upstream, body of known small size,
// no request trailers). That path has no per-request goroutine hand-offs
// and reuses the pools of the HTTP/1.1 front end.
func viaH1(r *http.Request, up *upstream) bool {
	if up.grpc || len(r.Trailer) > 0 || isGRPCRequest(r) {
		return false
	}
	if r.Body == nil || r.Body == http.NoBody {
		return true
	}
	return r.ContentLength >= 0 && r.ContentLength <= maxBufferedH2Body
}

// skipH2toH1 lists request headers not copied verbatim to the HTTP/1.1
// upstream: hop-by-hop ones, and those set from other fields.
// skipH1toH2 reports whether an HTTP/1.1 response field is left out of
// the HTTP/2 response.
func skipH1toH2(k []byte) bool {
	switch string(k) {
	case "Content-Length", "Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Trailer", "Upgrade", "Te":
		return true
	}
	return false
}

// canonicalH1Key is http.CanonicalHeaderKey of a field name, without
// allocating for the common ones.
func canonicalH1Key(k []byte) string {
	if v, ok := h2CanonKeys[string(k)]; ok { // fasthttp normalizes, but may not
		return v
	}
	if v, ok := h2InternKeys[string(k)]; ok {
		return v
	}
	return http.CanonicalHeaderKey(string(k))
}

func skipH2toH1(k string) bool {
	switch k {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Upgrade", "Transfer-Encoding", "Content-Length", "Host",
		"X-Forwarded-For", "X-Real-Ip":
		return true
	}
	return false
}

// forwardHTTPViaH1 proxies an HTTP/2 request to an HTTP/1.1 upstream
// through the node's fasthttp.HostClient: the request body (known length,
// at most maxBufferedH2Body) is buffered, so a failed try is retried like
// on the HTTP/1.1 path; the response is buffered, or relayed as it arrives
// for event streams, exactly as forwardH1 does.
func (d *Dataplane) forwardHTTPViaH1(c *h2Ctx, up *upstream, ch *plugins.Chain) {
	r := c.r
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	h := &req.Header
	h.DisableNormalizing()
	h.SetMethod(r.Method)
	h.SetRequestURI(r.URL.RequestURI())
	for k, vv := range r.Header {
		if skipH2toH1(k) {
			continue
		}
		for _, v := range vv {
			h.Add(k, v)
		}
	}
	xff := c.remote
	if prior := r.Header.Values("X-Forwarded-For"); len(prior) > 0 {
		xff = strings.Join(prior, ", ") + ", " + c.remote
	}
	h.Set("X-Forwarded-For", xff)
	if len(h.Peek("X-Forwarded-Proto")) == 0 {
		if c.tls {
			h.Set("X-Forwarded-Proto", "https")
		} else {
			h.Set("X-Forwarded-Proto", "http")
		}
	}
	h.Set("X-Real-IP", c.remote)
	if len(h.Peek("X-Forwarded-Host")) == 0 {
		h.Set("X-Forwarded-Host", c.host)
	}
	if len(h.Peek("X-Forwarded-Port")) == 0 {
		if a, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr); ok {
			h.Set("X-Forwarded-Port", strconv.Itoa(a.Port))
		}
	}
	if r.Body != nil && r.Body != http.NoBody {
		buf := copyBufPool.Get().(*[]byte)
		n, err := io.CopyBuffer(req.BodyWriter(), io.LimitReader(r.Body, r.ContentLength+1), *buf)
		copyBufPool.Put(buf)
		if err != nil || n != r.ContentLength {
			// The client reset the stream or sent a body of another
			// length than it declared.
			c.Respond(400, nil)
			d.writeH2Local(c)
			return
		}
	}
	scheme := "http"
	if up.tls {
		scheme = "https"
	}
	req.URI().SetScheme(scheme)
	req.UseHostHeader = true
	// A body filter needs the answer whole (bufferForFilter: not event
	// streams); else bodies over streamMax, or of unknown length, stream
	// (hostpool.go).
	filter := ch.Has(plugins.PhaseBodyFilter) && bufferForFilter(r)
	idem := idempotent(req)
	var start time.Time
	if up.retryTO > 0 {
		start = time.Now()
	}
	var att balancer.Attempt
	if up.keySpec != nil {
		att.ResetBytes(up.keySpec.Append(nil, c.exprVars()), up.hf)
	} else {
		att.Reset("", up.hf)
	}
	var err error
	ok := false
	for attempt := 0; attempt <= up.retries; attempt++ {
		ni, picked := up.picker.Pick(&att)
		if !picked {
			break
		}
		n := up.nodes[ni]
		switch {
		case c.hostSet:
			h.SetHost(c.r.Host)
		case up.passHost == passHostNode:
			h.SetHostBytes(n.hostHdr)
		case up.passHost == passHostRewrite:
			h.SetHostBytes(up.host)
		default:
			h.SetHost(r.Host)
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
		resp.StreamBody = !filter
		err = n.hc.Do(req, resp)
		up.done(ni, t0, resp.StatusCode(), err)
		if err == nil {
			ok = true
			break
		}
		d.stats.UpstreamErrors.Add(1)
		var ce *connectError
		if isTimeout(err) || !errors.As(err, &ce) && !idem {
			break
		}
		if up.retryTO > 0 && time.Since(start) > up.retryTO {
			break
		}
	}
	if !ok {
		d.upstreamFailed(c, up, err)
		d.writeH2Local(c)
		return
	}
	defer resp.CloseBodyStream()
	c.resp = &http.Response{StatusCode: resp.StatusCode()}
	wh := c.w.Header()
	var pending http.Header
	if len(wh) > 0 {
		pending = wh.Clone() // set by plugins before the upstream answered
	}
	resp.Header.SetNoDefaultContentType(true)
	// The values are copied into one string and share one array (and a
	// slot for Content-Length); common names are interned.
	size, nf := 0, 1
	for k, v := range resp.Header.All() {
		if !skipH1toH2(k) {
			size, nf = size+len(v), nf+1
		}
	}
	vbuf := make([]byte, 0, size) // never grown: the strings stay valid
	vals := make([]string, 0, nf)
	for k, v := range resp.Header.All() {
		if skipH1toH2(k) {
			continue
		}
		off := len(vbuf)
		vbuf = append(vbuf, v...)
		val := b2s(vbuf[off:])
		key := canonicalH1Key(k)
		if vv, ok := wh[key]; ok {
			wh[key] = append(vv[:len(vv):len(vv)], val)
			continue
		}
		vals = append(vals, val)
		wh[key] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	setLen := func(n int) {
		vals = append(vals, strconv.Itoa(n))
		wh["Content-Length"] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	for k, vv := range pending {
		wh[k] = vv
	}
	if filter { // taken from resp, which is released before the log phase
		c.body = resp.SwapBody(nil)
	}
	if ch.Has(plugins.PhaseHeaderFilter) && d.runPhase(ch, plugins.PhaseHeaderFilter, c) {
		d.writeH2Local(c)
		return
	}
	if filter {
		d.writeFiltered(c, ch, setLen)
		return
	}
	status := c.resp.StatusCode // the header filters' (ResponseStatusSetter)
	body := resp.BodyStream()
	if body == nil { // read whole: small, or nothing to stream
		if r.Method == http.MethodHead {
			if cl := resp.Header.ContentLength(); cl >= 0 {
				setLen(cl)
			}
		} else if status >= 200 && status != 204 && status != 304 {
			setLen(len(resp.Body()))
		}
		c.w.WriteHeader(status)
		if b := resp.Body(); len(b) > 0 {
			_, _ = c.w.Write(b)
		}
		return
	}
	if cl := resp.Header.ContentLength(); cl >= 0 {
		setLen(cl)
	}
	c.w.WriteHeader(status)
	// Each read goes out before the next one may block: a body's last
	// bytes before a pause must not wait in the stream's buffer.
	fl, _ := c.w.(http.Flusher)
	if fl != nil {
		fl.Flush()
	}
	buf := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(buf)
	for {
		n, rerr := body.Read(*buf)
		if n > 0 {
			if _, werr := c.w.Write((*buf)[:n]); werr != nil {
				return
			}
			if fl != nil {
				fl.Flush()
			}
		}
		if rerr == io.EOF {
			return
		}
		if rerr != nil {
			// Cut short: reset the stream, so the client does not
			// take what came for the whole answer.
			panic(http.ErrAbortHandler)
		}
	}
}
