package dataplane

import (
	"context"
	"sync"
	"time"
)

// h2srvCtx is the context of a request of the HTTP/2 server: it is
// cancelled when its stream is reset or its handler returned. It is
// embedded in the stream (no allocation of its own), makes its Done
// channel on demand only, and takes the h2 client stream forwarding the
// request directly (setAbort), with no context.AfterFunc. Its parent is
// never cancelled (newRequest checks).
type h2srvCtx struct {
	parent context.Context

	mu       sync.Mutex
	done     chan struct{}
	err      error
	abort    *h2Stream // aborted at cancel
	funcs    []*h2srvAfter
	deadline time.Time   // set by setTimeout (grpc-timeout)
	timer    *time.Timer // expires c at deadline
}

type h2srvAfter struct{ f func() }

func (c *h2srvCtx) Deadline() (time.Time, bool) {
	c.mu.Lock()
	d := c.deadline
	c.mu.Unlock()
	if !d.IsZero() {
		return d, true
	}
	return c.parent.Deadline()
}

func (c *h2srvCtx) Value(key any) any { return c.parent.Value(key) }

// setTimeout makes c expire (Err: context.DeadlineExceeded) after d, as
// context.WithTimeout(c, d) would, without a derived context: the h2
// client keeps its direct abort (setAbort), and a request costs one timer
// instead of a timer context, a cancel context and an AfterFunc record.
// The parent has no deadline (newRequest).
func (c *h2srvCtx) setTimeout(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil || !c.deadline.IsZero() {
		return
	}
	c.deadline = time.Now().Add(d)
	c.timer = time.AfterFunc(d, c.expire)
}

func (c *h2srvCtx) expire() { c.end(context.DeadlineExceeded) }

func (c *h2srvCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		c.done = make(chan struct{})
		if c.err != nil {
			close(c.done)
		}
	}
	return c.done
}

func (c *h2srvCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// AfterFunc runs f in its own goroutine once c is cancelled, as
// context.AfterFunc; contexts derived from c (context.WithTimeout) use
// it instead of a goroutine watching Done.
func (c *h2srvCtx) AfterFunc(f func()) func() bool {
	a := &h2srvAfter{f: f}
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		go f()
		return func() bool { return false }
	}
	c.funcs = append(c.funcs, a)
	c.mu.Unlock()
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for i, b := range c.funcs {
			if b == a {
				c.funcs = append(c.funcs[:i], c.funcs[i+1:]...)
				return true
			}
		}
		return false
	}
}

// setAbort makes cancel abort s; false when c is cancelled already.
func (c *h2srvCtx) setAbort(s *h2Stream) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return false
	}
	c.abort = s
	return true
}

// clearAbort undoes setAbort(s).
func (c *h2srvCtx) clearAbort(s *h2Stream) {
	c.mu.Lock()
	if c.abort == s {
		c.abort = nil
	}
	c.mu.Unlock()
}

// cancel cancels c, once.
func (c *h2srvCtx) cancel() { c.end(context.Canceled) }

// end ends c with err, once.
func (c *h2srvCtx) end(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	if c.done != nil {
		close(c.done)
	}
	if c.timer != nil {
		c.timer.Stop()
	}
	s, funcs := c.abort, c.funcs
	c.abort, c.funcs = nil, nil
	c.mu.Unlock()
	if s != nil {
		h2Go(h2Func(func() { s.abort(err) })) // not on the caller's goroutine, as context.AfterFunc
	}
	for _, a := range funcs {
		go a.f()
	}
}
