package redirect

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/meshagent/meshagent/redirect/netnstest"
)

// listenLoopback listens on 127.0.0.1 and closes at cleanup.
func listenLoopback(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// servePT accepts on ln and hands every connection to pt, reporting each
// Serve result on the returned channel.
func servePT(ln net.Listener, pt *PassThrough) <-chan error {
	errc := make(chan error, 16)
	netnstest.Serve(ln, func(c net.Conn) { errc <- pt.Serve(context.Background(), c) })
	return errc
}

func plainDial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

func TestPassThroughForward(t *testing.T) {
	backend := listenLoopback(t)
	netnstest.Serve(backend, func(c net.Conn) { // echo until EOF, then close: exercises half-close
		_, _ = io.Copy(c, c)
		c.Close()
	})
	dst := backend.Addr().(*net.TCPAddr).AddrPort()
	proxy := listenLoopback(t)
	errc := servePT(proxy, &PassThrough{
		OriginalDst: func(net.Conn) (netip.AddrPort, error) { return dst, nil },
		Dial:        plainDial,
	})
	c, err := net.Dial("tcp4", proxy.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	payload := bytes.Repeat([]byte("meshagent "), 100_000)
	go func() {
		_, _ = c.Write(payload)
		_ = c.(*net.TCPConn).CloseWrite()
	}()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("echo through pass-through: %d bytes of %d, %v", len(got), len(payload), err)
	}
	c.Close()
	if err := <-errc; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

func TestPassThroughRefuseAndLoop(t *testing.T) {
	for _, tc := range []struct {
		name string
		pt   func(proxy netip.AddrPort) *PassThrough
		want error
	}{
		{"refuse", func(netip.AddrPort) *PassThrough { return &PassThrough{Policy: PassThroughRefuse} }, ErrRefused},
		{"loop", func(proxy netip.AddrPort) *PassThrough {
			return &PassThrough{
				ListenPorts: []uint16{proxy.Port()},
				OriginalDst: func(c net.Conn) (netip.AddrPort, error) { return addrPort(c.LocalAddr()), nil },
				Dial:        plainDial,
			}
		}, ErrLoop},
		{"no original destination", func(netip.AddrPort) *PassThrough {
			return &PassThrough{OriginalDst: func(net.Conn) (netip.AddrPort, error) { return netip.AddrPort{}, ErrNoOriginalDst }}
		}, ErrNoOriginalDst},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proxy := listenLoopback(t)
			errc := servePT(proxy, tc.pt(proxy.Addr().(*net.TCPAddr).AddrPort()))
			c, err := net.Dial("tcp4", proxy.Addr().String())
			if err == nil {
				defer c.Close()
			}
			if err := <-errc; !errors.Is(err, tc.want) {
				t.Fatalf("Serve: %v, want %v", err, tc.want)
			}
			if err == nil { // the RST may also arrive before connect returns
				_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
				_, err = c.Read(make([]byte, 1))
			}
			if !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("client read %v, want connection reset", err)
			}
		})
	}
}

func TestOriginalDstNotTCP(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if _, err := OriginalDst(a); !errors.Is(err, ErrNoOriginalDst) {
		t.Fatalf("OriginalDst(pipe) = %v", err)
	}
}

func TestStringers(t *testing.T) {
	for _, s := range []interface{ String() string }{
		InboundRedirect, InboundTProxy, InboundNone, InboundMode(9),
		ShutdownKeep, ShutdownRemove, ShutdownMode(9),
		IPv4, IPv6, Family(9),
		PassThroughForward, PassThroughRefuse, PassThroughPolicy(9),
		GateHolding, GateReleased, GateTimedOut, GateAbandoned, GateState(9),
	} {
		if s.String() == "" {
			t.Errorf("%#v has an empty String()", s)
		}
	}
	if m, err := ParseInboundMode("TPROXY"); err != nil || m != InboundTProxy {
		t.Fatal(m, err)
	}
}
