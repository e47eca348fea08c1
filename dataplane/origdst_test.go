package dataplane

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// odBackend is an HTTP/1.1 server on addr (host:port, port may be 0)
// answering with its name in X-Backend; closed counts the connections it
// saw closed.
func odBackend(t *testing.T, addr, name string) (string, *atomic.Int64) {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", addr, err)
	}
	var closed atomic.Int64
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Backend", name)
			w.Header().Set("X-Seen-Host", r.Host)
			w.Header().Set("X-Seen-XFPort", r.Header.Get("X-Forwarded-Port"))
			fmt.Fprint(w, name)
		}),
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateClosed {
				closed.Add(1)
			}
		}}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return l.Addr().String(), &closed
}

// odEnv is a data plane whose OriginalDst reports, per client address,
// the destination the test registered when it dialed, and whose
// PassThroughDial counts its dials.
type odEnv struct {
	*env
	mu    sync.Mutex
	orig  map[string]netip.AddrPort
	dials atomic.Int64
}

func newODEnv(t *testing.T) *odEnv {
	oe := &odEnv{orig: map[string]netip.AddrPort{}}
	oe.env = newEnv(t, func(o *Options) {
		o.OriginalDst = func(c net.Conn) (netip.AddrPort, error) {
			for range 1000 {
				oe.mu.Lock()
				ap, ok := oe.orig[c.RemoteAddr().String()]
				oe.mu.Unlock()
				if ok {
					return ap, nil
				}
				time.Sleep(time.Millisecond)
			}
			return netip.AddrPort{}, fmt.Errorf("no original destination for %s", c.RemoteAddr())
		}
		o.PassThroughDial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			oe.dials.Add(1)
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}
	})
	return oe
}

// dial connects to listener addr as if the client had dialed dst.
func (oe *odEnv) dial(t *testing.T, addr, dst string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	oe.mu.Lock()
	oe.orig[c.LocalAddr().String()] = netip.MustParseAddrPort(dst)
	oe.mu.Unlock()
	return c
}

// get sends GET / with Host host on c and returns the response.
func odGet(t *testing.T, c net.Conn, br *bufio.Reader, host string) *http.Response {
	t.Helper()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", host)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	r, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	_, _ = io.Copy(io.Discard, r.Body)
	r.Body.Close()
	return r
}

const odUpstream = `{"discovery_type":"original_dst","service_name":"PassthroughCluster"`

// TestOrigDstHTTP: routes whose upstream is original_dst (Istio's
// allow_any -> PassthroughCluster, and InboundPassthroughCluster) reach
// the destination the client dialed: over a use_original_dst hand-off to
// an unbound per-port listener, over an original_dst_filter listener,
// over HTTP/1.1 and h2c; two destinations reach two backends, each
// pooled once; a connection that was not redirected gets 503.
func TestOrigDstHTTP(t *testing.T) {
	oe := newODEnv(t)
	a, _ := odBackend(t, "127.0.0.1:0", "a")
	_, port, _ := net.SplitHostPort(a)
	b, _ := odBackend(t, "127.0.0.2:"+port, "b") // same port, other IP
	oe.put("/apisix/routes/pt", `{"uri":"/*","labels":{"meshagent.route_config":"80"},"upstream":`+odUpstream+`}}`)
	oe.put("/apisix/routes/direct", `{"uri":"/*","upstream":`+odUpstream+`}}`)
	oe.put("/meshagent/listeners/virtual", `{"address":"127.0.0.1:0","use_original_dst":true,"filter_chains":[{"kind":"tcp","stream_route_id":"none"}]}`)
	oe.put("/meshagent/listeners/svc", `{"address":"0.0.0.0:`+port+`","labels":{"meshagent.bind_to_port":"false"},"filter_chains":[{"kind":"http","route_config":"80"}]}`)
	oe.put("/meshagent/listeners/inbound", `{"address":"127.0.0.1:0","labels":{"meshagent.original_dst_filter":"true"},"filter_chains":[{"kind":"http","route_config":"80"}]}`)
	va, _ := oe.dp.ListenerAddr("virtual")
	ia, _ := oe.dp.ListenerAddr("inbound")

	cases := []struct {
		name     string
		listener string
		dst      string
		want     string
	}{
		{"hand-off, destination a", va.String(), a, "a"},
		{"hand-off, destination b", va.String(), b, "b"},
		{"original_dst_filter listener, destination b", ia.String(), b, "b"},
		{"hand-off again, a: pooled", va.String(), a, "a"},
	}
	for _, cs := range cases {
		t.Run(cs.name, func(t *testing.T) {
			c := oe.dial(t, cs.listener, cs.dst)
			br := bufio.NewReader(c)
			for i := range 2 { // keep-alive: both requests on the conn
				r := odGet(t, c, br, "unknown.example:"+port)
				if r.StatusCode != 200 || r.Header.Get("X-Backend") != cs.want {
					t.Fatalf("request %d: %d from %q, want 200 from %q", i, r.StatusCode, r.Header.Get("X-Backend"), cs.want)
				}
				if h := r.Header.Get("X-Seen-Host"); h != "unknown.example:"+port {
					t.Errorf("backend saw Host %q, want the client's", h)
				}
				if p := r.Header.Get("X-Seen-XFPort"); p != port {
					t.Errorf("X-Forwarded-Port %q, want the original destination's %s", p, port)
				}
			}
		})
	}
	t.Run("h2c hand-off", func(t *testing.T) {
		tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(context.Context, string, string, *tls.Config) (net.Conn, error) {
			return oe.dial(t, va.String(), b), nil
		}}
		defer tr.CloseIdleConnections()
		r, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("http://unknown.example:" + port + "/")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
		if r.StatusCode != 200 || r.Header.Get("X-Backend") != "b" {
			t.Fatalf("%d from %q, want 200 from b", r.StatusCode, r.Header.Get("X-Backend"))
		}
	})
	if got := oe.dials.Load(); got != 2 {
		t.Errorf("%d pass-through dials, want 2 (one pooled connection per destination)", got)
	}
	// Not redirected (the static listener): no destination, 503.
	if r := oe.get("/x"); r.status != 503 {
		t.Errorf("not redirected: %d, want 503", r.status)
	}
}

// odPoolsOf returns the destination pools of the (only) original_dst
// upstream runtime in force.
func odPoolsOf(t *testing.T, d *Dataplane) *odPools {
	t.Helper()
	for _, up := range d.snap.Load().upstreams {
		if up.od != nil {
			return up.od.pools
		}
	}
	t.Fatal("no original_dst upstream in the snapshot")
	return nil
}

// TestOrigDstHeaderAndPoolBound: with discovery_args.use_http_header a
// request that was not redirected names its destination in
// x-envoy-original-dst-host; malformed values get 503. The pools are
// bounded by max_destinations: the least recently used destination is
// evicted and its idle connections closed.
func TestOrigDstHeaderAndPoolBound(t *testing.T) {
	e := newEnv(t, nil)
	be := map[string]string{}
	closed := map[string]*atomic.Int64{}
	for _, n := range []string{"a", "b", "c"} {
		be[n], closed[n] = odBackend(t, "127.0.0.1:0", n)
	}
	e.put("/apisix/routes/pt", `{"uri":"/*","upstream":`+odUpstream+`,"discovery_args":{"use_http_header":true,"max_destinations":2}}}`)
	get := func(hdr string) resp {
		t.Helper()
		return e.get("/p", "X-Envoy-Original-Dst-Host", hdr)
	}
	for _, bad := range []string{"", "example.com:80", "127.0.0.1", "127.0.0.1:0", "[fe80::1%eth0]:80"} {
		if r := get(bad); r.status != 503 {
			t.Errorf("header %q: %d, want 503", bad, r.status)
		}
	}
	pools := odPoolsOf(t, e.dp)
	steps := []struct {
		dst       string
		wantPools int
		evicted   string // backend whose idle connection the eviction closes
	}{
		{"a", 1, ""},
		{"b", 2, ""},
		{"a", 2, ""},  // refreshes a: b is now least recently used
		{"c", 2, "b"}, // bound reached: b goes
		{"b", 2, "a"},
	}
	for i, st := range steps {
		before := closed[st.evicted]
		var n0 int64
		if before != nil {
			n0 = before.Load()
		}
		r := get(be[st.dst])
		if r.status != 200 || r.h.Get("X-Backend") != st.dst {
			t.Fatalf("step %d: %d from %q, want 200 from %s", i, r.status, r.h.Get("X-Backend"), st.dst)
		}
		if got := pools.len(); got != st.wantPools {
			t.Fatalf("step %d: %d pools, want %d", i, got, st.wantPools)
		}
		if before != nil {
			deadline := time.Now().Add(5 * time.Second)
			for before.Load() == n0 {
				if time.Now().After(deadline) {
					t.Fatalf("step %d: the evicted pool of %s kept its connection", i, st.evicted)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
}

// TestOrigDstUpstreamValidation: original_dst upstreams are accepted
// without nodes and rejected, naming the field, with nodes, an
// unsupported scheme, health checks or bad discovery_args; the rejected
// route is not served.
func TestOrigDstUpstreamValidation(t *testing.T) {
	cases := []struct {
		name, extra string
		ok          bool
	}{
		{"plain", ``, true},
		{"https", `,"scheme":"https"`, true},
		{"grpc", `,"scheme":"grpc"`, true},
		{"tcp", `,"scheme":"tcp"`, true},
		{"nodes", `,"nodes":[{"host":"127.0.0.1","port":1,"weight":1}]`, false},
		{"scheme tls", `,"scheme":"tls"`, false},
		{"scheme udp", `,"scheme":"udp"`, false},
		{"checks", `,"checks":{"active":{"http_path":"/"}}`, false},
		{"max_destinations 0", `,"discovery_args":{"max_destinations":0}`, false},
		{"max_destinations 1.5", `,"discovery_args":{"max_destinations":1.5}`, false},
		{"use_http_header string", `,"discovery_args":{"use_http_header":"yes"}`, false},
		{"http_header_name empty", `,"discovery_args":{"http_header_name":""}`, false},
	}
	for _, cs := range cases {
		t.Run(cs.name, func(t *testing.T) {
			e := newEnv(t, nil)
			rej := e.dp.Stats().ConfigRejected.Load()
			err := e.tryPut("/apisix/routes/r", `{"uri":"/*","upstream":`+odUpstream+cs.extra+`}}`)
			rejected := err != nil || e.dp.Stats().ConfigRejected.Load() > rej
			if rejected == cs.ok {
				t.Fatalf("rejected=%v (store error %v), want %v", rejected, err, !cs.ok)
			}
			r := e.get("/x")
			want := 503 // accepted, but not redirected: no destination
			if !cs.ok {
				want = 404
			}
			if r.status != want {
				t.Fatalf("status %d, want %d", r.status, want)
			}
		})
	}
}

// TestOrigDstTCP: a TCP filter chain whose stream route's upstream is
// original_dst connects to the original destination (through
// PassThroughDial); a stream route listener that was not redirected
// closes the connection.
func TestOrigDstTCP(t *testing.T) {
	oe := newODEnv(t)
	echo := tcpEcho(t, "hello\n")
	_, port, _ := net.SplitHostPort(echo)
	oe.put("/apisix/stream_routes/pt", `{"upstream":`+odUpstream+`,"scheme":"tcp"}}`)
	oe.put("/meshagent/listeners/virtual", `{"address":"127.0.0.1:0","use_original_dst":true,"filter_chains":[{"kind":"tcp","stream_route_id":"none"}]}`)
	oe.put("/meshagent/listeners/svc", `{"address":"0.0.0.0:`+port+`","labels":{"meshagent.bind_to_port":"false"},"filter_chains":[{"kind":"tcp","stream_route_id":"pt"}]}`)
	oe.put("/meshagent/listeners/plain", `{"address":"127.0.0.1:0","filter_chains":[{"kind":"tcp","stream_route_id":"pt"}]}`)
	va, _ := oe.dp.ListenerAddr("virtual")
	pa, _ := oe.dp.ListenerAddr("plain")

	c := oe.dial(t, va.String(), echo)
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	if l, err := br.ReadString('\n'); err != nil || l != "hello\n" {
		t.Fatalf("greeting %q %v", l, err)
	}
	if _, err := c.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	if l, err := br.ReadString('\n'); err != nil || l != "ping\n" {
		t.Fatalf("echo %q %v", l, err)
	}
	if oe.dials.Load() != 1 {
		t.Errorf("%d pass-through dials, want 1", oe.dials.Load())
	}

	p, err := net.Dial("tcp", pa.String())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	_ = p.SetDeadline(time.Now().Add(5 * time.Second))
	if n, err := p.Read(make([]byte, 16)); err == nil {
		t.Fatalf("not redirected: read %d bytes, want the connection closed", n)
	}
}

// TestOrigDstCarryOver: a config push that changes the original_dst
// upstream's object but not its pool settings keeps the destination
// pools (no new dial); one that changes them starts fresh pools.
func TestOrigDstCarryOver(t *testing.T) {
	oe := newODEnv(t)
	a, _ := odBackend(t, "127.0.0.1:0", "a")
	_, port, _ := net.SplitHostPort(a)
	oe.put("/apisix/upstreams/pt", odUpstream+`,"desc":"v1"}`)
	oe.put("/apisix/routes/pt", `{"uri":"/*","labels":{"meshagent.route_config":"80"},"upstream_id":"pt"}`)
	oe.put("/meshagent/listeners/virtual", `{"address":"127.0.0.1:0","use_original_dst":true,"filter_chains":[{"kind":"tcp","stream_route_id":"none"}]}`)
	oe.put("/meshagent/listeners/svc", `{"address":"0.0.0.0:`+port+`","labels":{"meshagent.bind_to_port":"false"},"filter_chains":[{"kind":"http","route_config":"80"}]}`)
	va, _ := oe.dp.ListenerAddr("virtual")
	steps := []struct {
		upstream  string
		wantDials int64
	}{
		{odUpstream + `,"desc":"v1"}`, 1},
		{odUpstream + `,"desc":"v2"}`, 1},                                           // same pools
		{odUpstream + `,"desc":"v2","pass_host":"node"}`, 1},                        // same pools
		{odUpstream + `,"desc":"v2","timeout":{"connect":3,"send":3,"read":3}}`, 2}, // new pools
	}
	for i, st := range steps {
		oe.put("/apisix/upstreams/pt", st.upstream)
		c := oe.dial(t, va.String(), a)
		r := odGet(t, c, bufio.NewReader(c), "h")
		c.Close()
		if r.StatusCode != 200 || r.Header.Get("X-Backend") != "a" {
			t.Fatalf("step %d: %d from %q", i, r.StatusCode, r.Header.Get("X-Backend"))
		}
		if h := r.Header.Get("X-Seen-Host"); i == 2 && h != a {
			t.Errorf("step %d: pass_host node: backend saw Host %q, want %s", i, h, a)
		}
		if got := oe.dials.Load(); got != st.wantDials {
			t.Fatalf("step %d: %d dials, want %d", i, got, st.wantDials)
		}
	}
}

// FuzzParseOrigDstHost: any accepted header value is an IP literal with
// a non-zero port that round-trips through its string form.
func FuzzParseOrigDstHost(f *testing.F) {
	for _, s := range []string{"127.0.0.1:80", "[::1]:8080", "[::ffff:10.0.0.1]:443", "example.com:80", "1.2.3.4", "[fe80::1%eth0]:1", ":80", "1.2.3.4:65536"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ap, err := parseOrigDstHost(b)
		if err != nil {
			return
		}
		if !ap.IsValid() || ap.Port() == 0 || ap.Addr().Is4In6() {
			t.Fatalf("%q accepted as %v", b, ap)
		}
		back, err := netip.ParseAddrPort(ap.String())
		if err != nil || back != ap {
			t.Fatalf("%q -> %v does not round-trip: %v %v", b, ap, back, err)
		}
	})
}
