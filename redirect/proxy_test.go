package redirect

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshagent/meshagent/redirect/netnstest"
)

// seenConn is what the test proxy observed about one captured connection.
type seenConn struct {
	listener string // "outbound" or "inbound"
	origDst  netip.AddrPort
	remote   netip.AddrPort
	local    netip.AddrPort
}

// testProxy is the small capturing proxy the tests run inside the app
// namespace: it accepts captured connections, records their original
// destination, and forwards them with PassThrough (dialing with the bypass
// mark from inside the namespace). The integrator swaps in the data plane.
type testProxy struct {
	t  testing.TB
	mu sync.Mutex
	// seen lists every connection in accept order.
	seen []seenConn
}

func addrPort(a net.Addr) netip.AddrPort {
	ap := a.(*net.TCPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// serve accepts on ln until it is closed, forwarding from namespace ns.
func (p *testProxy) serve(tp *topo, name string, ln net.Listener) {
	pt := &PassThrough{
		Mark: DefaultBypassMark,
		OriginalDst: func(c net.Conn) (netip.AddrPort, error) {
			dst, err := OriginalDst(c)
			if err == nil {
				p.mu.Lock()
				p.seen = append(p.seen, seenConn{name, dst, addrPort(c.RemoteAddr()), addrPort(c.LocalAddr())})
				p.mu.Unlock()
			}
			return dst, err
		},
		Dial: tp.Dialer(tp.App, MarkedDialer(DefaultBypassMark)),
	}
	netnstest.Serve(ln, func(c net.Conn) {
		if err := pt.Serve(context.Background(), c); err != nil {
			p.t.Logf("proxy %s: %v", name, err)
		}
	})
}

func (p *testProxy) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.seen)
}

func (p *testProxy) last() seenConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.seen) == 0 {
		return seenConn{}
	}
	return p.seen[len(p.seen)-1]
}

// echoServer answers each line with who it talked to.
func echoServer(ln net.Listener) { netnstest.Serve(ln, echoConn) }

// echoConn answers one line on c. A named function rather than a literal
// in echoServer: the compiler then keeps its bufio.Reader on the stack,
// which BenchmarkConnectEcho's allocation count sees.
func echoConn(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return
	}
	fmt.Fprintf(c, "echo %s from=%s to=%s\n", strings.TrimSpace(line), addrPort(c.RemoteAddr()), addrPort(c.LocalAddr()))
}

// httpServer answers every request with the client address it saw.
func httpServer(t *testing.T, ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from=%s", r.RemoteAddr)
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
}

// echo sends one line over c and returns the reply line.
func echo(c net.Conn, msg string) (string, error) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, "%s\n", msg); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// httpGet does one HTTP/1.1 GET over a connection dialed from ns.
func (tp *topo) httpGet(ns, addr string) (string, error) {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, a string) (net.Conn, error) {
		return tp.Dial(ns, 0, nil, a, dialTimeout)
	}, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 15 * time.Second}
	resp, err := cl.Get("http://" + addr + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
