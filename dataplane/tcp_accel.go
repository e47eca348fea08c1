package dataplane

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshagent/meshagent/dataplane/sockmap"
)

// tcpAccel is the kernel TCP relay (sockmap), loaded on first use when
// Options.TCPAccel is set.
type tcpAccel struct {
	once   sync.Once
	relay  *sockmap.Relay // nil: off or unavailable
	mu     sync.Mutex     // guards closed, and relay against Close
	closed bool
	pairs  atomic.Int64 // pairs relayed in the kernel
}

// kernelRelay returns the kernel relay, or nil to relay in user space.
// The first call loads it; a failure (not root, old kernel) is logged once.
func (d *Dataplane) kernelRelay() *sockmap.Relay {
	a := &d.accel
	a.once.Do(func() {
		if !d.opts.TCPAccel {
			return
		}
		r, err := sockmap.New()
		if err != nil {
			d.log.Info("dataplane: kernel TCP relay (sockmap) unavailable, splicing in user space", "err", err)
			return
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.closed {
			r.Close()
			return
		}
		a.relay = r
	})
	return a.relay
}

// closeTCPAccel ends the pairs relayed in the kernel and unloads the relay.
func (d *Dataplane) closeTCPAccel() {
	a := &d.accel
	a.mu.Lock()
	a.closed = true
	r := a.relay
	a.mu.Unlock()
	if r != nil {
		r.Close()
	}
}

// splice writes the bytes a peekConn buffered, then relays the raw
// connections: in the kernel (sockmap) when both are TCP and it is
// available, else with pipe, which splices through a pipe.
func (d *Dataplane) splice(c net.Conn, uc net.Conn) {
	if pc, ok := c.(*peekConn); ok {
		if len(pc.buf) > 0 {
			if _, err := uc.Write(pc.buf); err != nil {
				c.Close()
				uc.Close()
				return
			}
			pc.buf = nil
		}
		c = pc.Conn
	}
	if r := d.kernelRelay(); r != nil {
		a, aok := c.(*net.TCPConn)
		b, bok := uc.(*net.TCPConn)
		if aok && bok {
			d.relayUpgrading(r, a, b)
			return
		}
	}
	pipe(c, uc)
}

// relayUpgrading relays a and b like pipe, in user space, until a read
// fills the buffer (a bulk transfer) while both directions are open; then
// it stops both copies between two writes and hands the pair to the kernel
// relay. Request/response exchanges stay in user space: each redirect in
// the kernel goes through a workqueue, which costs them latency.
func (d *Dataplane) relayUpgrading(r *sockmap.Relay, a, b *net.TCPConn) {
	var (
		mu      sync.Mutex
		upgrade bool // both copies stop at their next read
		ended   int  // copies that ended (EOF or error)
	)
	stopped := make(chan [2]any, 2) // {dst, src} of a copy stopped for the upgrade, or nil
	cp := func(dst, src *net.TCPConn) {
		bp := relayBufPool.Get().(*[]byte)
		defer relayBufPool.Put(bp)
		buf := *bp
		for {
			n, err := src.Read(buf)
			if n > 0 {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					err = werr
				}
			}
			if err != nil {
				mu.Lock()
				up := upgrade && errors.Is(err, os.ErrDeadlineExceeded)
				if !up {
					ended++
				}
				mu.Unlock()
				if up {
					stopped <- [2]any{dst, src}
					return
				}
				_ = dst.CloseWrite()
				stopped <- [2]any{}
				return
			}
			if n == len(buf) {
				mu.Lock()
				if !upgrade && ended == 0 {
					upgrade = true
					past := time.Unix(1, 0)
					_ = a.SetReadDeadline(past)
					_ = b.SetReadDeadline(past)
				}
				mu.Unlock()
			}
		}
	}
	go cp(a, b)
	go cp(b, a)
	var left [][2]any
	for range 2 {
		if s := <-stopped; s[0] != nil {
			left = append(left, s)
		}
	}
	_ = a.SetReadDeadline(time.Time{})
	_ = b.SetReadDeadline(time.Time{})
	if len(left) == 2 { // both stopped between writes, both open
		d.accel.pairs.Add(1)
		err := r.Splice(a, b)
		if err == nil {
			return
		}
		if errors.Is(err, sockmap.ErrBroken) {
			d.log.Warn("dataplane: kernel TCP relay failed", "err", err)
			return
		}
		d.accel.pairs.Add(-1)
		d.log.Debug("dataplane: kernel TCP relay refused a pair, splicing in user space", "err", err)
		pipe(a, b)
		return
	}
	// One direction ended while the other stopped: finish it here.
	for _, s := range left {
		dst, src := s[0].(*net.TCPConn), s[1].(*net.TCPConn)
		relay(dst, src)
		_ = dst.CloseWrite()
	}
	a.Close()
	b.Close()
}
