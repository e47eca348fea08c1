package redirect

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
)

func mustInstall(t testing.TB, tp *topo, cfg Config) *Manager {
	t.Helper()
	m, err := NewManager(cfg, nsRunner(tp.App), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Install(context.Background()); err != nil {
		t.Fatal(err)
	}
	if rep, err := m.Verify(context.Background()); err != nil {
		t.Fatalf("verify after install: %v\n%s", err, rep)
	}
	return m
}

// TestCaptureOutbound drives raw TCP and HTTP from the app namespace to a
// server namespace, over IPv4 and IPv6, and checks which connections the
// proxy captured and with which original destination.
func TestCaptureOutbound(t *testing.T) {
	tp := newTopo(t)
	echoServer(tp.Listen(tp.Srv, "tcp", ":9000"))
	echoServer(tp.Listen(tp.Srv, "tcp", ":9001"))
	httpServer(t, tp.Listen(tp.Srv, "tcp", ":8080"))
	echoServer(tp.Listen(tp.App, "tcp4", "127.0.0.1:7000"))
	echoServer(tp.Listen(tp.App, "tcp6", "[::1]:7000"))
	echoServer(tp.Listen(tp.App, "tcp", ":7001")) // the app's own service port

	cfg := DefaultConfig()
	cfg.ExcludeOutboundPorts = []uint16{9001}
	cfg.ExcludeOutboundCIDRs = []netip.Prefix{netip.MustParsePrefix(srv2IP + "/32")}
	cfg.ExcludeUIDs = []uint32{2000}
	mustInstall(t, tp, cfg)

	p := &testProxy{t: t}
	// One dual-stack listener: IPv4 connections arrive IPv4-mapped.
	p.serve(tp, "outbound", tp.Listen(tp.App, "tcp", ":15001"))
	p.serve(tp, "inbound", tp.Listen(tp.App, "tcp", ":15006"))

	v4, v6 := func(port string) string { return srvIP4 + ":" + port }, func(port string) string { return "[" + srvIP6 + "]:" + port }
	for _, tc := range []struct {
		name     string
		fsuid    int
		dialer   *net.Dialer
		addr     string
		captured bool
		listener string // which proxy listener must see it; "" means "outbound"
	}{
		{"ipv4", 0, nil, v4("9000"), true, ""},
		{"ipv6", 0, nil, v6("9000"), true, ""},
		{"excluded-port-ipv4", 0, nil, v4("9001"), false, ""},
		{"excluded-port-ipv6", 0, nil, v6("9001"), false, ""},
		{"excluded-cidr", 0, nil, srv2IP + ":9000", false, ""},
		{"excluded-uid", 2000, nil, v4("9000"), false, ""},
		{"proxy-uid", DefaultProxyUID, nil, v4("9000"), false, ""},
		{"proxy-uid-ipv6", DefaultProxyUID, nil, v6("9000"), false, ""},
		{"bypass-mark", 0, MarkedDialer(DefaultBypassMark), v4("9000"), false, ""},
		{"other-uid-captured", 3000, nil, v4("9000"), true, ""},
		{"loopback-ipv4", 0, nil, "127.0.0.1:7000", false, ""},
		{"loopback-ipv6", 0, nil, "[::1]:7000", false, ""},
		{"app-to-own-address", 0, nil, appIP4 + ":7001", false, ""},
		{"app-to-own-address-ipv6", 0, nil, "[" + appIP6 + "]:7001", false, ""},
		// The proxy calling the pod's own address is inbound traffic.
		{"proxy-to-own-address", DefaultProxyUID, nil, appIP4 + ":7001", true, "inbound"},
		{"proxy-to-own-address-ipv6", DefaultProxyUID, nil, "[" + appIP6 + "]:7001", true, "inbound"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := p.count()
			c, err := tp.Dial(tp.App, tc.fsuid, tc.dialer, tc.addr, dialTimeout)
			if err != nil {
				t.Fatalf("dial %s: %v", tc.addr, err)
			}
			reply, err := echo(c, tc.name)
			if err != nil || !strings.HasPrefix(reply, "echo "+tc.name+" ") {
				t.Fatalf("reply %q, %v", reply, err)
			}
			n := p.count() - before
			if tc.captured {
				if n != 1 {
					t.Fatalf("proxy saw %d connections, want 1", n)
				}
				if got := p.last().origDst.String(); got != tc.addr {
					t.Fatalf("original destination %s, want %s", got, tc.addr)
				}
				want := tc.listener
				if want == "" {
					want = "outbound"
				}
				if got := p.last().listener; got != want {
					t.Fatalf("captured by the %s listener, want %s", got, want)
				}
			} else if n != 0 {
				t.Fatalf("connection to %s was captured (%+v), want bypass", tc.addr, p.last())
			}
		})
	}
	for _, addr := range []string{v4("8080"), v6("8080")} {
		before := p.count()
		body, err := tp.httpGet(tp.App, addr)
		if err != nil || !strings.HasPrefix(body, "hello from=") {
			t.Fatalf("GET %s: %q %v", addr, body, err)
		}
		if p.count() != before+1 || p.last().origDst.String() != addr {
			t.Fatalf("GET %s: proxy saw %d new, last %+v", addr, p.count()-before, p.last())
		}
	}
}

// inboundServers starts the app's servers: 8080 captured, 8081 excluded,
// 8082 not in the include list.
func inboundServers(tp *topo) {
	for _, port := range []string{":8080", ":8081", ":8082"} {
		echoServer(tp.Listen(tp.App, "tcp", port))
	}
}

// checkInbound dials the app from the server namespace and checks capture.
func checkInbound(t *testing.T, tp *topo, p *testProxy, tproxy bool) {
	for _, tc := range []struct {
		name     string
		addr     string
		client   string
		captured bool
	}{
		{"ipv4", appIP4 + ":8080", srvIP4, true},
		{"ipv6", "[" + appIP6 + "]:8080", srvIP6, true},
		{"excluded-port", appIP4 + ":8081", srvIP4, false},
		{"excluded-port-ipv6", "[" + appIP6 + "]:8081", srvIP6, false},
		{"not-included-port", appIP4 + ":8082", srvIP4, false},
		{"not-included-port-ipv6", "[" + appIP6 + "]:8082", srvIP6, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := p.count()
			c, err := tp.Dial(tp.Srv, 0, nil, tc.addr, dialTimeout)
			if err != nil {
				t.Fatalf("dial %s: %v", tc.addr, err)
			}
			clientAddr := addrPort(c.LocalAddr())
			reply, err := echo(c, tc.name)
			if err != nil || !strings.HasPrefix(reply, "echo "+tc.name+" ") {
				t.Fatalf("reply %q, %v", reply, err)
			}
			if !tc.captured {
				if p.count() != before {
					t.Fatalf("excluded port captured: %+v", p.last())
				}
				if !strings.Contains(reply, "from="+clientAddr.String()) {
					t.Fatalf("app did not see the client directly: %q", reply)
				}
				return
			}
			if p.count() != before+1 {
				t.Fatalf("proxy saw %d connections, want 1", p.count()-before)
			}
			s := p.last()
			if s.listener != "inbound" || s.origDst.String() != tc.addr {
				t.Fatalf("captured %+v, want inbound to %s", s, tc.addr)
			}
			if s.remote != clientAddr {
				t.Fatalf("proxy saw client %v, want %v", s.remote, clientAddr)
			}
			if tproxy && s.local.String() != tc.addr {
				t.Fatalf("TPROXY: accepted socket's local address %v, want the original destination %s", s.local, tc.addr)
			}
			if tproxy && s.local.Port() != 8080 {
				t.Fatalf("TPROXY: local port %d", s.local.Port())
			}
		})
	}
}

// TestCaptureInboundRedirect captures inbound TCP with nat REDIRECT.
func TestCaptureInboundRedirect(t *testing.T) {
	tp := newTopo(t)
	inboundServers(tp)
	cfg := DefaultConfig()
	cfg.ExcludeInboundPorts = []uint16{8081}
	cfg.IncludeInboundPorts = []uint16{8080, 8081}
	mustInstall(t, tp, cfg)
	p := &testProxy{t: t}
	p.serve(tp, "outbound", tp.Listen(tp.App, "tcp", ":15001"))
	p.serve(tp, "inbound", tp.Listen(tp.App, "tcp", ":15006"))
	checkInbound(t, tp, p, false)
}

// TestCaptureInboundTProxy captures inbound TCP with TPROXY: no NAT, the
// proxy's socket has the original destination as its local address and
// the client's own address as its peer.
func TestCaptureInboundTProxy(t *testing.T) {
	tp := newTopo(t)
	inboundServers(tp)
	cfg := DefaultConfig()
	cfg.InboundMode = InboundTProxy
	cfg.ExcludeInboundPorts = []uint16{8081}
	cfg.IncludeInboundPorts = []uint16{8080, 8081}
	mustInstall(t, tp, cfg)
	p := &testProxy{t: t}
	p.serve(tp, "outbound", tp.Listen(tp.App, "tcp", ":15001"))
	for _, n := range []struct{ network, addr string }{{"tcp4", "0.0.0.0:15006"}, {"tcp6", "[::]:15006"}} {
		var ln net.Listener
		var err error
		tp.In(tp.App, 0, func() { ln, err = ListenTransparent(context.Background(), n.network, n.addr) })
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		p.serve(tp, "inbound", ln)
	}
	checkInbound(t, tp, p, true)

	// Outbound capture still works in TPROXY mode.
	echoServer(tp.Listen(tp.Srv, "tcp", ":9000"))
	before := p.count()
	c, err := tp.Dial(tp.App, 0, nil, srvIP4+":9000", dialTimeout)
	if err != nil {
		t.Fatal(err)
	}
	if reply, err := echo(c, "out"); err != nil || !strings.HasPrefix(reply, "echo out") {
		t.Fatalf("outbound in TPROXY mode: %q %v", reply, err)
	}
	if p.count() != before+1 || p.last().listener != "outbound" {
		t.Fatalf("outbound not captured in TPROXY mode: %+v", p.last())
	}
}
