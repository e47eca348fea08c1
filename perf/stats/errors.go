package stats

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
)

// ErrorKind classifies a failed request.
type ErrorKind int

// Error kinds. Every failed request counts under exactly one kind.
const (
	// ErrOther is any failure not classified below.
	ErrOther ErrorKind = iota
	// ErrConnect is a failure to establish the connection (refused, dial
	// timeout, unreachable).
	ErrConnect
	// ErrTimeout is a request that did not complete within its deadline.
	ErrTimeout
	// ErrStatus is a response with an unexpected status (HTTP != 200,
	// gRPC != OK) or an unexpected body.
	ErrStatus
	// ErrReset is a connection closed or reset by the peer mid-request.
	ErrReset
	// ErrBacklog is an open-loop request that was never sent: the target
	// fell so far behind the schedule that the run gave up on it.
	ErrBacklog
	numErrorKinds
)

// ErrorKinds lists every kind in order, for reports.
var ErrorKinds = []ErrorKind{ErrConnect, ErrTimeout, ErrStatus, ErrReset, ErrBacklog, ErrOther}

// String returns the kind's report name.
func (k ErrorKind) String() string {
	switch k {
	case ErrConnect:
		return "connect"
	case ErrTimeout:
		return "timeout"
	case ErrStatus:
		return "status"
	case ErrReset:
		return "reset"
	case ErrBacklog:
		return "backlog"
	case ErrOther:
		return "other"
	}
	return "unknown"
}

// KindError is an error already classified by a load generator.
type KindError struct {
	Kind ErrorKind
	Err  error
}

// Error implements error.
func (e *KindError) Error() string { return e.Kind.String() + ": " + e.Err.Error() }

// Unwrap returns the underlying error.
func (e *KindError) Unwrap() error { return e.Err }

// Classify maps an error to its kind. A *KindError in the chain wins;
// otherwise refused/unreachable is connect, deadlines are timeout, and
// EOF/reset/broken pipe are reset.
func Classify(err error) ErrorKind {
	var ke *KindError
	if errors.As(err, &ke) {
		return ke.Kind
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EADDRNOTAVAIL):
		return ErrConnect
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return ErrTimeout
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, net.ErrClosed):
		return ErrReset
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ErrTimeout
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return ErrConnect
	}
	return ErrOther
}

// ErrorCounts counts failures per kind.
type ErrorCounts [numErrorKinds]int64

// Add counts one failure of kind k.
func (c *ErrorCounts) Add(k ErrorKind) { c[k]++ }

// Merge adds o into c.
func (c *ErrorCounts) Merge(o ErrorCounts) {
	for i := range c {
		c[i] += o[i]
	}
}

// Total is the number of failures of any kind.
func (c *ErrorCounts) Total() int64 {
	var t int64
	for _, v := range c {
		t += v
	}
	return t
}

// Map returns the non-zero counts keyed by kind name, for JSON.
func (c *ErrorCounts) Map() map[string]int64 {
	m := map[string]int64{}
	for _, k := range ErrorKinds {
		if c[k] > 0 {
			m[k.String()] = c[k]
		}
	}
	return m
}
