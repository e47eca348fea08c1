package redirect

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"

	"github.com/meshagent/meshagent/redirect/netnstest"
)

// BenchmarkRender measures turning a Config into rules (done once per
// install; here to keep it cheap and allocation-bounded).
func BenchmarkRender(b *testing.B) {
	cfg := DefaultConfig()
	cfg.InboundMode = InboundTProxy
	cfg.Gate = true
	cfg.ExcludeOutboundPorts = []uint16{22, 15020}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Render(cfg); err != nil {
			b.Fatal(err)
		}
	}
}

// benchTopo sets up the namespaces with capture installed, an echo server
// in the server namespace and the test proxy in the app namespace.
func benchTopo(b *testing.B) (*topo, *testProxy) {
	tp := newTopo(b)
	echoServer(tp.Listen(tp.Srv, "tcp", ":9000"))
	mustInstall(b, tp, DefaultConfig())
	p := &testProxy{t: b}
	p.serve(tp, "outbound", tp.Listen(tp.App, "tcp", ":15001"))
	return tp, p
}

// BenchmarkOriginalDst measures SO_ORIGINAL_DST on a REDIRECTed connection
// (once per accepted connection on the data plane's hot path).
func BenchmarkOriginalDst(b *testing.B) {
	tp := newTopo(b)
	mustInstall(b, tp, DefaultConfig())
	ln := tp.Listen(tp.App, "tcp", ":15001")
	echoServer(tp.Listen(tp.Srv, "tcp", ":9000"))
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	c, err := tp.Dial(tp.App, 0, nil, srvIP4+":9000", dialTimeout)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	sc := <-accepted
	defer sc.Close()
	want := netip.MustParseAddrPort(srvIP4 + ":9000")
	b.ReportAllocs()
	for b.Loop() {
		got, err := OriginalDst(sc)
		if err != nil || got != want {
			b.Fatalf("%v %v", got, err)
		}
	}
}

// BenchmarkConnectEcho measures one TCP connect plus one request/response
// line from the app namespace to the server namespace: direct (the socket
// carries the bypass mark, so it is not captured) against captured
// (REDIRECT to the test proxy, OriginalDst, marked dial, splice).
func BenchmarkConnectEcho(b *testing.B) {
	for _, mode := range []string{"direct", "captured"} {
		b.Run(mode, func(b *testing.B) {
			tp, p := benchTopo(b)
			d := &net.Dialer{}
			if mode == "direct" {
				d = MarkedDialer(DefaultBypassMark)
			}
			b.ReportAllocs()
			var berr error
			tp.In(tp.App, 0, func() {
				for b.Loop() {
					c, err := d.DialContext(context.Background(), "tcp", srvIP4+":9000")
					if err != nil {
						berr = err
						return
					}
					fmt.Fprint(c, "x\n")
					if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
						berr = err
					}
					c.Close()
					if berr != nil {
						return
					}
				}
			})
			if berr != nil {
				b.Fatal(berr)
			}
			if captured := p.count() > 0; captured != (mode == "captured") {
				b.Fatalf("%s: proxy saw %d connections", mode, p.count())
			}
		})
	}
}

// BenchmarkSplice measures PassThrough's copy loop on loopback (splice(2)
// between the two TCP sockets).
func BenchmarkSplice(b *testing.B) {
	sink := listenLoopback(b)
	netnstest.Serve(sink, func(c net.Conn) { _, _ = io.Copy(io.Discard, c); c.Close() })
	dst := sink.Addr().(*net.TCPAddr).AddrPort()
	proxy := listenLoopback(b)
	servePT(proxy, &PassThrough{OriginalDst: func(net.Conn) (netip.AddrPort, error) { return dst, nil }, Dial: plainDial})
	c, err := net.Dial("tcp4", proxy.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 256<<10)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
}
