//go:build linux

package dataplane

import (
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/meshagent/meshagent/dataplane/balancer"
	"github.com/meshagent/meshagent/dataplane/health"
)

// TCP stream routes on the event loops. A goroutine pair per connection
// pays a park and a ready in the scheduler for every message each way;
// request/response traffic (small messages) is relayed more cheaply the
// way nginx's stream module does it: the client and upstream sockets of a
// pair sit in a loop's epoll set, and each direction is one read and one
// write through a buffer taken from the loop for as long as it holds
// bytes. A direction whose writes are pending is not read (backpressure),
// an EOF becomes shutdown(SHUT_WR) on the other socket once its bytes are
// written, and an error closes both.
//
// A read that fills the buffer marks a bulk transfer, as relay decides:
// the pair is handed, with the bytes read and not yet written, to
// goroutines that splice (relayHandedOver), and stays there.

// tcpPair is a client connection and its upstream connection.
type tcpPair struct {
	c, u    *evConn // client; upstream (nil until dialled)
	up      *upstream
	att     balancer.Attempt
	ni      int
	picked  bool // ni is picked: released (picker.Done) when the pair ends
	attempt int
	t0      time.Time
	lastErr error
	pre     []byte  // sniffed bytes, until the loop takes the pair
	eof     [2]bool // read EOF: [0] from the client, [1] from the upstream
	shut    [2]bool // shutdown(SHUT_WR) done: [0] on the upstream, [1] on the client
}

// fastTCP reports whether the event loops can relay TCP connections to u:
// plaintext, IP-literal nodes.
func (u *upstream) fastTCP() bool {
	switch u.fastT.Load() {
	case 1:
		return true
	case 2:
		return false
	}
	ok := !u.tls && u.od == nil
	for _, n := range u.nodes {
		if _, err := netip.ParseAddrPort(n.addr); err != nil {
			ok = false
		}
	}
	if ok {
		u.fastT.Store(1)
	} else {
		u.fastT.Store(2)
	}
	return ok
}

// adoptTCP takes over the stream connection c to be relayed to up on an
// event loop, and reports whether it did; false leaves c untouched. Only
// plain TCP connections qualify (not TLS-wrapped ones), and not while the
// kernel relay (Options.TCPAccel) is asked for: relayUpgrading runs those.
func (ls *h1loops) adoptTCP(c net.Conn, up *upstream) bool {
	if ls == nil || len(ls.loops) == 0 || ls.d.opts.TCPAccel || !up.fastTCP() {
		return false
	}
	var pre []byte
	if pc, ok := c.(*peekConn); ok {
		pre, c = pc.buf, pc.Conn
	}
	tc, fd, ok := dupTCPFD(c)
	if !ok {
		return false
	}
	p := &tcpPair{up: up}
	p.c = &evConn{fd: fd, pair: p, wr: true}
	if len(pre) > 0 {
		p.pre = append([]byte(nil), pre...)
	}
	_ = tc.Close() // the loop's duplicate keeps the socket
	l := ls.loops[int(ls.next.Add(1))%len(ls.loops)]
	ls.d.stats.ActiveConns.Add(1)
	ls.d.stats.TCPLoopConns.Add(1)
	if !l.push(p.c) {
		ls.d.stats.ActiveConns.Add(-1)
		_ = unix.Close(fd)
	}
	return true
}

// startPair begins a pair whose client socket was just registered.
func (l *h1loop) startPair(p *tcpPair) {
	c := p.c
	if len(p.pre) > 0 {
		if len(p.pre) <= evBufSize {
			c.rbuf = l.getBuf()
			c.rhi = copy(c.rbuf, p.pre)
		} else {
			c.rbuf, c.rhi = p.pre, len(p.pre)
		}
		p.pre = nil
	}
	c.rd = true // bytes may have arrived since the accept
	p.att.Reset("", p.up.hf)
	l.pairAttempt(p)
}

// pairAttempt picks a node and connects to it, as proxyTCP does: other
// nodes are tried on connect errors, up to the upstream's retries.
func (l *h1loop) pairAttempt(p *tcpPair) {
	up := p.up
	for ; p.attempt <= up.retries; p.attempt++ {
		ni, ok := up.picker.Pick(&p.att)
		if !ok {
			break
		}
		p.ni, p.picked = ni, true
		p.t0 = up.startTry()
		uc, err := l.dialNode(up.nodes[ni].addr)
		if err != nil {
			l.pairConnectFailed(p, err)
			continue
		}
		uc.pair, p.u = p, uc
		if uc.state == usConnecting {
			l.setDeadline(uc, up.to.connect)
			return
		}
		l.pairConnected(p)
		return
	}
	l.d.log.Warn("dataplane: tcp upstream unreachable", "upstream", up.id, "err", p.lastErr)
	l.closePair(p)
}

// dialNode starts a non-blocking connection to addr (an IP and port).
func (l *h1loop) dialNode(addr string) (*evConn, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, err
	}
	if a := ap.Addr(); a.Is4() || a.Is4In6() {
		return l.dialSockaddr(&unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.Unmap().As4()}, false)
	}
	return l.dialSockaddr(&unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}, true)
}

// pairConnectFailed records a failed connect of the current attempt.
func (l *h1loop) pairConnectFailed(p *tcpPair, err error) {
	if uc := p.u; uc != nil {
		p.u = nil
		l.unregister(uc)
		unix.Close(uc.fd)
	}
	p.lastErr = err
	p.up.done(p.ni, p.t0, 0, err)
	p.picked = false
	l.d.stats.UpstreamErrors.Add(1)
}

// pairConnected starts relaying once the upstream connection is up.
func (l *h1loop) pairConnected(p *tcpPair) {
	uc := p.u
	uc.state, uc.deadline = usSending, 0
	if p.up.checker != nil {
		p.up.checker.Report(p.ni, 0, health.OutcomeSuccess)
	}
	l.pairRun(p)
}

// pairExpired handles the connect timeout.
func (l *h1loop) pairExpired(p *tcpPair) {
	if p.u == nil || p.u.state != usConnecting {
		return
	}
	l.pairConnectFailed(p, &connectError{errConnectTimeout})
	p.attempt++
	l.pairAttempt(p)
}

// pairEvent continues a pair after an event on either socket.
func (l *h1loop) pairEvent(p *tcpPair) {
	uc := p.u
	if uc == nil {
		return
	}
	if uc.state == usConnecting {
		if !uc.wr {
			return // the client waits for the connect
		}
		if soerr, err := unix.GetsockoptInt(uc.fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || soerr != 0 {
			if err == nil {
				err = syscall.Errno(soerr)
			}
			l.pairConnectFailed(p, &connectError{os.NewSyscallError("connect", err)})
			p.attempt++
			l.pairAttempt(p)
			return
		}
		l.pairConnected(p)
		return
	}
	l.pairRun(p)
}

// Outcomes of pump.
const (
	pumpWait  = iota // blocked, or the direction is done
	pumpError        // a read or write failed: close the pair
	pumpBulk         // a read filled the buffer: hand the pair over
)

// pairRun moves what both directions can move now.
func (l *h1loop) pairRun(p *tcpPair) {
	r0 := l.pump(p, 0)
	r1 := pumpWait
	if r0 == pumpWait {
		r1 = l.pump(p, 1)
	}
	switch {
	case r0 == pumpError || r1 == pumpError:
		l.closePair(p)
	case r0 == pumpBulk || r1 == pumpBulk:
		l.handOver(p)
	case p.shut[0] && p.shut[1]:
		l.closePair(p)
	}
}

// pump copies direction i (0: client to upstream, 1: back) until it
// blocks: writes the buffered bytes, then reads more. The buffer goes
// back to the loop whenever it is empty.
func (l *h1loop) pump(p *tcpPair, i int) int {
	src, dst := p.c, p.u
	if i == 1 {
		src, dst = dst, src
	}
	for {
		if src.rhi > src.rlo {
			if !dst.wr {
				return pumpWait // EPOLLOUT resumes; src is not read meanwhile
			}
			n, e := rawWritev(dst.fd, src.rbuf[src.rlo:src.rhi], nil)
			switch {
			case e == syscall.EAGAIN:
				dst.wr = false
				return pumpWait
			case e != 0:
				return pumpError
			}
			src.rlo += n
			continue
		}
		if src.rbuf != nil {
			l.putBuf(src.rbuf)
			src.rbuf, src.rlo, src.rhi = nil, 0, 0
		}
		if p.eof[i] {
			if !p.shut[i] {
				p.shut[i] = true
				_ = unix.Shutdown(dst.fd, unix.SHUT_WR)
			}
			return pumpWait
		}
		if !src.rd {
			return pumpWait
		}
		buf := l.getBuf()
		n, e := rawRead(src.fd, buf)
		switch {
		case e == syscall.EAGAIN:
			src.rd = false
			l.putBuf(buf)
			return pumpWait
		case e != 0:
			l.putBuf(buf)
			return pumpError
		case n == 0:
			p.eof[i] = true
			l.putBuf(buf)
			continue
		}
		src.rbuf, src.rlo, src.rhi = buf, 0, n
		if n == len(buf) {
			return pumpBulk
		}
		if !src.hup {
			src.rd = false // a short read drained the socket: the next edge says more
		}
	}
}

// closePair closes both sockets and releases the node.
func (l *h1loop) closePair(p *tcpPair) {
	if p.c.closed {
		return
	}
	for _, s := range [2]*evConn{p.c, p.u} {
		if s != nil && !s.closed {
			l.unregister(s)
			unix.Close(s.fd)
		}
	}
	if p.picked {
		p.picked = false
		p.up.picker.Done(p.ni, 0)
	}
	l.d.stats.ActiveConns.Add(-1)
}

// handOver moves a pair turned bulk to goroutines (relayHandedOver),
// with the bytes read and not yet written.
func (l *h1loop) handOver(p *tcpPair) {
	var pend [2][]byte
	var conns [2]net.Conn
	var err error
	for i, s := range [2]*evConn{p.c, p.u} {
		if s.rhi > s.rlo {
			pend[i] = s.rbuf[s.rlo:s.rhi] // the buffer leaves the loop with them
			s.rbuf = nil
		}
		_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, s.fd, nil)
		l.unregister(s)
		f := os.NewFile(uintptr(s.fd), "")
		nc, ferr := net.FileConn(f)
		f.Close()
		conns[i] = nc
		if ferr != nil {
			err = ferr
		}
	}
	picked := p.picked
	p.picked = false
	if err != nil {
		for _, nc := range conns {
			if nc != nil {
				nc.Close()
			}
		}
		if picked {
			p.up.picker.Done(p.ni, 0)
		}
		l.d.stats.ActiveConns.Add(-1)
		return
	}
	l.d.stats.TCPHandOvers.Add(1)
	go l.d.relayHandedOver(conns[0], conns[1], pend, p.eof, p.shut, p.up, p.ni, picked)
}

// relayHandedOver finishes a pair the event loop handed over: each
// direction writes its pending bytes, then copies as pipe does (splicing
// between the two TCP connections) unless its source had ended.
func (d *Dataplane) relayHandedOver(c, u net.Conn, pend [2][]byte, eof, shut [2]bool, up *upstream, ni int, picked bool) {
	defer d.stats.ActiveConns.Add(-1)
	if picked {
		defer up.picker.Done(ni, 0)
	}
	if !d.track(c) {
		c.Close()
		u.Close()
		return
	}
	defer d.untrack(c)
	done := make(chan struct{}, 1)
	cp := func(i int, dst, src net.Conn) {
		ok := true
		if len(pend[i]) > 0 {
			_, err := dst.Write(pend[i])
			ok = err == nil
		}
		if ok && !eof[i] {
			relay(dst, src)
		}
		if !shut[i] {
			if cw, ok := dst.(interface{ CloseWrite() error }); ok {
				_ = cw.CloseWrite()
			}
		}
	}
	go func() {
		cp(1, c, u)
		done <- struct{}{}
	}()
	cp(0, u, c)
	<-done
	c.Close()
	u.Close()
}
