package dataplane

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2cBackend serves handler over h2c prior knowledge.
func h2cBackend(t *testing.T, handler http.HandlerFunc) string {
	l := listen(t)
	srv := &http.Server{Handler: handler}
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
	return l.Addr().String()
}

// An answer that arrives whole with its trailers (as a unary gRPC one)
// is written at the end of the handler, its frames held for one write;
// within a client window of 100 bytes the client must still get the first
// DATA frame before it can credit the next.
func TestH2ServerHeldAnswerSmallWindow(t *testing.T) {
	body := strings.Repeat("w", 3000)
	be := h2cBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Done")
		_, _ = io.WriteString(w, body)
		w.Header().Set("X-Done", "yes")
	})
	e := newEnv(t, nil)
	e.put("/apisix/routes/r", `{"uri":"/*","upstream":{"scheme":"grpc","nodes":`+nodesJSON(be)+`}}`)
	for i := range 20 { // the answer must reach the proxy whole: not every time
		h := dialRawH2(t, e.http)
		if err := h.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 100}); err != nil {
			t.Fatal(err)
		}
		h.headers(1, true, ":method", "GET", ":scheme", "http", ":authority", "a.test", ":path", "/held")
		var got []byte
		for {
			f := h.next(func(f http2.Frame) bool {
				switch f := f.(type) {
				case *http2.DataFrame:
					return f.StreamID == 1
				case *http2.MetaHeadersFrame:
					return f.StreamID == 1 && f.StreamEnded()
				}
				return false
			})
			if f == nil {
				t.Fatalf("run %d: answer stalled after %d bytes", i, len(got))
			}
			if m, ok := f.(*http2.MetaHeadersFrame); ok {
				if m.PseudoValue("status") == "" && len(got) != len(body) {
					t.Fatalf("run %d: trailers after %d bytes, want %d", i, len(got), len(body))
				}
				break
			}
			d := f.(*http2.DataFrame)
			got = append(got, d.Data()...)
			if n := uint32(len(d.Data())); n > 0 {
				_ = h.fr.WriteWindowUpdate(0, n)
				_ = h.fr.WriteWindowUpdate(1, n)
			}
		}
		if string(got) != body {
			t.Fatalf("run %d: got %d bytes, want %d", i, len(got), len(body))
		}
	}
}

// A request body larger than every receive window, with trailers, to an
// HTTP/2 upstream; the response has trailers too.
func TestH2ServerLargeUploadAndTrailers(t *testing.T) {
	be := h2cBackend(t, func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		w.Header().Set("Trailer", "X-Count")
		w.Header().Set("X-Got-Trailer", "pending")
		w.WriteHeader(200)
		_, _ = fmt.Fprintf(w, "%d %v", n, err)
		w.(http.Flusher).Flush()
		w.Header().Set("X-Count", fmt.Sprint(n)+"/"+r.Trailer.Get("X-Req-Sum"))
	})
	e := newEnv(t, nil)
	e.put("/apisix/routes/r", `{"uri":"/up","upstream":{"scheme":"grpc","nodes":`+nodesJSON(be)+`}}`)
	body := bytes.Repeat([]byte("0123456789abcdef"), 3<<20/16)
	req, _ := http.NewRequest("POST", "http://"+e.http+"/up", io.MultiReader(bytes.NewReader(body))) // length unknown
	req.Trailer = http.Header{"X-Req-Sum": nil}
	pr, pw := io.Pipe()
	req.Body = pr
	go func() {
		_, _ = pw.Write(body)
		req.Trailer.Set("X-Req-Sum", "s42")
		pw.Close()
	}()
	r, err := h2cClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if r.StatusCode != 200 || string(got) != fmt.Sprintf("%d <nil>", len(body)) {
		t.Fatalf("status %d body %q", r.StatusCode, got)
	}
	if v := r.Trailer.Get("X-Count"); v != fmt.Sprintf("%d/s42", len(body)) {
		t.Fatalf("trailer X-Count %q (%v)", v, r.Trailer)
	}
}

// HEAD, 204 and a body of known length through the h2 front end.
func TestH2ServerHeadAndNoContent(t *testing.T) {
	e := newEnv(t, nil)
	e.put("/apisix/routes/r", `{"uri":"/*","upstream":{"nodes":`+nodesJSON(echoBackend(t))+`}}`)
	c := h2cClient()
	r, err := c.Head("http://" + e.http + "/x")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	if b, _ := io.ReadAll(r.Body); r.StatusCode != 201 || len(b) != 0 {
		t.Fatalf("HEAD: status %d body %q", r.StatusCode, b)
	}
	r, err = c.Get("http://" + e.http + "/nocontent")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != 204 {
		t.Fatalf("status %d", r.StatusCode)
	}
	r, err = c.Post("http://"+e.http+"/x", "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if r.StatusCode != 201 || string(b) != "hello" || r.ContentLength != 5 || r.Header.Get("Date") == "" {
		t.Fatalf("status %d body %q length %d header %v", r.StatusCode, b, r.ContentLength, r.Header)
	}
}

// rawH2 is a hand-driven client connection.
type rawH2 struct {
	t    *testing.T
	c    net.Conn
	fr   *http2.Framer
	enc  *hpack.Encoder
	hbuf bytes.Buffer
}

func dialRawH2(t *testing.T, addr string) *rawH2 {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	h := &rawH2{t: t, c: c, fr: http2.NewFramer(c, c)}
	h.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	h.enc = hpack.NewEncoder(&h.hbuf)
	if _, err := c.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	if err := h.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *rawH2) headers(id uint32, end bool, kv ...string) {
	h.hbuf.Reset()
	for i := 0; i+1 < len(kv); i += 2 {
		_ = h.enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: h.hbuf.Bytes(), EndStream: end, EndHeaders: true}); err != nil {
		h.t.Fatal(err)
	}
}

// headersSplit is headers, with the block in HEADERS and CONTINUATION
// frames of at most n bytes.
func (h *rawH2) headersSplit(id uint32, n int, kv ...string) {
	h.hbuf.Reset()
	for i := 0; i+1 < len(kv); i += 2 {
		_ = h.enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	blk := h.hbuf.Bytes()
	first := true
	for first || len(blk) > 0 {
		chunk := blk[:min(n, len(blk))]
		blk = blk[len(chunk):]
		var err error
		if first {
			err = h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: chunk, EndStream: true, EndHeaders: len(blk) == 0})
			first = false
		} else {
			err = h.fr.WriteContinuation(id, len(blk) == 0, chunk)
		}
		if err != nil {
			h.t.Fatal(err)
		}
	}
}

// next reads frames until one satisfies match; nil when the connection
// ends first.
func (h *rawH2) next(match func(http2.Frame) bool) http2.Frame {
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			return nil
		}
		if match(f) {
			return f
		}
	}
}

func (h *rawH2) status(id uint32) string {
	f := h.next(func(f http2.Frame) bool {
		m, ok := f.(*http2.MetaHeadersFrame)
		return ok && m.StreamID == id
	})
	if f == nil {
		h.t.Fatalf("stream %d: no response", id)
	}
	return f.(*http2.MetaHeadersFrame).PseudoValue("status")
}

func TestH2ServerProtocol(t *testing.T) {
	e := newEnv(t, nil)
	e.put("/apisix/routes/r", `{"uri":"/*","upstream":{"nodes":`+nodesJSON(backend(t, "a"))+`}}`)
	req := func(path string) []string {
		return []string{":method", "GET", ":scheme", "http", ":authority", "a.test", ":path", path}
	}

	t.Run("settings ack, ping ack, a request", func(t *testing.T) {
		h := dialRawH2(t, e.http)
		if f := h.next(func(f http2.Frame) bool { s, ok := f.(*http2.SettingsFrame); return ok && s.IsAck() }); f == nil {
			t.Fatal("no SETTINGS ack")
		}
		_ = h.fr.WritePing(false, [8]byte{1, 2, 3})
		if f := h.next(func(f http2.Frame) bool { p, ok := f.(*http2.PingFrame); return ok && p.IsAck() }); f == nil || f.(*http2.PingFrame).Data != [8]byte{1, 2, 3} {
			t.Fatalf("ping ack %v", f)
		}
		h.headers(1, true, req("/p")...)
		if st := h.status(1); st != "200" {
			t.Fatalf("status %s", st)
		}
	})
	t.Run("100 Continue once the body is read", func(t *testing.T) {
		h := dialRawH2(t, e.http)
		h.headers(1, false, append(req("/p"), "expect", "100-continue")...)
		if st := h.status(1); st != "100" {
			t.Fatalf("status %s, want 100 first", st)
		}
		_ = h.fr.WriteData(1, true, []byte("body"))
		if st := h.status(1); st != "200" {
			t.Fatalf("status %s", st)
		}
	})
	t.Run("connection-specific header is a bad request", func(t *testing.T) {
		h := dialRawH2(t, e.http)
		h.headers(1, true, append(req("/p"), "connection", "keep-alive")...)
		if st := h.status(1); st != "400" {
			t.Fatalf("status %s", st)
		}
		h.headers(3, true, req("/p")...) // the connection goes on
		if st := h.status(3); st != "200" {
			t.Fatalf("status %s", st)
		}
	})
	t.Run("header block in CONTINUATION frames", func(t *testing.T) {
		h := dialRawH2(t, e.http)
		for id := uint32(1); id <= 5; id += 2 { // the dynamic table carries over
			h.headersSplit(id, 7, append(req("/p"), "x-a", strings.Repeat("a", 100), "x-b", "b")...)
			if st := h.status(id); st != "200" {
				t.Fatalf("stream %d: status %s", id, st)
			}
		}
	})
	t.Run("header list over the limit is 431", func(t *testing.T) {
		// The fields before the last leave 1002 bytes of the list (field
		// size: name, value and 32); the last one, in a CONTINUATION
		// frame of its own, overflows: a 431, not a connection error.
		h := dialRawH2(t, e.http)
		h.hbuf.Reset()
		kv := req("/p") // 172 bytes
		big := strings.Repeat("v", (h2SrvMaxHeader-1277)/3)
		kv = append(kv, "x-1", big, "x-2", big, "x-3", big)
		for i := 0; i < len(kv); i += 2 {
			_ = h.enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
		}
		blk := bytes.Clone(h.hbuf.Bytes())
		h.hbuf.Reset()
		_ = h.enc.WriteField(hpack.HeaderField{Name: "x-4", Value: strings.Repeat("v", 1500)})
		_ = h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk[:16384], EndStream: true})
		for blk = blk[16384:]; len(blk) > 0; {
			n := min(16384, len(blk))
			_ = h.fr.WriteContinuation(1, false, blk[:n])
			blk = blk[n:]
		}
		_ = h.fr.WriteContinuation(1, true, h.hbuf.Bytes())
		if st := h.status(1); st != "431" {
			t.Fatalf("status %s", st)
		}
		h.headers(3, true, req("/p")...) // the decoder state is intact
		if st := h.status(3); st != "200" {
			t.Fatalf("status %s", st)
		}
	})
	for name, kv := range map[string][]string{
		"upper-case field name":        {"X-Upper", "v"},
		"field value with a newline":   {"x-nl", "a\nb"},
		"pseudo header after a field":  {"x-a", "v", ":foo", "v"},
		"duplicate pseudo header":      {":path", "/q"},
		"response pseudo in a request": {":status", "200"},
	} {
		t.Run(name+" resets the stream", func(t *testing.T) {
			h := dialRawH2(t, e.http)
			h.headers(1, true, append(req("/p"), kv...)...)
			f := h.next(func(f http2.Frame) bool { _, ok := f.(*http2.RSTStreamFrame); return ok })
			if f == nil || f.(*http2.RSTStreamFrame).ErrCode != http2.ErrCodeProtocol {
				t.Fatalf("got %v", f)
			}
			h.headers(3, true, req("/p")...) // the connection goes on
			if st := h.status(3); st != "200" {
				t.Fatalf("status %s", st)
			}
		})
	}
	t.Run("missing pseudo header resets the stream", func(t *testing.T) {
		h := dialRawH2(t, e.http)
		h.headers(1, true, ":method", "GET", ":path", "/p")
		f := h.next(func(f http2.Frame) bool { _, ok := f.(*http2.RSTStreamFrame); return ok })
		if f == nil || f.(*http2.RSTStreamFrame).ErrCode != http2.ErrCodeProtocol {
			t.Fatalf("got %v", f)
		}
	})
	t.Run("even stream id is a connection error", func(t *testing.T) {
		h := dialRawH2(t, e.http)
		h.headers(2, true, req("/p")...)
		f := h.next(func(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok })
		if f == nil || f.(*http2.GoAwayFrame).ErrCode != http2.ErrCodeProtocol {
			t.Fatalf("got %v", f)
		}
		if h.next(func(http2.Frame) bool { return false }) != nil {
			t.Fatal("connection still open")
		}
	})
	t.Run("window overflow is a connection error", func(t *testing.T) {
		h := dialRawH2(t, e.http)
		_ = h.fr.WriteWindowUpdate(0, 1<<31-1)
		f := h.next(func(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok })
		if f == nil || f.(*http2.GoAwayFrame).ErrCode != http2.ErrCodeFlowControl {
			t.Fatalf("got %v", f)
		}
	})
	t.Run("data beyond the stream window resets the stream", func(t *testing.T) {
		// The handler waits for an upstream that never answers, and
		// reads no body: nothing of the window comes back.
		silent := listen(t)
		t.Cleanup(func() { silent.Close() })
		e.put("/apisix/routes/silent", `{"uri":"/silent","upstream":{"scheme":"grpc","timeout":{"connect":1,"send":1,"read":1},"nodes":`+nodesJSON(silent.Addr().String())+`}}`)
		h := dialRawH2(t, e.http)
		h.headers(1, false, req("/silent")...)
		// The server's SETTINGS allow 1 MiB per stream; the connection
		// window is the same, so stay within it with frames of the
		// maximum size and overflow the stream window on the last one.
		chunk := make([]byte, 16384)
		for range (h2SrvStreamWindow / len(chunk)) + 1 {
			if err := h.fr.WriteData(1, false, chunk); err != nil {
				break
			}
		}
		f := h.next(func(f http2.Frame) bool {
			switch f := f.(type) {
			case *http2.RSTStreamFrame:
				return f.StreamID == 1
			case *http2.GoAwayFrame:
				return true
			}
			return false
		})
		if f == nil {
			t.Fatal("no reset")
		}
		if r, ok := f.(*http2.RSTStreamFrame); ok && r.ErrCode != http2.ErrCodeFlowControl {
			t.Fatalf("reset %v", r.ErrCode)
		}
		if g, ok := f.(*http2.GoAwayFrame); ok && g.ErrCode != http2.ErrCodeFlowControl {
			t.Fatalf("goaway %v", g.ErrCode)
		}
	})
	t.Run("streams opened and reset at once do not pile up", func(t *testing.T) {
		h := dialRawH2(t, e.http)
		for i := range 3000 {
			id := uint32(2*i + 1)
			h.headers(id, true, req("/p?sleep=50ms")...)
			_ = h.fr.WriteRSTStream(id, http2.ErrCodeCancel)
		}
		// Streams beyond the limit of running handlers are refused
		// until those of the reset streams ended.
		deadline := time.Now().Add(8 * time.Second)
		for id := uint32(6001); ; id += 2 {
			h.headers(id, true, req("/p")...)
			f := h.next(func(f http2.Frame) bool {
				switch f := f.(type) {
				case *http2.MetaHeadersFrame:
					return f.StreamID == id
				case *http2.RSTStreamFrame:
					return f.StreamID == id
				}
				return false
			})
			if m, ok := f.(*http2.MetaHeadersFrame); ok && m.PseudoValue("status") == "200" {
				break
			}
			if r, ok := f.(*http2.RSTStreamFrame); !ok || r.ErrCode != http2.ErrCodeRefusedStream {
				t.Fatalf("stream %d: %v", id, f)
			}
			if time.Now().After(deadline) {
				t.Fatal("streams still refused")
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}
