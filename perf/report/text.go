package report

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
)

// WriteText writes the human-readable tables of r.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "perf %s", r.Scenario)
	p := r.Params
	if p.Protocol != "" {
		fmt.Fprintf(&b, "  protocol=%s connections=%d", p.Protocol, p.Connections)
		if p.Rate > 0 {
			fmt.Fprintf(&b, " rate=%.0f/s", p.Rate)
		} else {
			b.WriteString(" closed-loop")
		}
		fmt.Fprintf(&b, " duration=%.1fs warmup=%.1fs rounds=%d", p.DurationS, p.WarmupS, p.Rounds)
	}
	fmt.Fprintf(&b, "\nmachine: %d x %s, %s, linux %s, %s\n\n", r.Machine.NumCPU, r.Machine.CPUModel, r.Machine.MemTotal, r.Machine.Kernel, r.Machine.Go)
	if len(r.Targets) > 0 {
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "target\trequests\terrors\trps\tMB/s\tp50 ms\tp90 ms\tp99 ms\tp99.9 ms\tmax ms\tx direct\t+p50 ms\t+p99 ms\tvCPU/1k rps\tpeak RSS MB\t")
		for _, t := range r.Targets {
			ratio, a50, a99 := "-", "-", "-"
			if t.Ratio != nil {
				ratio = fmt.Sprintf("%.3f", t.Ratio.Throughput)
				a50 = fmt.Sprintf("%+.3f", t.Ratio.AddedP50MS)
				a99 = fmt.Sprintf("%+.3f", t.Ratio.AddedP99MS)
			}
			mb, vcpu, rss := "-", "-", "-"
			if t.MBps > 0 {
				mb = fmt.Sprintf("%.1f", t.MBps)
			}
			if t.Usage != nil {
				vcpu = fmt.Sprintf("%.3f", t.VCPUPer1k)
				rss = fmt.Sprintf("%.1f", t.Usage.PeakRSSMB)
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%.0f\t%s\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%s\t%s\t%s\t%s\t%s\t\n",
				t.Name, t.Requests, errString(t.Errors), t.RPS, mb, t.Latency.P50, t.Latency.P90, t.Latency.P99,
				t.Latency.P999, t.Latency.Max, ratio, a50, a99, vcpu, rss)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(r.Scale) > 0 {
		b.WriteString("\n")
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "routes\tmethod\tapply s\tidle RSS MB\tRSS MB\tpeak RSS MB\tKB/route\terror\t")
		for _, s := range r.Scale {
			fmt.Fprintf(tw, "%d\t%s\t%.3f\t%.1f\t%.1f\t%.1f\t%.2f\t%s\t\n", s.Routes, s.Method, s.ApplyS, s.IdleRSSMB, s.RSSMB, s.PeakRSSMB, s.KBPerRoute, s.Error)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if c := r.Churn; c != nil {
		fmt.Fprintf(&b, "\nconfig pushes: %d (every %.0f ms), failed %d, push latency p50 %.2f ms max %.2f ms\n",
			c.Pushes, c.PushedEvery, c.PushErrors, c.PushP50MS, c.PushMaxMS)
		if c.FirstError != "" {
			fmt.Fprintf(&b, "first push error: %s\n", c.FirstError)
		}
	}
	for _, s := range r.Skipped {
		fmt.Fprintf(&b, "skipped %s: %s\n", s.Target, s.Reason)
	}
	for _, t := range r.Targets {
		if t.LastError != "" {
			fmt.Fprintf(&b, "%s last error: %s\n", t.Name, t.LastError)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func errString(m map[string]int64) string {
	if len(m) == 0 {
		return "0"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, ",")
}

// Progress writes a live status line, rewriting it in place (carriage
// return) on a terminal-like writer. It is safe for concurrent use.
type Progress struct {
	mu  sync.Mutex
	w   io.Writer
	len int
}

// NewProgress returns a progress line on w (nil: no output).
func NewProgress(w io.Writer) *Progress { return &Progress{w: w} }

// Update replaces the line with the formatted text.
func (p *Progress) Update(format string, args ...any) {
	if p == nil || p.w == nil {
		return
	}
	s := fmt.Sprintf(format, args...)
	p.mu.Lock()
	defer p.mu.Unlock()
	pad := ""
	if n := p.len - len(s); n > 0 {
		pad = strings.Repeat(" ", n)
	}
	fmt.Fprintf(p.w, "\r%s%s", s, pad)
	p.len = len(s)
}

// Done ends the line.
func (p *Progress) Done() {
	if p == nil || p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.len > 0 {
		fmt.Fprintln(p.w)
		p.len = 0
	}
}
