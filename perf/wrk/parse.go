package wrk

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/meshagent/meshagent/perf/load"
	"github.com/meshagent/meshagent/perf/stats"
)

// ErrOutput reports wrk output perf cannot parse or that contradicts itself.
var ErrOutput = errors.New("wrk: unexpected output")

// Output is what one wrk run printed: wrk's own summary and, when perf's
// done() script ran, its exact figures.
type Output struct {
	// Threads and Connections are from "T threads and C connections".
	Threads, Connections int
	// Requests is the number of completed responses ("N requests in D").
	Requests int64
	// Duration is the run time as wrk prints it (two decimals).
	Duration time.Duration
	// Socket errors; a line wrk omits when they are all zero.
	Socket SocketErrors
	// Non2xx3xx counts responses with a status above 399.
	Non2xx3xx int64
	// RPS is wrk's Requests/sec.
	RPS float64
	// Distribution is the --latency table (50, 75, 90, 99 %), rounded as
	// wrk prints it.
	Distribution []Quantile
	// Script is the block of perf's done() script (nil: none printed).
	Script *Script
}

// SocketErrors are wrk's per-run socket error counts.
type SocketErrors struct {
	Connect, Read, Write, Timeout int64
}

// Quantile is the latency at one percentile (0..100).
type Quantile struct {
	Percentile float64
	Latency    time.Duration
}

// Bucket is one value of wrk's latency histogram (microsecond resolution).
type Bucket struct {
	Latency time.Duration
	Count   int64
}

// Script is what perf's done() script printed: exact figures from wrk's
// in-memory results.
type Script struct {
	// Duration is the exact run time.
	Duration        time.Duration
	Requests, Bytes int64
	Socket          SocketErrors
	// Status counts responses with a status above 399.
	Status   int64
	Min, Max time.Duration
	// Percentiles are wrk's own (exact) percentiles: 50, 90, 99, 99.9.
	Percentiles []Quantile
	// Hist is wrk's whole latency histogram, ascending; empty when the
	// script sampled Quantiles instead.
	Hist []Bucket
	// Quantiles sample the distribution on a log percentile scale, printed
	// instead of Hist when the histogram is too wide to export in time
	// (wrk's Lua accessor scans from the minimum for every bucket).
	Quantiles []Quantile
	// Complete is set by the script's last line; without it the block
	// was cut short.
	Complete bool
}

// scriptPrefix starts every line the done() script prints.
const scriptPrefix = "perf-wrk"

// Parse reads wrk's stdout. Lines it does not know are ignored (wrk and
// scripts may print more); known lines must be well formed, and the
// script block must not repeat a line or continue after its end.
func Parse(b []byte) (*Output, error) {
	o := &Output{}
	var sawRequests, inScript bool
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		var err error
		switch {
		case f[0] == scriptPrefix:
			if !inScript {
				if o.Script != nil {
					err = fmt.Errorf("second %s block", scriptPrefix)
					break
				}
				if len(f) != 2 || f[1] != "v1" {
					err = fmt.Errorf("%s block does not start with its version line", scriptPrefix)
					break
				}
				o.Script, inScript = &Script{}, true
				continue
			}
			err = o.Script.parseLine(f[1:])
			if o.Script.Complete {
				inScript = false
			}
		case len(f) == 5 && f[1] == "threads" && f[2] == "and" && f[4] == "connections":
			o.Threads, err = atoi(f[0])
			if err == nil {
				o.Connections, err = atoi(f[3])
			}
		case len(f) == 2 && strings.HasSuffix(f[0], "%") && len(o.Distribution) < 16:
			var q Quantile
			if q.Percentile, err = percent(strings.TrimSuffix(f[0], "%")); err == nil {
				q.Latency, err = wrkDuration(f[1])
			}
			o.Distribution = append(o.Distribution, q)
		case len(f) >= 4 && f[1] == "requests" && f[2] == "in":
			if sawRequests {
				err = errors.New("second requests line")
				break
			}
			sawRequests = true
			if o.Requests, err = count(f[0]); err == nil {
				o.Duration, err = wrkDuration(strings.TrimSuffix(f[3], ","))
			}
		case strings.HasPrefix(line, "  Socket errors:"):
			err = keyValues(strings.ReplaceAll(strings.TrimPrefix(line, "  Socket errors:"), ",", ""),
				map[string]*int64{"connect": &o.Socket.Connect, "read": &o.Socket.Read, "write": &o.Socket.Write, "timeout": &o.Socket.Timeout})
		case strings.HasPrefix(line, "  Non-2xx or 3xx responses:") && len(f) == 5:
			o.Non2xx3xx, err = count(f[4])
		case f[0] == "Requests/sec:" && len(f) == 2:
			o.RPS, err = strconv.ParseFloat(f[1], 64)
			if err == nil && (math.IsNaN(o.RPS) || math.IsInf(o.RPS, 0) || o.RPS < 0) {
				err = fmt.Errorf("rate %q", f[1])
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%w: line %d %q: %w", ErrOutput, n, truncate(line), err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrOutput, err)
	}
	if !sawRequests {
		return nil, fmt.Errorf("%w: no \"N requests in D\" line", ErrOutput)
	}
	return o, nil
}

// parseLine reads one line of the script block, without its prefix.
func (s *Script) parseLine(f []string) error {
	if s.Complete {
		return errors.New("line after the end of the block")
	}
	if len(f) == 0 {
		return errors.New("empty line")
	}
	switch f[0] {
	case "summary":
		if s.Duration != 0 || s.Requests != 0 || s.Bytes != 0 {
			return errors.New("second summary")
		}
		var us int64
		if err := keyValues(strings.Join(f[1:], " "), map[string]*int64{"duration_us": &us, "requests": &s.Requests, "bytes": &s.Bytes}); err != nil {
			return err
		}
		if us > math.MaxInt64/int64(time.Microsecond) {
			return fmt.Errorf("duration %d µs out of range", us)
		}
		s.Duration = time.Duration(us) * time.Microsecond
	case "errors":
		return keyValues(strings.Join(f[1:], " "), map[string]*int64{"connect": &s.Socket.Connect, "read": &s.Socket.Read,
			"write": &s.Socket.Write, "status": &s.Status, "timeout": &s.Socket.Timeout})
	case "latency":
		var lo, hi int64
		if err := keyValues(strings.Join(f[1:], " "), map[string]*int64{"min": &lo, "max": &hi}); err != nil {
			return err
		}
		if lo > hi {
			return fmt.Errorf("min %d > max %d", lo, hi)
		}
		s.Min, s.Max = micros(lo), micros(hi)
	case "percentile", "quantile":
		if len(f) != 3 {
			return fmt.Errorf("%s wants 2 values", f[0])
		}
		p, err := percent(f[1])
		if err != nil {
			return err
		}
		v, err := count(f[2])
		if err != nil {
			return err
		}
		q := Quantile{Percentile: p, Latency: micros(v)}
		if f[0] == "percentile" {
			s.Percentiles = append(s.Percentiles, q)
			return nil
		}
		if len(s.Hist) > 0 {
			return errors.New("quantiles after histogram")
		}
		if k := len(s.Quantiles); k > 0 && (p < s.Quantiles[k-1].Percentile || q.Latency < s.Quantiles[k-1].Latency) {
			return errors.New("quantiles not ascending")
		}
		s.Quantiles = append(s.Quantiles, q)
	case "hist":
		if len(f) != 3 {
			return errors.New("hist wants 2 values")
		}
		if len(s.Quantiles) > 0 {
			return errors.New("histogram after quantiles")
		}
		v, err := count(f[1])
		if err != nil {
			return err
		}
		c, err := count(f[2])
		if err != nil {
			return err
		}
		if k := len(s.Hist); k > 0 && micros(v) <= s.Hist[k-1].Latency {
			return errors.New("histogram not ascending")
		}
		s.Hist = append(s.Hist, Bucket{Latency: micros(v), Count: c})
	case "end":
		if len(f) != 3 {
			return errors.New("end wants a kind and a count")
		}
		n, err := count(f[2])
		if err != nil {
			return err
		}
		var have int
		switch f[1] {
		case "hist":
			have = len(s.Hist)
		case "quantiles":
			have = len(s.Quantiles)
		default:
			return fmt.Errorf("end of unknown kind %q", f[1])
		}
		if int64(have) != n {
			return fmt.Errorf("block has %d %s lines, its end says %d", have, f[1], n)
		}
		s.Complete = true
	default:
		return fmt.Errorf("unknown line kind %q", f[0])
	}
	return nil
}

// Result converts a run's output to a load result: the measured requests,
// errors by kind (non-2xx/3xx as status, connect, read and write as reset,
// timeout), the exact run time and the latency histogram. It needs the
// complete script block, which must agree with wrk's summary.
func (o *Output) Result() (*load.Result, error) {
	s := o.Script
	switch {
	case s == nil:
		return nil, fmt.Errorf("%w: no %s block (did wrk load perf's done() script?)", ErrOutput, scriptPrefix)
	case !s.Complete:
		return nil, fmt.Errorf("%w: %s block cut short", ErrOutput, scriptPrefix)
	case s.Requests != o.Requests:
		return nil, fmt.Errorf("%w: script counts %d requests, wrk's summary %d", ErrOutput, s.Requests, o.Requests)
	case s.Status != o.Non2xx3xx || s.Socket != o.Socket:
		return nil, fmt.Errorf("%w: script and summary disagree on errors", ErrOutput)
	case s.Status > s.Requests:
		return nil, fmt.Errorf("%w: %d non-2xx/3xx of %d requests", ErrOutput, s.Status, s.Requests)
	}
	r := &load.Result{Latency: stats.NewHistogram(), OK: s.Requests - s.Status, Elapsed: s.Duration}
	for _, e := range []struct {
		kind stats.ErrorKind
		n    int64
	}{{stats.ErrStatus, s.Status}, {stats.ErrConnect, s.Socket.Connect}, {stats.ErrReset, s.Socket.Read},
		{stats.ErrReset, s.Socket.Write}, {stats.ErrTimeout, s.Socket.Timeout}} {
		if e.n > math.MaxInt64-r.Errors.Total()-r.OK {
			return nil, fmt.Errorf("%w: error counts overflow", ErrOutput)
		}
		r.Errors[e.kind] += e.n
	}
	if r.Errors.Total() > 0 {
		r.LastErr = fmt.Errorf("wrk: %d non-2xx/3xx responses; socket errors: connect %d, read %d, write %d, timeout %d",
			s.Status, s.Socket.Connect, s.Socket.Read, s.Socket.Write, s.Socket.Timeout)
	}
	var total int64
	for _, b := range s.Hist {
		if b.Count > math.MaxInt64-total {
			return nil, fmt.Errorf("%w: histogram counts overflow", ErrOutput)
		}
		total += b.Count
		r.Latency.RecordN(b.Latency, b.Count)
	}
	if len(s.Quantiles) > 0 {
		// Each sampled point stands for the requests between it and the
		// previous one; wrk records a latency for every response.
		var prev int64
		n := float64(s.Requests)
		for _, q := range s.Quantiles {
			at := int64(math.Round(q.Percentile / 100 * n))
			r.Latency.RecordN(q.Latency, at-prev)
			prev = max(prev, at)
		}
		r.Latency.RecordN(s.Max, s.Requests-prev)
		total = s.Requests
	}
	// A response slower than wrk's timeout counts as a timeout and has no
	// sample; every other one has.
	if total == 0 && s.Requests > s.Socket.Timeout {
		return nil, fmt.Errorf("%w: %d requests but an empty latency histogram", ErrOutput, s.Requests)
	}
	return r, nil
}

// wrkDuration parses a time as wrk formats it: a decimal number with the
// unit us, ms, s, m or h.
func wrkDuration(s string) (time.Duration, error) {
	units := []struct {
		suffix string
		d      time.Duration
	}{{"us", time.Microsecond}, {"ms", time.Millisecond}, {"s", time.Second}, {"m", time.Minute}, {"h", time.Hour}}
	for _, u := range units {
		num, ok := strings.CutSuffix(s, u.suffix)
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(num, 64)
		if err != nil || math.IsNaN(v) || v < 0 || v*float64(u.d) > float64(24*time.Hour) {
			return 0, fmt.Errorf("time %q", s)
		}
		return time.Duration(math.Round(v * float64(u.d))), nil
	}
	return 0, fmt.Errorf("time %q has no unit", s)
}

// keyValues parses "k1 v1 k2 v2 ..." into the given counters; every key
// must be known and present exactly once.
func keyValues(s string, into map[string]*int64) error {
	f := strings.Fields(s)
	if len(f) != 2*len(into) {
		return fmt.Errorf("want %d key/value pairs, have %d fields", len(into), len(f))
	}
	seen := map[string]bool{}
	for i := 0; i < len(f); i += 2 {
		p, ok := into[f[i]]
		if !ok || seen[f[i]] {
			return fmt.Errorf("unexpected or repeated key %q", f[i])
		}
		seen[f[i]] = true
		v, err := count(f[i+1])
		if err != nil {
			return err
		}
		*p = v
	}
	return nil
}

// count parses a non-negative decimal integer.
func count(s string) (int64, error) {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("count %q", s)
	}
	return v, nil
}

func atoi(s string) (int, error) {
	v, err := count(s)
	if err != nil || v > math.MaxInt32 {
		return 0, fmt.Errorf("number %q", s)
	}
	return int(v), nil
}

// percent parses a percentile in 0..100.
func percent(s string) (float64, error) {
	p, err := strconv.ParseFloat(s, 64)
	if err != nil || !(p >= 0 && p <= 100) {
		return 0, fmt.Errorf("percentile %q", s)
	}
	return p, nil
}

// micros converts wrk's microseconds, capped at a day (wrk's timeout
// bounds real values far below).
func micros(us int64) time.Duration {
	return time.Duration(min(us, int64(24*time.Hour/time.Microsecond))) * time.Microsecond
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
