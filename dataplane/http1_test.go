package dataplane

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestHTTP1Proxy(t *testing.T) {
	e := newEnv(t, nil)
	b1 := backend(t, "b1")
	e.put("/apisix/upstreams/u1", `{"nodes":`+nodesJSON(b1)+`,"type":"roundrobin"}`)
	e.put("/apisix/routes/r1", `{"uri":"/hello*","upstream_id":"u1"}`)
	e.put("/apisix/routes/r2", `{"uri":"/host","hosts":["a.example.com"],"upstream_id":"u1","methods":["POST"]}`)

	cases := []struct {
		name     string
		method   string
		path     string
		hdr      []string
		status   int
		backend  string
		bodyWant string
	}{
		{"prefix match", "GET", "/hello/world?x=1", nil, 200, "b1", "b1:"},
		{"no route", "GET", "/nope", nil, 404, "", `{"error_msg":"404 Route Not Found"}`},
		{"host+method match", "POST", "/host", []string{"Host", "a.example.com"}, 200, "b1", "b1:payload"},
		{"method mismatch", "GET", "/host", []string{"Host", "a.example.com"}, 404, "", "404 Route Not Found"},
		{"host mismatch", "POST", "/host", []string{"Host", "b.example.com"}, 404, "", "404 Route Not Found"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := ""
			if c.method == "POST" {
				body = "payload"
			}
			r := e.do(c.method, c.path, body, c.hdr...)
			if r.status != c.status {
				t.Fatalf("status %d, want %d (body %q)", r.status, c.status, r.body)
			}
			if got := r.h.Get("X-Backend"); got != c.backend {
				t.Fatalf("backend %q, want %q", got, c.backend)
			}
			if c.method == "GET" && c.status == 200 && r.body != c.bodyWant {
				t.Fatalf("body %q, want %q", r.body, c.bodyWant)
			}
			if !strings.Contains(r.body, c.bodyWant) {
				t.Fatalf("body %q, want it to contain %q", r.body, c.bodyWant)
			}
		})
	}
	r := e.get("/hello", "X-Forwarded-For", "10.0.0.1")
	if got := r.h.Get("X-Seen-XFF"); got != "10.0.0.1, 127.0.0.1" {
		t.Fatalf("X-Forwarded-For upstream = %q", got)
	}
	if got := r.h.Get("X-Seen-XFP"); got != "http" {
		t.Fatalf("X-Forwarded-Proto upstream = %q", got)
	}
	if _, port, _ := net.SplitHostPort(e.http); r.h.Get("X-Seen-XFPort") != port {
		t.Fatalf("X-Forwarded-Port upstream = %q, want %s", r.h.Get("X-Seen-XFPort"), port)
	}
	if got := r.h.Get("X-Seen-Path"); got != "/hello" {
		t.Fatalf("path upstream = %q", got)
	}
}

// Server-sent events are relayed event by event, not at the end.
func TestServerSentEventsStream(t *testing.T) {
	e := newEnv(t, nil)
	sse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fl := w.(http.Flusher)
		for i := range 3 {
			fmt.Fprintf(w, "data: %d\n\n", i)
			fl.Flush()
			time.Sleep(300 * time.Millisecond)
		}
	}))
	t.Cleanup(sse.Close)
	e.put("/apisix/routes/sse", `{"uri":"/events","upstream":{"nodes":`+nodesJSON(sse.Listener.Addr().String())+`}}`)
	req, _ := http.NewRequest("GET", "http://"+e.http+"/events", nil)
	req.Header.Set("Accept", "text/event-stream")
	start := time.Now()
	r, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	br := bufio.NewReader(r.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "data: 0\n" {
		t.Fatalf("first event %q, %v", line, err)
	}
	if el := time.Since(start); el > 250*time.Millisecond {
		t.Fatalf("first event after %v: the response was buffered", el)
	}
	rest, _ := io.ReadAll(br)
	if !strings.Contains(string(rest), "data: 2") {
		t.Fatalf("rest %q", rest)
	}
}

// A body larger than what is buffered is streamed to the upstream intact.
func TestLargeUploadStreamed(t *testing.T) {
	e := newEnv(t, nil)
	sum := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, n)
	}))
	t.Cleanup(sum.Close)
	e.put("/apisix/routes/up", `{"uri":"/upload","upstream":{"nodes":`+nodesJSON(sum.Listener.Addr().String())+`}}`)
	for _, size := range []int{0, 100, 1 << 20, 8<<20 + 3} {
		body := strings.Repeat("x", size)
		if r := e.do("POST", "/upload", body); r.status != 200 || r.body != fmt.Sprint(size) {
			t.Fatalf("size %d: status %d, upstream read %q bytes", size, r.status, r.body)
		}
	}
	// Chunked (no Content-Length).
	req, _ := http.NewRequest("POST", "http://"+e.http+"/upload", io.MultiReader(strings.NewReader(strings.Repeat("y", 3<<20))))
	req.ContentLength = -1
	r, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if r.StatusCode != 200 || string(b) != fmt.Sprint(3<<20) {
		t.Fatalf("chunked: %d %q", r.StatusCode, b)
	}
}

// The upstream receives a large body while the client is still sending it.
func TestUploadIsStreamedNotBuffered(t *testing.T) {
	e := newEnv(t, nil)
	got := make(chan struct{})
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 1)
		if _, err := io.ReadFull(r.Body, buf); err == nil {
			close(got)
		}
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, n+1)
	}))
	t.Cleanup(be.Close)
	e.put("/apisix/routes/up", `{"uri":"/stream-up","upstream":{"nodes":`+nodesJSON(be.Listener.Addr().String())+`}}`)
	pr, pw := io.Pipe()
	go func() {
		chunk := []byte(strings.Repeat("z", 1<<20))
		for range 3 { // more than the 1 MiB buffered before the handler
			pw.Write(chunk)
		}
		select {
		case <-got: // the backend has bytes before the body is complete
		case <-time.After(5 * time.Second):
			pw.CloseWithError(fmt.Errorf("backend saw nothing while the body was incomplete: buffered"))
			return
		}
		pw.Write(chunk)
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", "http://"+e.http+"/stream-up", pr)
	req.ContentLength = 4 << 20
	r, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if r.StatusCode != 200 || string(b) != fmt.Sprint(4<<20) {
		t.Fatalf("status %d, upstream read %q", r.StatusCode, b)
	}
}
