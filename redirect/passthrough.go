package redirect

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"
)

// PassThroughPolicy says what a PassThrough does with a connection.
type PassThroughPolicy int

const (
	// PassThroughForward dials the original destination (with the bypass
	// mark, so it is not captured again) and splices both ways.
	PassThroughForward PassThroughPolicy = iota
	// PassThroughRefuse resets the connection (RST, not FIN) so the client
	// fails at once instead of talking to nothing.
	PassThroughRefuse
)

// String returns "forward" or "refuse".
func (p PassThroughPolicy) String() string {
	switch p {
	case PassThroughForward:
		return "forward"
	case PassThroughRefuse:
		return "refuse"
	}
	return "PassThroughPolicy(" + strconv.Itoa(int(p)) + ")"
}

// PassThrough handles captured connections nothing else matched. The zero
// value forwards with DefaultBypassMark and the package's OriginalDst. A
// PassThrough is safe for concurrent use once configured.
type PassThrough struct {
	// Policy selects forwarding or refusing.
	Policy PassThroughPolicy
	// Mark is the SO_MARK for upstream sockets; zero means
	// DefaultBypassMark. It must equal the Config's BypassMark.
	Mark uint32
	// DialTimeout bounds the upstream dial; zero means 10 seconds.
	DialTimeout time.Duration
	// OriginalDst recovers the destination; nil means OriginalDst.
	OriginalDst OriginalDstFunc
	// ListenPorts are the ports the proxy listens on; a connection whose
	// original destination is its own local address on one of them was
	// made to the proxy directly and is refused with ErrLoop. Nil means
	// DefaultOutboundPort and DefaultInboundPort.
	ListenPorts []uint16
	// Dial, when set, replaces the marked dialer (tests, custom sockets).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Serve handles one captured connection and closes it before returning.
// It returns nil after a forwarded connection ends normally; ErrRefused
// when the policy refuses; ErrLoop when the original destination is the
// proxy itself (a direct connection to a proxy port, which would forward
// to itself forever); or the dial error.
func (p *PassThrough) Serve(ctx context.Context, c net.Conn) error {
	defer c.Close()
	if p.Policy == PassThroughRefuse {
		reset(c)
		return ErrRefused
	}
	od := p.OriginalDst
	if od == nil {
		od = OriginalDst
	}
	dst, err := od(c)
	if err != nil {
		reset(c)
		return err
	}
	if la, ok := c.LocalAddr().(*net.TCPAddr); ok {
		local := la.AddrPort()
		ports := p.ListenPorts
		if ports == nil {
			ports = []uint16{DefaultOutboundPort, DefaultInboundPort}
		}
		if local.Addr().Unmap() == dst.Addr() && slices.Contains(ports, dst.Port()) {
			reset(c)
			return fmt.Errorf("%w: %v", ErrLoop, dst)
		}
	}
	timeout := p.DialTimeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	dial := p.Dial
	if dial == nil {
		mark := p.Mark
		if mark == 0 {
			mark = DefaultBypassMark
		}
		dial = MarkedDialer(mark).DialContext
	}
	up, err := dial(dctx, "tcp", dst.String())
	if err != nil {
		reset(c)
		return fmt.Errorf("redirect: pass-through dial %v: %w", dst, err)
	}
	defer up.Close()
	return Splice(c, up)
}

// Splice copies a to b and b to a until both directions end, half-closing
// each side's write when its source reaches EOF, and returns the first
// error other than EOF or a closed connection. Between two *net.TCPConn
// the copies use splice(2).
func Splice(a, b net.Conn) error {
	var wg sync.WaitGroup
	errs := make([]error, 2)
	cp := func(i int, dst, src net.Conn) {
		defer wg.Done()
		_, err := io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else {
			_ = dst.Close()
		}
		if err != nil && !errors.Is(err, net.ErrClosed) {
			errs[i] = err
		}
	}
	wg.Add(2)
	go cp(0, b, a)
	go cp(1, a, b)
	wg.Wait()
	return errors.Join(errs...)
}

// reset closes c with an RST where possible.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}
