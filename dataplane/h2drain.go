package dataplane

import (
	"time"

	"golang.org/x/net/http2"
)

// Draining HTTP/2 connections (drain.go), as Envoy does: when the filter
// chain of a connection changes or goes, the server sends GOAWAY (NO_ERROR)
// with the last stream id it took, refuses the streams the client opens
// after it, lets the open ones finish and then closes the connection. The
// client, told by the GOAWAY, sends its next requests on a new
// connection, which takes the new chain.

const (
	// h2DrainTimeout bounds the streams of a draining connection: then
	// the connection closes, failing those still open. Istio's default
	// drain duration (--drain-time-s 45).
	h2DrainTimeout = 45 * time.Second
	// h2GoAwayClose is the time a drained connection without streams is
	// left to its client to close first (a client that sees the GOAWAY
	// with no stream open closes), as http2.Server's goAwayTimeout: the
	// server closing a connection with unread bytes would reset it.
	h2GoAwayClose = time.Second
)

// drainTimeout is the drain timeout of HTTP/2 connections.
func (s *servers) drainTimeout() time.Duration {
	if s.h2drain > 0 {
		return s.h2drain
	}
	return h2DrainTimeout
}

// drain starts draining sc: GOAWAY with the last stream id taken, new
// streams refused (onHeaders), the connection closed when its streams
// are done (doneLocked) or at the drain timeout. Any goroutine; once.
func (sc *h2srvConn) drain() {
	sc.mu.Lock()
	if sc.closed || sc.goaway {
		sc.mu.Unlock()
		return
	}
	sc.goaway = true
	last := sc.maxID // streams above it are refused from now on
	sc.drainTimer = time.AfterFunc(sc.d.servers.drainTimeout(), sc.closeFlushed)
	sc.doneLocked()
	sc.mu.Unlock()
	sc.d.stats.H2Drained.Add(1)
	sc.wmu.Lock()
	_ = sc.fr.WriteGoAway(last, http2.ErrCodeNo, nil)
	sc.wmu.Unlock()
	sc.flush()
}

// doneLocked closes a draining connection whose streams are done, after
// h2GoAwayClose. Called with sc.mu held, when a stream goes.
func (sc *h2srvConn) doneLocked() {
	if sc.goaway && len(sc.streams) == 0 && sc.closeTimer == nil && !sc.closed {
		sc.closeTimer = time.AfterFunc(h2GoAwayClose, sc.closeFlushed)
	}
}

// stopDrainLocked stops the drain timers of a connection that ends.
func (sc *h2srvConn) stopDrainLocked() {
	if sc.drainTimer != nil {
		sc.drainTimer.Stop()
	}
	if sc.closeTimer != nil {
		sc.closeTimer.Stop()
	}
}
