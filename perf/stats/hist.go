// Package stats owns the measurements of the perf harness: latency
// histograms (HDR, microsecond resolution), error kinds, CPU and memory of
// a target process read from /proc, and the description of the machine.
// It does not generate load nor format reports.
package stats

import (
	"math"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram bounds: values are recorded in microseconds from 1 µs to 60 s
// with three significant digits (0.1% resolution).
const (
	minLatencyUS = 1
	maxLatencyUS = 60 * 1000 * 1000
	sigFigs      = 3
)

// Histogram is a latency histogram. It is not safe for concurrent use:
// each load worker records into its own and the runner merges them.
type Histogram struct {
	h *hdrhistogram.Histogram
}

// NewHistogram returns an empty histogram covering 1 µs to 60 s.
func NewHistogram() *Histogram {
	return &Histogram{h: hdrhistogram.New(minLatencyUS, maxLatencyUS, sigFigs)}
}

// Record adds one latency. Values below 1 µs count as 1 µs and values above
// 60 s count as 60 s, so no sample is ever dropped.
func (h *Histogram) Record(d time.Duration) { h.RecordN(d, 1) }

// RecordN adds n samples of latency d (n <= 0 adds none), clamped like
// Record. It is how histograms exported by other tools (wrk) are re-read.
func (h *Histogram) RecordN(d time.Duration, n int64) {
	if n <= 0 {
		return
	}
	us := d.Microseconds()
	if us < minLatencyUS {
		us = minLatencyUS
	}
	if us > maxLatencyUS {
		us = maxLatencyUS
	}
	// RecordValues only fails for out-of-range values, excluded above.
	_ = h.h.RecordValues(us, n)
}

// Merge adds every sample of o into h.
func (h *Histogram) Merge(o *Histogram) {
	if o == nil {
		return
	}
	h.h.Merge(o.h)
}

// Count is the number of samples recorded.
func (h *Histogram) Count() int64 { return h.h.TotalCount() }

// Quantile returns the latency at percentile p (0..100).
func (h *Histogram) Quantile(p float64) time.Duration {
	return time.Duration(h.h.ValueAtPercentile(p)) * time.Microsecond
}

// Max returns the largest recorded latency (at histogram resolution).
func (h *Histogram) Max() time.Duration {
	return time.Duration(h.h.Max()) * time.Microsecond
}

// Mean returns the mean latency.
func (h *Histogram) Mean() time.Duration {
	return time.Duration(h.h.Mean() * float64(time.Microsecond))
}

// Percentiles is the latency summary every report shows, in milliseconds.
type Percentiles struct {
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p99_9_ms"`
	Max  float64 `json:"max_ms"`
	Mean float64 `json:"mean_ms"`
}

// Summary returns the standard percentiles of h. An empty histogram gives
// all zeros.
func (h *Histogram) Summary() Percentiles {
	if h.Count() == 0 {
		return Percentiles{}
	}
	return Percentiles{
		P50:  ms(h.Quantile(50)),
		P90:  ms(h.Quantile(90)),
		P99:  ms(h.Quantile(99)),
		P999: ms(h.Quantile(99.9)),
		Max:  ms(h.Max()),
		Mean: ms(h.Mean()),
	}
}

// CurvePoint is one point of a percentile plot.
type CurvePoint struct {
	// Percentile is 0..100.
	Percentile float64 `json:"percentile"`
	// LatencyMS is the latency at that percentile in milliseconds.
	LatencyMS float64 `json:"latency_ms"`
}

// Curve samples the percentile distribution on a log scale of 1/(1-p),
// the way HdrHistogram plots it: points from 0% up to 99.999% (as far as
// the sample count supports) and the max as 100%.
func (h *Histogram) Curve() []CurvePoint {
	n := h.Count()
	if n == 0 {
		return nil
	}
	var pts []CurvePoint
	// x = log10(1/(1-p)) from 0 to 5 in steps of 0.1.
	maxX := math.Min(5, math.Log10(float64(n)))
	for x := 0.0; x <= maxX+1e-9; x += 0.1 {
		p := 100 * (1 - math.Pow(10, -x))
		v := h.Quantile(p)
		if x == 0 {
			v = time.Duration(h.h.Min()) * time.Microsecond // percentile 0 is the minimum
		}
		pts = append(pts, CurvePoint{Percentile: p, LatencyMS: ms(v)})
	}
	pts = append(pts, CurvePoint{Percentile: 100, LatencyMS: ms(h.Max())})
	return pts
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
