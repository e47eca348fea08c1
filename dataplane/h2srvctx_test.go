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
