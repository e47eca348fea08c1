package dataplane

import (
	"context"
	"errors"
	"testing"
	"time"
)

type ctxKey struct{}

func TestH2srvCtx(t *testing.T) {
	c := &h2srvCtx{parent: context.WithValue(context.Background(), ctxKey{}, "v")}
	if c.Err() != nil || c.Value(ctxKey{}) != "v" {
		t.Fatalf("err %v value %v", c.Err(), c.Value(ctxKey{}))
	}
	if _, ok := c.Deadline(); ok {
		t.Fatal("deadline")
	}
	// Contexts derived from c end with it (through c.AfterFunc).
	child, cancelChild := context.WithTimeout(c, time.Hour)
	defer cancelChild()
	stopped := context.AfterFunc(c, func() { t.Error("stopped AfterFunc ran") })
	ran := make(chan struct{})
	context.AfterFunc(c, func() { close(ran) })
	if !stopped() {
		t.Fatal("stop reported not stopped")
	}
	done := c.Done()
	select {
	case <-done:
		t.Fatal("done before cancel")
	default:
	}
	c.cancel()
	c.cancel() // once
	<-done
	<-ran
	select {
	case <-child.Done():
	case <-time.After(3 * time.Second):
		t.Fatal("derived context not cancelled")
	}
	if !errors.Is(c.Err(), context.Canceled) || !errors.Is(child.Err(), context.Canceled) || !errors.Is(context.Cause(c), context.Canceled) {
		t.Fatalf("err %v child %v", c.Err(), child.Err())
	}
	// After the cancel: closed Done, AfterFunc at once, no abort taken.
	<-c.Done()
	late := make(chan struct{})
	context.AfterFunc(c, func() { close(late) })
	<-late
	if c.setAbort(&h2Stream{}) {
		t.Fatal("setAbort after cancel")
	}
}

// setTimeout expires the context itself: Deadline, DeadlineExceeded,
// derived contexts and AfterFuncs, and the upstream stream aborted with
// the same error; a cancel before the deadline stops the timer.
func TestH2srvCtxTimeout(t *testing.T) {
	c := &h2srvCtx{parent: context.Background()}
	derived, cancelDerived := context.WithCancel(c)
	defer cancelDerived()
	before := time.Now()
	c.setTimeout(50 * time.Millisecond)
	c.setTimeout(time.Hour) // the first deadline stays
	d, ok := c.Deadline()
	if !ok || d.Before(before.Add(50*time.Millisecond)) || d.After(time.Now().Add(50*time.Millisecond)) {
		t.Fatalf("deadline %v %v", d, ok)
	}
	ran := make(chan struct{})
	context.AfterFunc(c, func() { close(ran) })
	select {
	case <-c.Done():
	case <-time.After(3 * time.Second):
		t.Fatal("not expired")
	}
	<-ran
	<-derived.Done()
	if !errors.Is(c.Err(), context.DeadlineExceeded) || !errors.Is(derived.Err(), context.DeadlineExceeded) {
		t.Fatalf("err %v derived %v", c.Err(), derived.Err())
	}
	c.cancel() // no effect after expiry
	if !errors.Is(c.Err(), context.DeadlineExceeded) {
		t.Fatalf("err after cancel %v", c.Err())
	}

	c2 := &h2srvCtx{parent: context.Background()}
	c2.setTimeout(20 * time.Millisecond)
	c2.cancel()
	time.Sleep(60 * time.Millisecond)
	if !errors.Is(c2.Err(), context.Canceled) {
		t.Fatalf("cancelled then past the deadline: err %v", c2.Err())
	}
}
