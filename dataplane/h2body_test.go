package dataplane

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	testpb "google.golang.org/grpc/interop/grpc_testing"
)

// bodyHandler answers "hello world, hello world" with a Content-Length,
// an upstream header and, from an HTTP/2 upstream, a trailer.
func bodyHandler(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/plain")
	h.Set("X-Upstream", "yes")
	if r.ProtoMajor == 2 {
		h.Set("Trailer", "X-Done")
	}
	const b = "hello world, hello world"
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(200)
	if r.Method != http.MethodHead {
		_, _ = io.WriteString(w, b)
	}
	if r.ProtoMajor == 2 {
		h.Set("X-Done", "yes")
	}
}

// bodyUpstreams are an HTTP/1.1 upstream (forwardHTTPViaH1) and an h2c
// one (forwardHTTP), as upstream JSON.
func bodyUpstreams(t *testing.T, handler http.HandlerFunc) map[string]string {
	h1 := httptest.NewServer(handler)
	t.Cleanup(h1.Close)
	h2 := h2cBackend(t, handler)
	return map[string]string{
		"http1": `{"nodes":` + nodesJSON(h1.Listener.Addr().String()) + `}`,
		"h2c":   `{"scheme":"grpc","nodes":` + nodesJSON(h2) + `}`,
	}
}

// response-rewrite's body_filter runs over HTTP/2 as over HTTP/1.1: the
// body (fixed or regex-filtered) replaces the upstream's, with its own
// Content-Length; status and headers change; the upstream's other
// headers and (HTTP/2) trailers stay.
func TestH2ResponseRewriteBody(t *testing.T) {
	e := newEnv(t, nil)
	ups := bodyUpstreams(t, bodyHandler)
	cases := []struct {
		name, plugin string
		method       string
		status       int
		body         string
		hdr          [2]string
	}{
		{"body", `{"body":"replaced\n","status_code":203,"headers":{"set":{"X-Rw":"1"}}}`, "GET", 203, "replaced\n", [2]string{"X-Rw", "1"}},
		{"filters once", `{"filters":[{"regex":"hel(lo)","replace":"HEL$1"}]}`, "GET", 200, "HELlo world, hello world", [2]string{"X-Upstream", "yes"}},
		{"filters global", `{"filters":[{"regex":"WORLD","options":"i","scope":"global","replace":"there"}]}`, "GET", 200, "hello there, hello there", [2]string{"X-Upstream", "yes"}},
		{"vars not matching leaves the body", `{"vars":[["arg_x","==","1"]],"body":"no"}`, "GET", 200, "hello world, hello world", [2]string{"X-Upstream", "yes"}},
		{"vars matching", `{"vars":[["http_x_rw","==","on"]],"body":"yes"}`, "GET", 200, "yes", [2]string{"X-Upstream", "yes"}},
		{"HEAD", `{"body":"replaced"}`, "HEAD", 200, "", [2]string{"X-Upstream", "yes"}},
	}
	c := h2cClient()
	i := 0
	for upName, up := range ups {
		for _, tc := range cases {
			t.Run(upName+"/"+tc.name, func(t *testing.T) {
				i++
				path := fmt.Sprintf("/rw%d", i)
				e.put("/apisix/routes/rw"+strconv.Itoa(i), `{"uri":"`+path+`","plugins":{"response-rewrite":`+tc.plugin+`},"upstream":`+up+`}`)
				req, _ := http.NewRequest(tc.method, "http://"+e.http+path, nil)
				req.Header.Set("X-Rw", "on")
				r, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, err := io.ReadAll(r.Body)
				r.Body.Close()
				if err != nil {
					t.Fatalf("body: %v", err)
				}
				if r.ProtoMajor != 2 || r.StatusCode != tc.status || string(b) != tc.body {
					t.Fatalf("%s %d %q, want HTTP/2 %d %q", r.Proto, r.StatusCode, b, tc.status, tc.body)
				}
				if tc.method != "HEAD" && r.ContentLength != int64(len(tc.body)) {
					t.Fatalf("Content-Length %d, want %d", r.ContentLength, len(tc.body))
				}
				if got := r.Header.Get(tc.hdr[0]); got != tc.hdr[1] {
					t.Fatalf("header %s %q, want %q (%v)", tc.hdr[0], got, tc.hdr[1], r.Header)
				}
				if r.Header.Get("Content-Type") != "text/plain" {
					t.Fatalf("Content-Type %q", r.Header.Get("Content-Type"))
				}
				if upName == "h2c" && tc.method != "HEAD" && r.Trailer.Get("X-Done") != "yes" {
					t.Fatalf("trailers %v", r.Trailer)
				}
			})
		}
	}
}

// A route without a body_filter streams the response over HTTP/2: the
// first chunk arrives before the upstream sends the second. With one, an
// event stream streams too and skips the phase, as on HTTP/1.1.
func TestH2BodyFilterStreaming(t *testing.T) {
	release := make(chan struct{}, 4)
	be := h2cBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		_, _ = io.WriteString(w, "first")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-time.After(5 * time.Second):
		}
		_, _ = io.WriteString(w, "-second")
	})
	e := newEnv(t, nil)
	up := `{"scheme":"grpc","nodes":` + nodesJSON(be) + `}`
	e.put("/apisix/routes/plain", `{"uri":"/plain","plugins":{"response-rewrite":{"headers":{"set":{"X-Rw":"1"}}}},"upstream":`+up+`}`)
	e.put("/apisix/routes/bf", `{"uri":"/bf","plugins":{"response-rewrite":{"filters":[{"regex":"first","replace":"FIRST"}]}},"upstream":`+up+`}`)
	c := h2cClient()
	for _, tc := range []struct{ name, path, accept, want string }{
		{"no body filter", "/plain", "", "first-second"},
		{"body filter, event stream", "/bf", "text/event-stream", "first-second"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", "http://"+e.http+tc.path, nil)
			if tc.accept != "" {
				req.Header.Set("Accept", tc.accept)
			}
			r, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Body.Close()
			first := make([]byte, 5)
			if _, err := io.ReadFull(r.Body, first); err != nil || string(first) != "first" {
				t.Fatalf("first chunk %q, %v", first, err)
			}
			release <- struct{}{}
			rest, err := io.ReadAll(r.Body)
			if err != nil || string(first)+string(rest) != tc.want {
				t.Fatalf("body %q, %v; want %q", string(first)+string(rest), err, tc.want)
			}
		})
	}
	t.Run("body filter buffers", func(t *testing.T) {
		release <- struct{}{} // the upstream answers whole
		r, err := c.Get("http://" + e.http + "/bf")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		if string(b) != "FIRST-second" || r.ContentLength != int64(len(b)) {
			t.Fatalf("body %q, Content-Length %d", b, r.ContentLength)
		}
	})
}

// An upstream that resets its response mid-body, on a route with a
// body_filter: nothing was sent yet, so the client gets a 502.
func TestH2BodyFilterUpstreamReset(t *testing.T) {
	be := h2cBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(200)
		_, _ = io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	})
	e := newEnv(t, nil)
	e.put("/apisix/routes/bf", `{"uri":"/bf","plugins":{"response-rewrite":{"filters":[{"regex":"p","replace":"P"}]}},"upstream":{"scheme":"grpc","nodes":`+nodesJSON(be)+`}}`)
	r, err := h2cClient().Get("http://" + e.http + "/bf")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(r.Body)
	r.Body.Close()
	if err != nil || r.StatusCode != 502 || string(b) != string(body502) || r.Header.Get("Content-Type") != "text/html" {
		t.Fatalf("%d %q %v %v", r.StatusCode, b, err, r.Header)
	}
}

// gRPC through a route with a body_filter: the answers are framed (and
// may be server streams), so the phase does not run on them; they
// stream, with their trailers, and the header filter still runs.
func TestGRPCWithBodyFilterPlugin(t *testing.T) {
	e := newEnv(t, nil)
	addr, _ := startGRPC(t)
	e.put("/apisix/routes/g", `{"uri":"/grpc.testing.TestService/*","plugins":{"response-rewrite":{"body":"garbage","headers":{"set":{"X-Rw":"1"}}}},"upstream":{"scheme":"grpc","nodes":`+nodesJSON(addr)+`}}`)
	cc, err := grpc.NewClient(e.http, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	cl := testpb.NewTestServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	var hdr, tr metadata.MD
	r, err := cl.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("hi")}}, grpc.Header(&hdr), grpc.Trailer(&tr))
	if err != nil {
		t.Fatal(err)
	}
	if string(r.GetPayload().GetBody()) != "hi" {
		t.Fatalf("payload %q", r.GetPayload().GetBody())
	}
	if got := tr.Get("x-trailer"); len(got) != 1 || got[0] != "t-value" {
		t.Fatalf("trailer %v", tr)
	}
	if got := hdr.Get("x-rw"); len(got) != 1 || got[0] != "1" {
		t.Fatalf("header filter did not run: %v", hdr)
	}

	st, err := cl.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: 1}, {Size: 2}, {Size: 3}}})
	if err != nil {
		t.Fatal(err)
	}
	sizes := recvSizes(t, st)
	if fmt.Sprint(sizes) != "[1 2 3]" {
		t.Fatalf("sizes %v", sizes)
	}
	if got := st.Trailer().Get("x-stream-trailer"); len(got) != 1 || got[0] != "done" {
		t.Fatalf("stream trailer %v", st.Trailer())
	}
}

// A large body of unknown length (many reads, several DATA frames) is
// read whole for the body_filter and sent with its new length.
func TestH2BodyFilterLargeBody(t *testing.T) {
	const size = 300 << 10
	ups := bodyUpstreams(t, func(w http.ResponseWriter, r *http.Request) {
		chunk := strings.Repeat("x", 1000)
		for n := 0; n < size-3; n += len(chunk) {
			_, _ = io.WriteString(w, chunk[:min(len(chunk), size-3-n)])
			w.(http.Flusher).Flush()
		}
		_, _ = io.WriteString(w, "END")
	})
	e := newEnv(t, nil)
	c := h2cClient()
	for name, up := range ups {
		t.Run(name, func(t *testing.T) {
			e.put("/apisix/routes/"+name, `{"uri":"/`+name+`","plugins":{"response-rewrite":{"filters":[{"regex":"END$","replace":"FINISHED"}]}},"upstream":`+up+`}`)
			r, err := c.Get("http://" + e.http + "/" + name)
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(r.Body)
			r.Body.Close()
			if err != nil || r.StatusCode != 200 || len(b) != size+5 || !strings.HasSuffix(string(b), "xFINISHED") || r.ContentLength != int64(len(b)) {
				t.Fatalf("%d, %d bytes (Content-Length %d) ending %q, %v", r.StatusCode, len(b), r.ContentLength, b[max(0, len(b)-10):], err)
			}
		})
	}
}
