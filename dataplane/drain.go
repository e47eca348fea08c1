package dataplane

import (
	"net"
	"net/netip"
	"reflect"
	"sync"
	"sync/atomic"

	"github.com/valyala/fasthttp"
)

// Draining HTTP/1.1 connections of changed filter chains. A connection
// keeps the filter chain it was accepted with (listener.go). As Envoy
// does, when a listener update changes or removes that chain, or removes
// the listener, the connection is drained: its next response says
// Connection: close and the connection closes after it. Idle connections
// are left to the idle timeout. An HTTP/2 connection is told at once
// (watch): it sends GOAWAY and closes once its streams are done
// (h2drain.go).

// chainDrain is the drain state of a filter chain; the compiled versions
// of a chain unchanged by listener updates share one.
type chainDrain struct{ on atomic.Bool }

// connKey identifies a client connection by its addresses (as its
// wrappers report them, which they all pass through).
type connKey struct{ local, remote netip.AddrPort }

func connKeyOf(local, remote net.Addr) connKey {
	return connKey{addrPortOf(local), addrPortOf(remote)}
}

func addrPortOf(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort()
	}
	return netip.AddrPort{}
}

// drainSet tracks the HTTP connections served by filter chains.
type drainSet struct {
	// n counts the tracked connections whose chain drains: requests look
	// themselves up only while it is not zero.
	n     atomic.Int32
	mu    sync.Mutex
	conns map[connKey]*drainEntry
}

// drainEntry is a tracked connection; refs counts its trackers (the
// listener while it dispatches, then the event loop that took it over).
type drainEntry struct {
	dr   *chainDrain
	refs int
	// onDrain is called, in a goroutine of its own, when dr drains (an
	// HTTP/2 connection: watch); nil: none.
	onDrain func()
}

// track records that c is served by the chain of dr until the returned
// function is called.
func (s *drainSet) track(c net.Conn, dr *chainDrain) func() {
	k := connKeyOf(c.LocalAddr(), c.RemoteAddr())
	s.mu.Lock()
	if s.conns == nil {
		s.conns = map[connKey]*drainEntry{}
	}
	e := s.conns[k]
	if e == nil || e.dr != dr {
		if e != nil && e.dr.on.Load() {
			s.n.Add(-1)
		}
		e = &drainEntry{dr: dr}
		s.conns[k] = e
		if dr.on.Load() {
			s.n.Add(1)
		}
	}
	e.refs++
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		if e := s.conns[k]; e != nil && e.dr == dr {
			if e.refs--; e.refs == 0 {
				delete(s.conns, k)
				if dr.on.Load() {
					s.n.Add(-1)
				}
			}
		}
		s.mu.Unlock()
	}
}

// adopt tracks c once more for an event loop taking it over: its drain
// state (nil: not served by a filter chain) and the untrack function.
func (s *drainSet) adopt(c net.Conn) (*chainDrain, func()) {
	k := connKeyOf(c.LocalAddr(), c.RemoteAddr())
	s.mu.Lock()
	e := s.conns[k]
	s.mu.Unlock()
	if e == nil {
		return nil, nil
	}
	return e.dr, s.track(c, e.dr)
}

// watch tracks c once more, as adopt, for a connection told when its
// chain drains: f is called then, in a goroutine of its own (at once if
// the chain drains already), until the returned function is called. It
// returns nil when c is not served by a filter chain.
func (s *drainSet) watch(c net.Conn, f func()) func() {
	dr, untrack := s.adopt(c)
	if dr == nil {
		return nil
	}
	k := connKeyOf(c.LocalAddr(), c.RemoteAddr())
	s.mu.Lock()
	e := s.conns[k] // adopt's: dr's
	e.onDrain = f
	on := dr.on.Load() // set under s.mu: either drain or watch calls f
	s.mu.Unlock()
	if on {
		go f()
	}
	return func() {
		s.mu.Lock()
		if s.conns[k] == e {
			e.onDrain = nil
		}
		s.mu.Unlock()
		untrack()
	}
}

// drain marks dr draining.
func (s *drainSet) drain(dr *chainDrain) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if dr.on.Swap(true) {
		return
	}
	for _, e := range s.conns {
		if e.dr == dr {
			s.n.Add(1)
			if e.onDrain != nil {
				go e.onDrain()
			}
		}
	}
}

// draining reports whether the connection of fc is to be drained.
func (s *drainSet) draining(fc *fasthttp.RequestCtx) bool {
	if s.n.Load() == 0 {
		return false
	}
	k := connKeyOf(fc.LocalAddr(), fc.RemoteAddr())
	s.mu.Lock()
	e := s.conns[k]
	s.mu.Unlock()
	return e != nil && e.dr.on.Load()
}

// drainChains hands the drain state of the chains of old that next keeps
// unchanged over to next, and drains the others; next nil drains all.
func (d *Dataplane) drainChains(old, next *chainTable) {
	if old == nil {
		return
	}
	for _, o := range old.all() {
		kept := false
		if next != nil {
			for _, n := range next.all() {
				if reflect.DeepEqual(o.fc, n.fc) {
					n.drain, kept = o.drain, true
				}
			}
		}
		if !kept {
			d.servers.drains.drain(o.drain)
		}
	}
}

// all returns the chains of ct, the default one included.
func (ct *chainTable) all() []*filterChain {
	if ct.def == nil {
		return ct.chains
	}
	return append(ct.chains[:len(ct.chains):len(ct.chains)], ct.def)
}
