//go:build linux

package dataplane

import (
	"errors"
	"net/netip"
	"os"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// evPool is a loop's idle connections to one node pool.
type evPool struct {
	hp   *hostPool
	sa   unix.Sockaddr
	v6   bool
	idle []*evConn
}

func (l *h1loop) pool(hp *hostPool, addr string) *evPool {
	if p := l.pools[hp]; p != nil {
		return p
	}
	ap, _ := netip.ParseAddrPort(addr) // fastH1 checked it
	p := &evPool{hp: hp}
	if a := ap.Addr(); a.Is4() || a.Is4In6() {
		p.sa = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.Unmap().As4()}
	} else {
		p.sa, p.v6 = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}, true
	}
	l.pools[hp] = p
	return p
}

func (p *evPool) get(l *h1loop) *evConn {
	for n := len(p.idle); n > 0; n = len(p.idle) {
		uc := p.idle[n-1]
		p.idle = p.idle[:n-1]
		if uc.rd || uc.hup {
			l.closeUp(uc) // it said something while idle, or closed
			continue
		}
		uc.reused = true
		uc.deadline = 0
		uc.state = usSending
		return uc
	}
	return nil
}

func (p *evPool) put(l *h1loop, uc *evConn) {
	cfg := p.hp.cfg.Value()
	uc.owner, uc.state = nil, usIdle
	uc.nreq++
	if cfg.reqs > 0 && uc.nreq >= cfg.reqs { // keepalive_pool.requests
		l.closeUp(uc)
		return
	}
	if uc.rd {
		// The last read filled the buffer: make sure nothing follows.
		var b [1]byte
		if _, e := rawRead(uc.fd, b[:]); e != syscall.EAGAIN {
			l.closeUp(uc)
			return
		}
		uc.rd = false
	}
	// keepalive_pool.size is per process: each loop keeps its share.
	if n := len(l.d.h1.loops); len(p.idle) >= max((cfg.size+n-1)/n, 1) {
		l.closeUp(uc)
		return
	}
	if uc.rbuf != nil {
		l.putBuf(uc.rbuf)
		uc.rbuf, uc.rlo, uc.rhi = nil, 0, 0
	}
	p.idle = append(p.idle, uc)
	l.setDeadline(uc, cfg.idle)
}

func (p *evPool) remove(uc *evConn) {
	for i, v := range p.idle {
		if v == uc {
			p.idle = append(p.idle[:i], p.idle[i+1:]...)
			return
		}
	}
}

// dial opens a non-blocking connection to p's node.
func (l *h1loop) dial(p *evPool) (*evConn, error) {
	uc, err := l.dialSockaddr(p.sa, p.v6)
	if err != nil {
		return nil, err
	}
	uc.pool = p
	return uc, nil
}

// dialSockaddr opens a non-blocking connection to sa and registers it.
func (l *h1loop) dialSockaddr(sa unix.Sockaddr, v6 bool) (*evConn, error) {
	family := unix.AF_INET
	if v6 {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 15)
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 15)
	uc := &evConn{fd: fd, isUp: true, state: usSending, wr: true}
	err = unix.Connect(fd, sa)
	switch err {
	case nil:
	case unix.EINPROGRESS:
		uc.state, uc.wr = usConnecting, false
	default:
		unix.Close(fd)
		return nil, os.NewSyscallError("connect", err)
	}
	if !l.register(uc) {
		unix.Close(fd)
		return nil, errors.New("epoll_ctl failed")
	}
	return uc, nil
}

// h1LoopCount is the number of event loops a data plane starts.
func h1LoopCount() int { return runtime.GOMAXPROCS(0) }
