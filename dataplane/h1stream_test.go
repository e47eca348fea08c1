package dataplane

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/meshagent/meshagent/plugins/requestid"
	_ "github.com/meshagent/meshagent/plugins/responserewrite"
)

// pattern is the byte at offset i of the bodies the test backends send.
func pattern(i int) byte { return byte(i*7 + i>>10) }

// writePattern writes n bytes of pattern to w from a small buffer.
func writePattern(w io.Writer, n int) error {
	buf := make([]byte, 32<<10)
	for off := 0; off < n; {
		k := min(len(buf), n-off)
		for i := range buf[:k] {
			buf[i] = pattern(off + i)
		}
		if _, err := w.Write(buf[:k]); err != nil {
			return err
		}
		off += k
	}
	return nil
}

// patternSum is the SHA-256 of n bytes of pattern.
func patternSum(n int) [32]byte {
	h := sha256.New()
	_ = writePattern(h, n)
	var s [32]byte
	h.Sum(s[:0])
	return s
}

// heapPeak samples the heap in use until stop is closed and sends the
// largest value seen.
func heapPeak(stop <-chan struct{}) <-chan uint64 {
	out := make(chan uint64, 1)
	go func() {
		var peak uint64
		var ms runtime.MemStats
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc)
			select {
			case <-stop:
				out <- peak
				return
			case <-t.C:
			}
		}
	}()
	return out
}

// A 64 MiB download passes intact while the process's heap grows by a
// small fraction of it: the proxy relays the body instead of buffering
// it, with a Content-Length and chunked.
func TestLargeResponseStreamed(t *testing.T) {
	const size = 64 << 20
	e := newEnv(t, nil)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("chunked") == "" {
			w.Header().Set("Content-Length", strconv.Itoa(size))
		}
		_ = writePattern(w, size)
	}))
	t.Cleanup(be.Close)
	e.put("/apisix/routes/big", `{"uri":"/big","upstream":{"nodes":`+nodesJSON(be.Listener.Addr().String())+`}}`)
	want := patternSum(size)
	for _, path := range []string{"/big", "/big?chunked=1"} {
		t.Run(path, func(t *testing.T) {
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			base := ms.HeapAlloc
			stop := make(chan struct{})
			peak := heapPeak(stop)
			r, err := client.Get("http://" + e.http + path)
			if err != nil {
				t.Fatal(err)
			}
			h := sha256.New()
			n, err := io.Copy(h, r.Body)
			r.Body.Close()
			close(stop)
			grown := int64(<-peak) - int64(base)
			if err != nil || n != size || r.StatusCode != 200 {
				t.Fatalf("status %d, read %d bytes, %v", r.StatusCode, n, err)
			}
			if !bytes.Equal(h.Sum(nil), want[:]) {
				t.Fatal("body differs from what the upstream sent")
			}
			if chunked := strings.Contains(path, "chunked"); chunked != (r.ContentLength == -1) {
				t.Fatalf("Content-Length %d for %s", r.ContentLength, path)
			}
			t.Logf("heap grew by %d KiB at most", grown>>10)
			if grown > 16<<20 {
				t.Fatalf("heap grew by %d MiB relaying %d MiB: the body was buffered", grown>>20, size>>20)
			}
		})
	}
}

// A chunked response is relayed chunk by chunk: the backend sends its
// next chunk only once the client got the previous one.
func TestChunkedResponseRelayedAsItArrives(t *testing.T) {
	e := newEnv(t, nil)
	got := make(chan int)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fl := w.(http.Flusher)
		for i := range 5 {
			fmt.Fprintf(w, "chunk-%d\n", i)
			fl.Flush()
			select {
			case j := <-got:
				if j != i {
					return
				}
			case <-time.After(3 * time.Second):
				return // the proxy held the chunk back: the client reads a short body
			}
			time.Sleep(100 * time.Millisecond)
		}
	}))
	t.Cleanup(be.Close)
	e.put("/apisix/routes/slow", `{"uri":"/slow","plugins":{"request-id":{}},"upstream":{"nodes":`+nodesJSON(be.Listener.Addr().String())+`}}`)
	r, err := client.Get("http://" + e.http + "/slow")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	if r.Header.Get("X-Request-Id") == "" {
		t.Error("header_filter of request-id did not run on a streamed response")
	}
	br := bufio.NewReader(r.Body)
	for i := range 5 {
		line, err := br.ReadString('\n')
		if want := fmt.Sprintf("chunk-%d\n", i); line != want || err != nil {
			t.Fatalf("chunk %d: %q, %v", i, line, err)
		}
		select {
		case got <- i:
		case <-time.After(5 * time.Second):
			t.Fatalf("chunk %d arrived after the upstream gave up", i)
		}
	}
	if rest, err := io.ReadAll(br); len(rest) > 0 || err != nil {
		t.Fatalf("after the chunks: %q, %v", rest, err)
	}
}

// rawExchange sends req on conn and reads the response to a request of
// method method.
func rawExchange(t *testing.T, conn net.Conn, br *bufio.Reader, method, req string) (*http.Response, []byte) {
	t.Helper()
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	r, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s: %v", strings.SplitN(req, "\r\n", 2)[0], err)
	}
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatalf("%s: body: %v", strings.SplitN(req, "\r\n", 2)[0], err)
	}
	return r, b
}

// HEAD, 204 and 304 answers have no body, whatever length the upstream
// declares, and leave the client connection usable; large GETs on the
// same connection are streamed between them.
func TestStreamedResponsesWithoutBody(t *testing.T) {
	const size = 200 << 10
	e := newEnv(t, nil)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/nb/204":
			w.WriteHeader(204)
		case "/nb/304":
			w.Header().Set("ETag", `"x"`)
			w.WriteHeader(304)
		default:
			w.Header().Set("Content-Length", strconv.Itoa(size))
			if r.Method != "HEAD" {
				_ = writePattern(w, size)
			}
		}
	}))
	t.Cleanup(be.Close)
	e.put("/apisix/routes/nb", `{"uri":"/nb/*","upstream":{"nodes":`+nodesJSON(be.Listener.Addr().String())+`}}`)
	conn, err := net.Dial("tcp", e.http)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	want := patternSum(size)
	for _, tc := range []struct {
		method, path string
		status       int
		cl           int64
	}{
		{"HEAD", "/nb/big", 200, size},
		{"GET", "/nb/big", 200, size},
		{"GET", "/nb/204", 204, 0},
		{"GET", "/nb/304", 304, 0},
		{"HEAD", "/nb/big", 200, size},
		{"GET", "/nb/big", 200, size},
	} {
		r, body := rawExchange(t, conn, br, tc.method, tc.method+" "+tc.path+" HTTP/1.1\r\nHost: nb\r\n\r\n")
		if r.StatusCode != tc.status {
			t.Fatalf("%s %s: status %d", tc.method, tc.path, r.StatusCode)
		}
		if len(r.TransferEncoding) > 0 && tc.status != 200 {
			t.Fatalf("%s %s: Transfer-Encoding %v", tc.method, tc.path, r.TransferEncoding)
		}
		if tc.status == 200 && r.ContentLength != tc.cl {
			t.Fatalf("%s %s: Content-Length %d, want %d", tc.method, tc.path, r.ContentLength, tc.cl)
		}
		switch {
		case tc.method == "HEAD" || tc.status != 200:
			if len(body) > 0 {
				t.Fatalf("%s %s: body of %d bytes", tc.method, tc.path, len(body))
			}
		case sha256.Sum256(body) != want:
			t.Fatalf("%s %s: body of %d bytes differs", tc.method, tc.path, len(body))
		}
	}
}

// An upstream dying mid-body makes the proxy close the client
// connection, so the client sees a truncated body as an error, not a
// complete response.
func TestUpstreamDiesMidBody(t *testing.T) {
	e := newEnv(t, nil)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, bw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		if r.URL.Query().Get("chunked") != "" {
			bw.WriteString("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
			for range 20 {
				bw.WriteString("2000\r\n")
				_ = writePattern(bw, 0x2000)
				bw.WriteString("\r\n")
			}
		} else {
			bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
			_ = writePattern(bw, 200<<10)
		}
		bw.Flush()
	}))
	t.Cleanup(be.Close)
	e.put("/apisix/routes/die", `{"uri":"/die","upstream":{"nodes":`+nodesJSON(be.Listener.Addr().String())+`}}`)
	for _, path := range []string{"/die", "/die?chunked=1"} {
		r, err := client.Get("http://" + e.http + path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		n, err := io.Copy(io.Discard, r.Body)
		r.Body.Close()
		if err == nil {
			t.Fatalf("%s: complete response of %d bytes (status %d, Content-Length %d) from a dead upstream", path, n, r.StatusCode, r.ContentLength)
		}
		if n < 100<<10 {
			t.Fatalf("%s: %d bytes before the error: the body was not streamed", path, n)
		}
	}
	// The node connections were closed, not pooled: the next request
	// works.
	if r := e.get("/die?x=1"); r.status != 200 && r.status != 502 {
		t.Fatalf("after: status %d", r.status)
	}
}

// A body_filter plugin still sees the whole body of a large response,
// which is then read before being answered.
func TestBodyFilterBuffersLargeResponse(t *testing.T) {
	const size = 300 << 10
	e := newEnv(t, nil)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write(bytes.Repeat([]byte("a"), size-3))
		w.Write([]byte("END"))
	}))
	t.Cleanup(be.Close)
	e.put("/apisix/routes/bf", `{"uri":"/bf","plugins":{"response-rewrite":{"filters":[{"regex":"END$","replace":"FIN"}]}},"upstream":{"nodes":`+nodesJSON(be.Listener.Addr().String())+`}}`)
	r := e.get("/bf")
	if r.status != 200 || len(r.body) != size || !strings.HasSuffix(r.body, "FIN") {
		t.Fatalf("status %d, %d bytes ending %q", r.status, len(r.body), r.body[max(0, len(r.body)-3):])
	}
}

// connCounter is a backend counting the requests of each connection and
// the connections open.
type connCounter struct {
	srv          *httptest.Server
	open, closed atomic.Int32
	perConn      chan int // requests of each closed connection
	hold         time.Duration
}

func newConnCounter(t *testing.T, hold time.Duration) *connCounter {
	cc := &connCounter{perConn: make(chan int, 1000), hold: hold}
	reqs := map[net.Conn]int{}
	var mu sync.Mutex
	cc.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(cc.hold)
		w.Write([]byte("ok"))
	}))
	cc.srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		mu.Lock()
		defer mu.Unlock()
		switch s {
		case http.StateNew:
			cc.open.Add(1)
		case http.StateActive:
			reqs[c]++
		case http.StateClosed, http.StateHijacked:
			cc.perConn <- reqs[c]
			delete(reqs, c)
			cc.closed.Add(1)
		}
	}
	cc.srv.Start()
	t.Cleanup(cc.srv.Close)
	return cc
}

func (c *connCounter) addr() string { return c.srv.Listener.Addr().String() }

// waitClosed waits until n connections were closed.
func (c *connCounter) waitClosed(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for int(c.closed.Load()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections closed, want %d", c.closed.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// keepalive_pool.requests bounds the requests of a node connection.
func TestKeepalivePoolRequests(t *testing.T) {
	e := newEnv(t, nil)
	be := newConnCounter(t, 0)
	e.put("/apisix/routes/ka", `{"uri":"/ka","upstream":{"keepalive_pool":{"requests":3},"nodes":`+nodesJSON(be.addr())+`}}`)
	for i := range 10 {
		if r := e.get("/ka"); r.status != 200 {
			t.Fatalf("request %d: status %d", i, r.status)
		}
	}
	be.waitClosed(t, 3)
	for range 3 {
		if n := <-be.perConn; n != 3 {
			t.Fatalf("a node connection carried %d requests, want 3", n)
		}
	}
	if o := be.open.Load(); o != 4 {
		t.Fatalf("%d node connections for 10 requests, want 4", o)
	}
}

// keepalive_pool.idle_timeout closes idle node connections; without it
// they are reused.
func TestKeepalivePoolIdleTimeout(t *testing.T) {
	e := newEnv(t, nil)
	be := newConnCounter(t, 0)
	e.put("/apisix/routes/idle", `{"uri":"/idle","upstream":{"keepalive_pool":{"idle_timeout":0.2},"nodes":`+nodesJSON(be.addr())+`}}`)
	e.get("/idle")
	be.waitClosed(t, 1) // by the pool, after 0.2 to 0.4 s
	e.get("/idle")
	if o := be.open.Load(); o != 2 {
		t.Fatalf("%d node connections, want 2", o)
	}
	be2 := newConnCounter(t, 0)
	e.put("/apisix/routes/idle2", `{"uri":"/idle2","upstream":{"nodes":`+nodesJSON(be2.addr())+`}}`)
	e.get("/idle2")
	time.Sleep(500 * time.Millisecond)
	e.get("/idle2")
	if o, c := be2.open.Load(), be2.closed.Load(); o != 1 || c != 0 {
		t.Fatalf("default pool: %d connections opened, %d closed; want 1, 0", o, c)
	}
}

// keepalive_pool.size bounds the idle node connections kept.
func TestKeepalivePoolSize(t *testing.T) {
	e := newEnv(t, nil)
	be := newConnCounter(t, 200*time.Millisecond)
	e.put("/apisix/routes/sz", `{"uri":"/sz","upstream":{"keepalive_pool":{"size":2},"nodes":`+nodesJSON(be.addr())+`}}`)
	done := make(chan resp)
	for range 8 {
		go func() { done <- e.get("/sz") }()
	}
	for range 8 {
		if r := <-done; r.status != 200 {
			t.Fatalf("status %d", r.status)
		}
	}
	if o := be.open.Load(); o < 4 {
		t.Fatalf("only %d node connections for 8 concurrent requests", o)
	}
	be.waitClosed(t, int(be.open.Load())-2)
	time.Sleep(100 * time.Millisecond)
	if kept := be.open.Load() - be.closed.Load(); kept != 2 {
		t.Fatalf("%d idle node connections kept, want 2", kept)
	}
}

// An HTTP/1.0 client, which knows no chunked encoding, gets a body of
// unknown length whole, with a Content-Length.
func TestUnknownLengthToHTTP10Client(t *testing.T) {
	const size = 100 << 10
	e := newEnv(t, nil)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.(http.Flusher).Flush() // chunked
		_ = writePattern(w, size)
	}))
	t.Cleanup(be.Close)
	e.put("/apisix/routes/h10", `{"uri":"/h10","upstream":{"nodes":`+nodesJSON(be.Listener.Addr().String())+`}}`)
	conn, err := net.Dial("tcp", e.http)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	r, body := rawExchange(t, conn, bufio.NewReader(conn), "GET", "GET /h10 HTTP/1.0\r\nHost: h\r\n\r\n")
	if len(r.TransferEncoding) > 0 || r.ContentLength != size || sha256.Sum256(body) != patternSum(size) {
		t.Fatalf("Transfer-Encoding %v, Content-Length %d, %d bytes", r.TransferEncoding, r.ContentLength, len(body))
	}
}

// A client that stops reading a streamed body is disconnected after the
// send timeout, which frees the node connection: the upstream's writes
// fail instead of blocking forever.
func TestSlowConsumerTimesOut(t *testing.T) {
	e := newEnv(t, nil)
	e.dp.servers.send = 300 * time.Millisecond
	werr := make(chan error, 1)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		werr <- writePattern(w, 1<<30)
	}))
	t.Cleanup(be.Close)
	e.put("/apisix/routes/slowc", `{"uri":"/slowc","upstream":{"nodes":`+nodesJSON(be.Listener.Addr().String())+`}}`)
	conn, err := net.Dial("tcp", e.http)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.(*net.TCPConn).SetReadBuffer(4 << 10)
	io.WriteString(conn, "GET /slowc HTTP/1.1\r\nHost: s\r\n\r\n")
	head := make([]byte, 1024)
	if _, err := io.ReadFull(conn, head); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(head, []byte("HTTP/1.1 200")) {
		t.Fatalf("response %q", head[:40])
	}
	select { // the client reads nothing more
	case err := <-werr:
		if err == nil {
			t.Fatal("the upstream wrote 1 GiB to a client that does not read")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream is still writing to a client that stopped reading")
	}
}

// rawGetClose is rawGet that also reports whether the response said
// Connection: close and the proxy then closed the connection.
func rawGetClose(t *testing.T, c net.Conn, br *bufio.Reader, path string) (string, bool) {
	t.Helper()
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	r, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	io.Copy(io.Discard, r.Body)
	r.Body.Close()
	closed := false
	if r.Close {
		_, err := br.ReadByte()
		closed = err == io.EOF
	}
	if r.StatusCode != 200 {
		return fmt.Sprint(r.StatusCode), closed
	}
	return r.Header.Get("X-Backend"), closed
}

// A body delimited by the upstream closing the connection is relayed
// chunked to an HTTP/1.1 client, whose connection stays usable.
func TestUntilCloseBodyStreamed(t *testing.T) {
	const size = 200 << 10
	e := newEnv(t, nil)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		conn, bw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		bw.WriteString("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
		_ = writePattern(bw, size)
		bw.Flush()
	}))
	t.Cleanup(be.Close)
	e.put("/apisix/routes/uc", `{"uri":"/uc","upstream":{"nodes":`+nodesJSON(be.Listener.Addr().String())+`}}`)
	conn, err := net.Dial("tcp", e.http)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	for range 2 {
		r, body := rawExchange(t, conn, br, "GET", "GET /uc HTTP/1.1\r\nHost: u\r\n\r\n")
		if r.StatusCode != 200 || r.Close || sha256.Sum256(body) != patternSum(size) {
			t.Fatalf("status %d, close %v, %d bytes", r.StatusCode, r.Close, len(body))
		}
	}
}
