package dataplane

import "sync/atomic"

// Stream handlers (h2server.go) and request body writers (h2client.go)
// run on reused goroutines: a goroutine per stream grows its stack anew
// for every request (serveHTTP runs deep), a reused one keeps it.

// h2MaxIdleWorkers bounds the goroutines kept waiting for work.
const h2MaxIdleWorkers = 64

var (
	h2Work        = make(chan func()) // unbuffered: taken by a waiting worker only
	h2IdleWorkers atomic.Int32
)

// h2Go runs f on an idle worker, or on a new goroutine.
func h2Go(f func()) {
	select {
	case h2Work <- f:
	default:
		go h2Worker(f)
	}
}

func h2Worker(f func()) {
	for {
		f()
		if h2IdleWorkers.Add(1) > h2MaxIdleWorkers {
			h2IdleWorkers.Add(-1)
			return
		}
		f = <-h2Work
		h2IdleWorkers.Add(-1)
	}
}
