package dataplane

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"

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
		}
	}
	pipe(c, uc)
}
