// Package report owns the perf harness's output: the Report value (also
// its JSON form), the text table for stdout, the one-line live progress on
// stderr, and the self-contained HTML report with a latency percentile plot
// (inline SVG, log-scale percentile axis) per target. It does not run load.
package report

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/meshagent/meshagent/perf/load"
	"github.com/meshagent/meshagent/perf/stats"
)

// SchemaVersion is the version of the JSON layout; it changes when a field
// is renamed or removed.
const SchemaVersion = 1

// Report is everything one scenario run measured.
type Report struct {
	Schema   int           `json:"schema"`
	Scenario string        `json:"scenario"`
	Started  time.Time     `json:"started"`
	Machine  stats.Machine `json:"machine"`
	Params   Params        `json:"params"`
	// Targets holds one entry per target (compare, tcp) or per phase
	// (churn: "before" and "during").
	Targets []Target `json:"targets"`
	// Skipped lists targets that could not run, with the reason.
	Skipped []Skip `json:"skipped,omitempty"`
	// Scale holds the results of the scale scenario.
	Scale []ScaleResult `json:"scale,omitempty"`
	// Churn holds the config-push side of the churn scenario.
	Churn *ChurnResult `json:"churn,omitempty"`
	Notes []string     `json:"notes,omitempty"`
}

// Params are the load parameters of the run.
type Params struct {
	Protocol    string  `json:"protocol,omitempty"`
	Connections int     `json:"connections,omitempty"`
	Rate        float64 `json:"rate,omitempty"`
	DurationS   float64 `json:"duration_s,omitempty"`
	WarmupS     float64 `json:"warmup_s,omitempty"`
	Requests    int64   `json:"requests,omitempty"`
	Rounds      int     `json:"rounds,omitempty"`
	Payload     int     `json:"payload_bytes,omitempty"`
}

// Target is the aggregated result of one target over all rounds.
type Target struct {
	Name      string             `json:"name"`
	Requests  int64              `json:"requests"`
	Errors    map[string]int64   `json:"errors"`
	ElapsedS  float64            `json:"elapsed_s"`
	RPS       float64            `json:"rps"`
	MBps      float64            `json:"mb_per_s,omitempty"`
	Latency   stats.Percentiles  `json:"latency"`
	Curve     []stats.CurvePoint `json:"curve"`
	Ratio     *Ratio             `json:"vs_direct,omitempty"`
	Usage     *stats.Usage       `json:"usage,omitempty"`
	VCPUPer1k float64            `json:"vcpu_per_1k_rps,omitempty"`
	IdleRSSMB float64            `json:"idle_rss_mb,omitempty"`
	LastError string             `json:"last_error,omitempty"`
}

// Ratio compares a target to direct.
type Ratio struct {
	// Throughput is the target's rps (or MB/s) divided by direct's.
	Throughput float64 `json:"throughput"`
	// AddedP50MS and AddedP99MS are the latency the hop adds.
	AddedP50MS float64 `json:"added_p50_ms"`
	AddedP99MS float64 `json:"added_p99_ms"`
}

// Skip records a target that did not run.
type Skip struct {
	Target string `json:"target"`
	Reason string `json:"reason"`
}

// ScaleResult is one size of the scale scenario.
type ScaleResult struct {
	Routes int `json:"routes"`
	// Method is "etcd" or "yaml".
	Method string `json:"method"`
	// ApplyS is from the first write (or process start) until the last
	// route serves.
	ApplyS     float64 `json:"apply_s"`
	RSSMB      float64 `json:"rss_mb"`
	PeakRSSMB  float64 `json:"peak_rss_mb"`
	IdleRSSMB  float64 `json:"idle_rss_mb"`
	KBPerRoute float64 `json:"kb_per_route"`
	Error      string  `json:"error,omitempty"`
}

// ChurnResult is the config-push side of the churn scenario.
type ChurnResult struct {
	Pushes      int     `json:"pushes"`
	PushErrors  int     `json:"push_errors"`
	PushP50MS   float64 `json:"push_p50_ms"`
	PushMaxMS   float64 `json:"push_max_ms"`
	FirstError  string  `json:"first_error,omitempty"`
	PushedEvery float64 `json:"pushed_every_ms"`
}

// FromResult builds a Target entry from a merged load result and the
// target's resource usage (nil when not measured). bytesPerRequest > 0
// also reports MB/s.
func FromResult(name string, r *load.Result, u *stats.Usage, idleRSSMB float64, bytesPerRequest int) Target {
	t := Target{
		Name: name, Requests: r.Total(), Errors: r.Errors.Map(), ElapsedS: r.Elapsed.Seconds(),
		RPS: r.RPS(), Latency: r.Latency.Summary(), Curve: r.Latency.Curve(), IdleRSSMB: idleRSSMB,
	}
	if bytesPerRequest > 0 && r.Elapsed > 0 {
		t.MBps = float64(r.OK) * float64(bytesPerRequest) / r.Elapsed.Seconds() / (1 << 20)
	}
	if u != nil {
		t.Usage = u
		t.VCPUPer1k = u.VCPUPer1kRPS(t.RPS)
	}
	if r.LastErr != nil {
		t.LastError = r.LastErr.Error()
	}
	return t
}

// AddRatios fills Ratio for every target against the one named base.
func (r *Report) AddRatios(base string) {
	var b *Target
	for i := range r.Targets {
		if r.Targets[i].Name == base {
			b = &r.Targets[i]
		}
	}
	if b == nil {
		return
	}
	for i := range r.Targets {
		t := &r.Targets[i]
		if t.Name == base {
			continue
		}
		ratio := &Ratio{AddedP50MS: t.Latency.P50 - b.Latency.P50, AddedP99MS: t.Latency.P99 - b.Latency.P99}
		switch {
		case b.MBps > 0:
			ratio.Throughput = t.MBps / b.MBps
		case b.RPS > 0:
			ratio.Throughput = t.RPS / b.RPS
		}
		t.Ratio = ratio
	}
}

// WriteJSON writes r as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("report: encode json: %w", err)
	}
	return nil
}

// WriteFile writes the report to path with write (WriteJSON or WriteHTML).
func (r *Report) WriteFile(path string, write func(*Report, io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := write(r, f); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("report: close %s: %w", path, err)
	}
	return nil
}
