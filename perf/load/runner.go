// Package load owns load generation: clients for HTTP/1.1 (fasthttp,
// keep-alive), HTTP/2 (x/net/http2, h2c prior knowledge), gRPC unary and
// bidirectional streaming (grpc-go with the backend's hand-written codec),
// TCP echo and TCP bulk transfer; and the runner that drives them in a
// closed loop (N connections as fast as they go) or an open loop (a fixed
// rate, latency measured from each request's intended send time so that
// coordinated omission is corrected), for a duration or a request count,
// with a warm-up period excluded from the results. It does not start
// servers or proxies and does not format reports.
package load

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshagent/meshagent/perf/stats"
)

// ErrOptions reports invalid runner options.
var ErrOptions = errors.New("load: invalid options")

// Client is one load-generating connection. Do performs one request and
// returns nil only for a correct response. A client is used by one
// goroutine at a time; it (re)connects lazily inside Do, so a connect
// failure is an error of that request.
type Client interface {
	Do(ctx context.Context) error
	Close() error
}

// Factory makes clients, one per connection of a run.
type Factory interface {
	NewClient() Client
}

// Options configure one run.
type Options struct {
	// Connections is the number of concurrent connections (>= 1).
	Connections int
	// Rate is the total request rate per second of an open-loop run; 0
	// makes a closed loop.
	Rate float64
	// Duration is the measured time (after Warmup). Either Duration or
	// Requests must be set; with both, the run ends at the first reached.
	// An open loop that falls behind its schedule keeps sending the
	// requests that were due until Duration (at least 1 s) past the end,
	// then gives up: requests still unsent count as stats.ErrBacklog with
	// their wait so far as latency.
	Duration time.Duration
	// Requests is the number of measured requests (0: run for Duration).
	Requests int64
	// Warmup is a period before measurement whose requests are not counted.
	Warmup time.Duration
	// Progress, when set, is called about once a second from one goroutine.
	Progress func(Progress)
}

// Progress is a live view of a run.
type Progress struct {
	Elapsed   time.Duration
	Warmup    bool
	Completed int64
	Errors    int64
	// RPS is the completion rate over the last interval.
	RPS float64
}

// Result is the measured part of a run.
type Result struct {
	// Latency holds every measured request, successful or not.
	Latency *stats.Histogram
	// OK is the number of successful measured requests.
	OK     int64
	Errors stats.ErrorCounts
	// Elapsed is from the start of measurement to the last completion.
	Elapsed time.Duration
	// LastErr is one example failure, for diagnostics.
	LastErr error
}

// Total is successes plus failures.
func (r *Result) Total() int64 { return r.OK + r.Errors.Total() }

// RPS is successful requests per second of measured time.
func (r *Result) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.OK) / r.Elapsed.Seconds()
}

// Merge adds o (another run or round) to r.
func (r *Result) Merge(o *Result) {
	if r.Latency == nil {
		r.Latency = stats.NewHistogram()
	}
	r.Latency.Merge(o.Latency)
	r.OK += o.OK
	r.Errors.Merge(o.Errors)
	r.Elapsed += o.Elapsed
	if o.LastErr != nil {
		r.LastErr = o.LastErr
	}
}

// Schedule is an open-loop send schedule: request i is intended to start
// at Start + i*Interval, whatever happened to earlier requests. A request
// that is already due when its client gets to it (the client was held up
// by slow earlier responses) has its latency measured from the intended
// time, which corrects coordinated omission; a client that was idle and
// sleeping until the slot measures from its actual wake-up, so the
// harness's own timer slack is not charged to the target.
type Schedule struct {
	Start    time.Time
	Interval time.Duration
}

// NewSchedule returns the schedule of rate requests per second from start.
func NewSchedule(start time.Time, rate float64) Schedule {
	return Schedule{Start: start, Interval: time.Duration(float64(time.Second) / rate)}
}

// At is the intended send time of request i (0-based).
func (s Schedule) At(i int64) time.Time { return s.Start.Add(time.Duration(i) * s.Interval) }

// Validate checks o, naming the bad field.
func (o Options) Validate() error {
	switch {
	case o.Connections < 1:
		return fmt.Errorf("%w: connections %d: must be >= 1", ErrOptions, o.Connections)
	case o.Rate < 0:
		return fmt.Errorf("%w: rate %v: must be >= 0", ErrOptions, o.Rate)
	case o.Rate > 1e7:
		return fmt.Errorf("%w: rate %v: must be <= 1e7", ErrOptions, o.Rate)
	case o.Duration < 0 || o.Requests < 0 || o.Warmup < 0:
		return fmt.Errorf("%w: duration, requests and warmup must be >= 0", ErrOptions)
	case o.Duration == 0 && o.Requests == 0:
		return fmt.Errorf("%w: one of duration or requests must be set", ErrOptions)
	}
	return nil
}

// Run drives f with o until the duration or request count is reached or
// ctx ends, and returns the measured result. Clients are closed on return.
func Run(ctx context.Context, f Factory, o Options) (*Result, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	start := time.Now()
	measureFrom := start.Add(o.Warmup)
	end := time.Time{} // zero: no time limit
	if o.Duration > 0 {
		end = measureFrom.Add(o.Duration)
	}
	var sched *Schedule
	var giveUp time.Time // open loop with a duration: stop sending late requests
	if o.Rate > 0 {
		s := NewSchedule(start, o.Rate)
		sched = &s
		if !end.IsZero() {
			giveUp = end.Add(max(o.Duration, time.Second))
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var (
		next      atomic.Int64 // open loop: next schedule index
		claimed   atomic.Int64 // measured requests claimed (request-count mode)
		gaveUp    atomic.Bool  // the open loop abandoned its backlog
		completed atomic.Int64
		failed    atomic.Int64
		results   = make([]*Result, o.Connections)
		lastDone  = make([]time.Time, o.Connections)
		wg        sync.WaitGroup
	)
	for w := range o.Connections {
		res := &Result{Latency: stats.NewHistogram()}
		results[w] = res
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := f.NewClient()
			defer c.Close()
			for ctx.Err() == nil {
				var intended time.Time
				if sched != nil {
					intended = sched.At(next.Add(1) - 1)
				} else {
					intended = time.Now()
				}
				if !end.IsZero() && !intended.Before(end) {
					return
				}
				measured := !intended.Before(measureFrom)
				if !giveUp.IsZero() {
					if now := time.Now(); now.After(giveUp) {
						gaveUp.Store(true)
						if measured {
							res.Latency.Record(now.Sub(intended))
							res.Errors.Add(stats.ErrBacklog)
						}
						return
					}
				}
				if measured && o.Requests > 0 && claimed.Add(1) > o.Requests {
					return
				}
				from := intended
				if sched != nil {
					if d := time.Until(intended); d > 0 {
						t := time.NewTimer(d)
						select {
						case <-t.C:
						case <-ctx.Done():
							t.Stop()
							return
						}
						// The client was idle, not backlogged: a late timer
						// wake-up is the harness's slack, not the target's.
						from = time.Now()
					}
				}
				err := c.Do(ctx)
				done := time.Now()
				if ctx.Err() != nil && err != nil {
					return // canceled mid-request: not a result
				}
				completed.Add(1)
				if err != nil {
					failed.Add(1)
				}
				if !measured {
					continue
				}
				res.Latency.Record(done.Sub(from))
				if err != nil {
					res.Errors.Add(stats.Classify(err))
					res.LastErr = err
				} else {
					res.OK++
				}
				lastDone[w] = done
			}
		}()
	}
	stopProgress := make(chan struct{})
	var pwg sync.WaitGroup
	if o.Progress != nil {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			t := time.NewTicker(time.Second)
			defer t.Stop()
			var prev int64
			prevAt := start
			for {
				select {
				case <-stopProgress:
					return
				case now := <-t.C:
					c := completed.Load()
					o.Progress(Progress{
						Elapsed: now.Sub(start), Warmup: now.Before(measureFrom),
						Completed: c, Errors: failed.Load(),
						RPS: float64(c-prev) / now.Sub(prevAt).Seconds(),
					})
					prev, prevAt = c, now
				}
			}
		}()
	}
	wg.Wait()
	close(stopProgress)
	pwg.Wait()

	total := &Result{Latency: stats.NewHistogram()}
	if gaveUp.Load() && ctx.Err() == nil {
		// Requests never taken by a worker: also abandoned backlog.
		now := time.Now()
		for i := next.Load(); sched.At(i).Before(end); i++ {
			if at := sched.At(i); !at.Before(measureFrom) {
				total.Latency.Record(now.Sub(at))
				total.Errors.Add(stats.ErrBacklog)
			}
		}
		total.LastErr = fmt.Errorf("load: target fell behind the %v rps schedule; unsent requests counted as %v", o.Rate, stats.ErrBacklog)
	}
	var last time.Time
	for w, r := range results {
		total.Latency.Merge(r.Latency)
		total.OK += r.OK
		total.Errors.Merge(r.Errors)
		if r.LastErr != nil {
			total.LastErr = r.LastErr
		}
		if lastDone[w].After(last) {
			last = lastDone[w]
		}
	}
	if !last.IsZero() {
		total.Elapsed = last.Sub(measureFrom)
	}
	if err := ctx.Err(); err != nil && total.Total() == 0 {
		return total, fmt.Errorf("load: run canceled: %w", err)
	}
	return total, nil
}
