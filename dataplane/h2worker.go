package dataplane

import "sync/atomic"

// Stream handlers (h2server.go) and request body writers (h2client.go)
// run on reused goroutines: a goroutine per stream grows its stack anew
// for every request (serveHTTP runs deep), a reused one keeps it.

// h2MaxIdleWorkers bounds the goroutines kept waiting for work.
const h2MaxIdleWorkers = 64

var (
	h2Work        = make(chan h2Task) // unbuffered: taken by a waiting worker only
	h2IdleWorkers atomic.Int32
)

// h2Task is work for h2Go: a stream (its fields say what to do), so
// handing it over allocates nothing, or an h2Func.
type h2Task interface{ runTask() }

// h2Func is a func as an h2Task.
type h2Func func()

func (f h2Func) runTask() { f() }

// h2Go runs f on an idle worker, or on a new goroutine.
func h2Go(f h2Task) {
	select {
	case h2Work <- f:
	default:
		go h2Worker(f)
	}
}

func h2Worker(f h2Task) {
	for {
		f.runTask()
		if h2IdleWorkers.Add(1) > h2MaxIdleWorkers {
			h2IdleWorkers.Add(-1)
			return
		}
		f = <-h2Work
		h2IdleWorkers.Add(-1)
	}
}
