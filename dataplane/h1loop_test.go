//go:build linux

package dataplane

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Tests of the HTTP/1.1 event loops (h1loop_linux.go). The rest of the
// suite runs through them too: every request of a route without plugins
// takes the event-loop path by default.

func fasthttpEngine(o *Options) { o.HTTP1Engine = EngineFasthttp }

// The same requests through both engines give the same answers and the
// same view of the request at the backend.
func TestEvloopParity(t *testing.T) {
	a := backend(t, "a")
	envs := map[string]*env{"evloop": newEnv(t, nil), "fasthttp": newEnv(t, fasthttpEngine)}
	for _, e := range envs {
		e.put("/apisix/upstreams/u1", `{"nodes":`+nodesJSON(a)+`}`)
		e.put("/apisix/upstreams/node", `{"nodes":`+nodesJSON(a)+`,"pass_host":"node"}`)
		e.put("/apisix/upstreams/rw", `{"nodes":`+nodesJSON(a)+`,"pass_host":"rewrite","upstream_host":"up.example"}`)
		e.put("/apisix/routes/r1", `{"uri":"/r1*","upstream_id":"u1"}`)
		e.put("/apisix/routes/vars", `{"uri":"/v","vars":[["arg_k","==","1"],["http_x_user","~~","^al"]],"upstream_id":"u1"}`)
		e.put("/apisix/routes/node", `{"uri":"/node","upstream_id":"node"}`)
		e.put("/apisix/routes/rw", `{"uri":"/rw","upstream_id":"rw"}`)
		e.put("/apisix/routes/host", `{"uri":"/h","hosts":["*.example.com"],"upstream_id":"u1"}`)
		e.put("/apisix/routes/empty", `{"uri":"/empty","upstream":{"nodes":[]}}`)
	}
	type req struct {
		method, path, body string
		hdr                []string
	}
	cases := []req{
		{"GET", "/r1", "", nil},
		{"GET", "/r1/sub?x=1&y=%20", "", nil},
		{"POST", "/r1", "hello body", []string{"Content-Type", "text/plain"}},
		{"PUT", "/r1", strings.Repeat("x", 40000), nil},
		{"HEAD", "/r1", "", nil},
		{"DELETE", "/r1", "", nil},
		{"GET", "/r1", "", []string{"X-Test-A", "1", "X-Forwarded-For", "9.9.9.9", "X-Forwarded-Proto", "https"}},
		{"GET", "/r1", "", []string{"X-Forwarded-Port", "444", "Host", "Some.Host:99"}},
		{"GET", "/r1%2Fenc", "", nil}, // percent-encoded: fasthttp serves it
		{"GET", "/v?k=1", "", []string{"X-User", "alice"}},
		{"GET", "/v?k=2", "", []string{"X-User", "alice"}},
		{"GET", "/v?k=%31", "", []string{"X-User", "alice"}},
		{"GET", "/v?k=1", "", []string{"X-User", "bob"}},
		{"GET", "/node", "", nil},
		{"GET", "/rw", "", nil},
		{"GET", "/h", "", []string{"Host", "www.example.com"}},
		{"GET", "/h", "", []string{"Host", "www.example.org"}},
		{"GET", "/empty", "", nil},
		{"GET", "/nothing", "", nil},
	}
	// Content-Length may differ: fasthttp buffers a chunked response and
	// sends its length, the event loop relays it chunked (as nginx does).
	headers := []string{"X-Backend", "X-Seen-Host", "X-Seen-Path", "X-Seen-Method", "X-Seen-XFF", "X-Seen-XFP", "X-Seen-XFPort", "X-Echo-A", "Content-Type"}
	for _, c := range cases {
		got := map[string]resp{}
		for name, e := range envs {
			got[name] = e.do(c.method, c.path, c.body, c.hdr...)
		}
		ev, fh := got["evloop"], got["fasthttp"]
		if ev.status != fh.status || ev.body != fh.body {
			t.Errorf("%s %s: evloop %d %.60q, fasthttp %d %.60q", c.method, c.path, ev.status, ev.body, fh.status, fh.body)
		}
		for _, h := range headers {
			v1, v2 := ev.h.Get(h), fh.h.Get(h)
			if h == "X-Seen-XFPort" {
				// Each env listens on its own port.
				v1, v2 = strconv.FormatBool(v1 != ""), strconv.FormatBool(v2 != "")
			}
			if h == "X-Seen-Host" {
				// The client's Host is the env's own address by default.
				v1 = strings.Replace(v1, envs["evloop"].http, "ENV", 1)
				v2 = strings.Replace(v2, envs["fasthttp"].http, "ENV", 1)
			}
			if v1 != v2 {
				t.Errorf("%s %s: header %s: evloop %q, fasthttp %q", c.method, c.path, h, v1, v2)
			}
		}
	}
	if n := envs["evloop"].dp.stats.H1Fallbacks.Load(); n == 0 {
		t.Error("no request went to fasthttp: the fallback is untested")
	}
}

// connBackend serves each accepted connection with fn.
func connBackend(t *testing.T, fn func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				fn(c)
			}()
		}
	}()
	return ln.Addr().String()
}

func dialRaw(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	return c, bufio.NewReader(c)
}

// Pipelined requests are answered in order on one connection.
func TestEvloopPipelining(t *testing.T) {
	e := newEnv(t, nil)
	a := backend(t, "a")
	e.put("/apisix/routes/r1", `{"uri":"/*","upstream":{"nodes":`+nodesJSON(a)+`}}`)
	c, br := dialRaw(t, e.http)
	var reqs string
	for i := range 5 {
		body := strconv.Itoa(i)
		reqs += fmt.Sprintf("POST /p%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", i, len(body), body)
	}
	reqs += "GET /missing-route-is-fine HTTP/1.1\r\nHost: x\r\n\r\n"
	if _, err := c.Write([]byte(reqs)); err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		r, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		if i < 5 && (r.StatusCode != 200 || string(b) != "a:"+strconv.Itoa(i) || r.Header.Get("X-Seen-Path") != "/p"+strconv.Itoa(i)) {
			t.Fatalf("response %d: %d %q path %q", i, r.StatusCode, b, r.Header.Get("X-Seen-Path"))
		}
	}
}

// A chunked response reaches the client chunk by chunk: the backend
// sends its second chunk only after the client saw the first.
func TestEvloopStreamsChunks(t *testing.T) {
	e := newEnv(t, nil)
	seen := make(chan struct{})
	s := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "first;")
		w.(http.Flusher).Flush()
		select {
		case <-seen:
		case <-time.After(5 * time.Second):
			_, _ = io.WriteString(w, "TIMEOUT")
			return
		}
		_, _ = io.WriteString(w, "second")
	})}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	e.put("/apisix/routes/r1", `{"uri":"/*","upstream":{"nodes":`+nodesJSON(ln.Addr().String())+`}}`)
	resp, err := http.Get("http://" + e.http + "/sse")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.TransferEncoding == nil || resp.TransferEncoding[0] != "chunked" {
		t.Fatalf("transfer encoding %v", resp.TransferEncoding)
	}
	buf := make([]byte, 6)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first;" {
		t.Fatalf("first chunk %q %v", buf, err)
	}
	close(seen)
	rest, err := io.ReadAll(resp.Body)
	if err != nil || string(rest) != "second" {
		t.Fatalf("rest %q %v", rest, err)
	}
}

// Large bodies both ways, byte-exact, including a client that reads the
// response slowly (the loop stops reading the upstream meanwhile).
func TestEvloopLargeBodies(t *testing.T) {
	e := newEnv(t, nil)
	big := make([]byte, 24<<20)
	_, _ = rand.Read(big)
	sum := sha256.Sum256(big)
	s := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "POST" {
			h := sha256.New()
			n, _ := io.Copy(h, r.Body)
			fmt.Fprintf(w, "%d:%s", n, hex.EncodeToString(h.Sum(nil)))
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(big)))
		_, _ = w.Write(big)
	})}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	e.put("/apisix/routes/r1", `{"uri":"/*","upstream":{"nodes":`+nodesJSON(ln.Addr().String())+`}}`)

	r := e.do("POST", "/up", string(big[:9<<20+7]))
	want := sha256.Sum256(big[:9<<20+7])
	if r.status != 200 || r.body != fmt.Sprintf("%d:%s", 9<<20+7, hex.EncodeToString(want[:])) {
		t.Fatalf("upload: %d %q", r.status, r.body)
	}
	resp, err := http.Get("http://" + e.http + "/down")
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	buf := make([]byte, 256<<10)
	var n int64
	for i := 0; ; i++ {
		k, err := resp.Body.Read(buf)
		h.Write(buf[:k])
		n += int64(k)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if i%16 == 0 {
			time.Sleep(5 * time.Millisecond) // a slow reader
		}
	}
	resp.Body.Close()
	if n != int64(len(big)) || !bytes.Equal(h.Sum(nil), sum[:]) {
		t.Fatalf("download: %d bytes, hash mismatch %v", n, !bytes.Equal(h.Sum(nil), sum[:]))
	}
}

// Responses delimited by the upstream closing reach the client whole,
// chunked, on a connection that stays open; a response cut short closes
// the client's connection instead of passing for complete.
func TestEvloopCloseDelimitedAndTruncated(t *testing.T) {
	e := newEnv(t, nil)
	closeDelim := connBackend(t, func(c net.Conn) {
		_, _ = http.ReadRequest(bufio.NewReader(c))
		_, _ = io.WriteString(c, "HTTP/1.0 200 OK\r\nX-Kind: close\r\n\r\n"+strings.Repeat("z", 100000))
	})
	truncated := connBackend(t, func(c net.Conn) {
		_, _ = http.ReadRequest(bufio.NewReader(c))
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly-a-part")
	})
	e.put("/apisix/routes/cd", `{"uri":"/cd","upstream":{"nodes":`+nodesJSON(closeDelim)+`}}`)
	e.put("/apisix/routes/tr", `{"uri":"/tr","upstream":{"nodes":`+nodesJSON(truncated)+`}}`)
	c, br := dialRaw(t, e.http)
	var b []byte
	for i := range 2 { // chunked to the client, whose connection stays
		_, _ = io.WriteString(c, "GET /cd HTTP/1.1\r\nHost: x\r\n\r\n")
		r, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, err = io.ReadAll(r.Body)
		if err != nil || len(b) != 100000 || r.Close || r.Header.Get("X-Kind") != "close" || len(r.TransferEncoding) != 1 {
			t.Fatalf("close-delimited %d: %d bytes err %v close %v encoding %v", i, len(b), err, r.Close, r.TransferEncoding)
		}
	}

	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + e.http + "/tr")
	if err != nil {
		t.Fatal(err)
	}
	b, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != io.ErrUnexpectedEOF || string(b) != "only-a-part" {
		t.Fatalf("truncated response: %q err %v, want the part and the connection closed at once", b, err)
	}
}

// A keep-alive connection the node closed is retried once on a fresh one
// for an idempotent request; nodes that refuse connections are skipped.
func TestEvloopStaleConnectionsAndRetries(t *testing.T) {
	e := newEnv(t, nil)
	var mu sync.Mutex
	conns := 0
	oneShot := connBackend(t, func(c net.Conn) {
		mu.Lock()
		conns++
		mu.Unlock()
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		// Claims keep-alive, then closes: the pooled connection is stale.
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		time.Sleep(20 * time.Millisecond)
	})
	a := backend(t, "a")
	e.put("/apisix/routes/stale", `{"uri":"/stale","upstream":{"nodes":`+nodesJSON(oneShot)+`}}`)
	e.put("/apisix/routes/retry", `{"uri":"/retry","upstream":{"type":"roundrobin","nodes":`+nodesJSON(deadAddr(t), deadAddr(t), a)+`}}`)
	for i := range 5 {
		if r := e.get("/stale"); r.status != 200 || r.body != "ok" {
			t.Fatalf("stale %d: %d %q", i, r.status, r.body)
		}
		time.Sleep(40 * time.Millisecond)
	}
	if conns < 5 {
		t.Fatalf("%d backend connections for 5 requests on closed keep-alive connections", conns)
	}
	before := e.dp.stats.Retries.Load()
	for i := range 6 {
		if r := e.get("/retry"); r.status != 200 || r.body != "a:" {
			t.Fatalf("retry %d: %d %q", i, r.status, r.body)
		}
	}
	if e.dp.stats.Retries.Load() == before {
		t.Fatal("no retry counted")
	}
}

// Timeouts: a slow node answers 504, a dead one 502, a client that sends
// nothing is closed after the idle timeout.
func TestEvloopTimeouts(t *testing.T) {
	e := newEnv(t, nil)
	e.dp.servers.idle = 300 * time.Millisecond
	a := backend(t, "a")
	e.put("/apisix/routes/slow", `{"uri":"/slow","upstream":{"nodes":`+nodesJSON(a)+`,"timeout":{"connect":1,"send":1,"read":0.2}}}`)
	e.put("/apisix/routes/dead", `{"uri":"/dead","upstream":{"nodes":`+nodesJSON(deadAddr(t))+`}}`)
	if r := e.get("/slow?sleep=1s"); r.status != 504 {
		t.Fatalf("slow: %d", r.status)
	}
	if r := e.get("/slow?sleep=10ms"); r.status != 200 {
		t.Fatalf("slow but in time: %d", r.status)
	}
	if r := e.get("/dead"); r.status != 502 {
		t.Fatalf("dead: %d", r.status)
	}
	c, br := dialRaw(t, e.http)
	_, _ = io.WriteString(c, "GET /slow HTTP/1.1\r\n") // and never the rest
	start := time.Now()
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection: %v, want EOF", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("idle connection closed after %v", d)
	}
}

// One keep-alive connection can go from the event loop to fasthttp
// (a route with plugins) mid-way; requests keep their order.
func TestEvloopFallbackMidConnection(t *testing.T) {
	e := newEnv(t, nil)
	a := backend(t, "a")
	e.put("/apisix/upstreams/u1", `{"nodes":`+nodesJSON(a)+`}`)
	e.put("/apisix/routes/fast", `{"uri":"/fast","upstream_id":"u1"}`)
	e.put("/apisix/routes/plug", `{"uri":"/plug","upstream_id":"u1","plugins":{"proxy-rewrite":{"headers":{"set":{"X-Test-Rw":"yes"}}}}}`)
	c, br := dialRaw(t, e.http)
	before := e.dp.stats.H1Fallbacks.Load()
	for i, p := range []string{"/fast", "/fast", "/plug", "/fast"} {
		_, _ = io.WriteString(c, "GET "+p+" HTTP/1.1\r\nHost: x\r\n\r\n")
		r, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%d %s: %v", i, p, err)
		}
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		if r.StatusCode != 200 || string(b) != "a:" || r.Header.Get("X-Seen-Path") != p {
			t.Fatalf("%d %s: %d %q %q", i, p, r.StatusCode, b, r.Header.Get("X-Seen-Path"))
		}
		if (p == "/plug") != (r.Header.Get("X-Echo-Rw") == "yes") {
			t.Fatalf("%d %s: plugin header %q", i, p, r.Header.Get("X-Echo-Rw"))
		}
	}
	if e.dp.stats.H1Fallbacks.Load() != before+1 {
		t.Fatalf("fallbacks %d, want %d", e.dp.stats.H1Fallbacks.Load(), before+1)
	}
}

// Many clients at once, with Connection: close and keep-alive mixed.
func TestEvloopConcurrent(t *testing.T) {
	e := newEnv(t, nil)
	a, b := backend(t, "a"), backend(t, "b")
	e.put("/apisix/routes/r1", `{"uri":"/*","upstream":{"nodes":`+nodesJSON(a, b)+`}}`)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 60 {
				req, _ := http.NewRequest("POST", "http://"+e.http+"/c", strings.NewReader(strconv.Itoa(i)))
				req.Close = i%7 == 0
				r, err := client.Do(req)
				if err != nil {
					errs <- err
					return
				}
				body, _ := io.ReadAll(r.Body)
				r.Body.Close()
				if r.StatusCode != 200 || !strings.HasSuffix(string(body), ":"+strconv.Itoa(i)) {
					errs <- fmt.Errorf("client %d request %d: %d %q", g, i, r.StatusCode, body)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
