//go:build !linux

package sockmap

import (
	"errors"
	"net"
)

// ErrBroken is returned by Splice when the pair could be neither relayed
// in the kernel nor handed back.
var ErrBroken = errors.New("sockmap: pair half set up; connections closed")

// Relay relays pairs of TCP sockets in the kernel (Linux only).
type Relay struct{}

// New fails: sockmap is Linux only.
func New() (*Relay, error) { return nil, errors.ErrUnsupported }

// Close does nothing.
func (r *Relay) Close() error { return nil }

// Splice fails; the caller relays a and b itself.
func (r *Relay) Splice(a, b *net.TCPConn) error { return errors.ErrUnsupported }
