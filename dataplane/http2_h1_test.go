package dataplane

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// echoBackend is a real HTTP/1.1 server on loopback that reports what it
// received in response headers and body.
func echoBackend(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		h := w.Header()
		h.Set("X-Seen-Proto", r.Proto)
		h.Set("X-Seen-Method", r.Method)
		h.Set("X-Seen-URI", r.RequestURI)
		h.Set("X-Seen-Host", r.Host)
		h.Set("X-Seen-XFF", r.Header.Get("X-Forwarded-For"))
		h.Set("X-Seen-Custom", strings.Join(r.Header.Values("X-Custom"), "|"))
		h.Set("X-Seen-Conn", r.Header.Get("Connection")+r.Header.Get("Keep-Alive"))
		h.Set("X-Seen-Len", fmt.Sprint(r.ContentLength))
		h.Set("Keep-Alive", "timeout=5")
		h["Set-Cookie"] = []string{"a=1", "b=2"}
		switch r.URL.Path {
		case "/nocontent":
			w.WriteHeader(204)
			return
		case "/sse":
			h.Set("Content-Type", "text/event-stream")
			w.WriteHeader(200)
			for i := range 3 {
				fmt.Fprintf(w, "data: %d\n\n", i)
				w.(http.Flusher).Flush()
				time.Sleep(20 * time.Millisecond)
			}
			return
		case "/notype":
			h["Content-Type"] = nil // no Content-Type at all
		}
		w.WriteHeader(201)
		_, _ = w.Write(b)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

func h2cClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http2.Transport{AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, n, a string, _ *tls.Config) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, n, a)
		}}}
}

// TestH2ToHTTP1Upstream drives HTTP/2 requests to an HTTP/1.1 upstream
// (the fasthttp bridge for known-length bodies, http.Transport for bodies
// of unknown length) and checks what the upstream saw and what the client
// got.
func TestH2ToHTTP1Upstream(t *testing.T) {
	e := newEnv(t, nil)
	be := echoBackend(t)
	e.put("/apisix/routes/r", `{"uri":"/*","upstream":{"nodes":`+nodesJSON(be)+`}}`)
	e.put("/apisix/routes/node", `{"uri":"/passnode","priority":5,"upstream":{"pass_host":"node","nodes":`+nodesJSON(be)+`}}`)
	c := h2cClient()
	type check func(t *testing.T, r *http.Response, body string)
	hdr := func(k, want string) check {
		return func(t *testing.T, r *http.Response, _ string) {
			if got := r.Header.Get(k); got != want {
				t.Errorf("%s = %q, want %q", k, got, want)
			}
		}
	}
	status := func(want int) check {
		return func(t *testing.T, r *http.Response, _ string) {
			if r.StatusCode != want {
				t.Errorf("status %d, want %d", r.StatusCode, want)
			}
		}
	}
	bodyIs := func(want string) check {
		return func(t *testing.T, _ *http.Response, body string) {
			if body != want {
				t.Errorf("body %q, want %q", body, want)
			}
		}
	}
	cases := []struct {
		name   string
		method string
		path   string
		body   io.Reader
		clen   int64
		hdr    [][2]string
		checks []check
	}{
		{"GET headers and query", "GET", "/p/q?x=1&y=%20", nil, 0,
			[][2]string{{"X-Custom", "one"}, {"X-Custom", "two"}, {"X-Forwarded-For", "10.0.0.1"}, {"Host", "svc.example"}},
			[]check{status(201), hdr("X-Seen-Proto", "HTTP/1.1"), hdr("X-Seen-URI", "/p/q?x=1&y=%20"),
				hdr("X-Seen-Host", "svc.example"), hdr("X-Seen-XFF", "10.0.0.1, 127.0.0.1"), hdr("X-Seen-Custom", "one|two"),
				hdr("Keep-Alive", ""), hdr("Content-Length", "0"),
				func(t *testing.T, r *http.Response, _ string) {
					if got := r.Header.Values("Set-Cookie"); len(got) != 2 || got[0] != "a=1" || got[1] != "b=2" {
						t.Errorf("Set-Cookie %q", got)
					}
				}}},
		{"POST known length is buffered", "POST", "/post", strings.NewReader("hello body"), 10, nil,
			[]check{status(201), hdr("X-Seen-Method", "POST"), hdr("X-Seen-Len", "10"), bodyIs("hello body")}},
		{"POST unknown length streams", "POST", "/post", io.MultiReader(strings.NewReader("abc"), strings.NewReader("def")), -1, nil,
			[]check{status(201), bodyIs("abcdef")}},
		{"HEAD", "HEAD", "/head", nil, 0, nil, []check{status(201), bodyIs("")}},
		{"204 without body", "GET", "/nocontent", nil, 0, nil, []check{status(204), bodyIs("")}},
		{"no Content-Type stays absent", "GET", "/notype", nil, 0, nil, []check{status(201), hdr("Content-Type", "")}},
		{"pass_host node", "GET", "/passnode", nil, 0, [][2]string{{"Host", "svc.example"}}, []check{hdr("X-Seen-Host", be)}},
		{"event stream relayed", "GET", "/sse", nil, 0, [][2]string{{"Accept", "text/event-stream"}},
			[]check{status(200), bodyIs("data: 0\n\ndata: 1\n\ndata: 2\n\n")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, "http://"+e.http+tc.path, tc.body)
			if err != nil {
				t.Fatal(err)
			}
			if tc.body != nil {
				req.ContentLength = tc.clen
			}
			for _, kv := range tc.hdr {
				if kv[0] == "Host" {
					req.Host = kv[1]
					continue
				}
				req.Header.Add(kv[0], kv[1])
			}
			r, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(r.Body)
			r.Body.Close()
			if r.Proto != "HTTP/2.0" {
				t.Fatalf("client spoke %s", r.Proto)
			}
			for _, ck := range tc.checks {
				ck(t, r, string(b))
			}
		})
	}
	t.Run("upstream down answers 502", func(t *testing.T) {
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		dead := l.Addr().String()
		l.Close()
		e.put("/apisix/routes/dead", `{"uri":"/dead","priority":9,"upstream":{"nodes":`+nodesJSON(dead)+`}}`)
		r, err := c.Get("http://" + e.http + "/dead")
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != 502 {
			t.Fatalf("status %d, want 502", r.StatusCode)
		}
	})
}

// An HTTP/2 client gets a large HTTP/1.1 answer as it comes, not once the
// proxy has it whole (with its Content-Length when the upstream declared
// one), and an answer the upstream cuts short ends in a stream error, not
// a shorter body taken for the whole.
func TestH2ToHTTP1UpstreamStreams(t *testing.T) {
	const part = 1 << 20
	sawFirst := make(chan struct{}, 4)
	be := listen(t)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := []byte(strings.Repeat("s", part))
		switch r.URL.Path {
		case "/known":
			w.Header().Set("Content-Length", fmt.Sprint(4*part))
		case "/cut":
			w.Header().Set("Content-Length", fmt.Sprint(4*part))
			_, _ = w.Write(chunk)
			w.(http.Flusher).Flush()
			c, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				c.Close()
			}
			return
		}
		// The first part ends with a small write after a pause: it must
		// not wait in the proxy for more.
		_, _ = w.Write(chunk[:part-100])
		w.(http.Flusher).Flush()
		time.Sleep(10 * time.Millisecond)
		_, _ = w.Write(chunk[part-100:])
		w.(http.Flusher).Flush()
		select { // the rest only once the client saw the first part
		case <-sawFirst:
		case <-time.After(5 * time.Second):
			return
		}
		for range 3 {
			_, _ = w.Write(chunk)
		}
	})}
	go srv.Serve(be)
	t.Cleanup(func() { srv.Close() })
	e := newEnv(t, nil)
	e.put("/apisix/routes/r", `{"uri":"/*","upstream":{"nodes":`+nodesJSON(be.Addr().String())+`}}`)
	c := h2cClient()
	for _, path := range []string{"/known", "/chunked"} {
		t.Run(path, func(t *testing.T) {
			r, err := c.Get("http://" + e.http + path)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Body.Close()
			if path == "/known" && r.ContentLength != 4*part {
				t.Errorf("Content-Length %d, want %d", r.ContentLength, 4*part)
			}
			if _, err := io.ReadFull(r.Body, make([]byte, part)); err != nil {
				t.Fatalf("first part: %v", err)
			}
			sawFirst <- struct{}{}
			n, err := io.Copy(io.Discard, r.Body)
			if err != nil || n != 3*part {
				t.Fatalf("rest: %d bytes, %v; want %d", n, err, 3*part)
			}
		})
	}
	t.Run("cut short", func(t *testing.T) {
		r, err := c.Get("http://" + e.http + "/cut")
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		n, err := io.Copy(io.Discard, r.Body)
		if err == nil {
			t.Fatalf("body of %d bytes ended cleanly, want a stream error", n)
		}
	})
}
