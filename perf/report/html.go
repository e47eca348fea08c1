package report

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"

	"github.com/meshagent/meshagent/perf/stats"
)

// Plot geometry in SVG user units.
const (
	plotW, plotH             = 640, 300
	padL, padR, padT, padB   = 60, 40, 24, 40
	maxNines                 = 5.0 // x axis ends at 99.999%
	innerW, innerH           = plotW - padL - padR, plotH - padT - padB
	directName               = "direct"
	overviewTitle            = "all targets"
	svgFont                  = `font-family="sans-serif" font-size="11"`
	referenceStroke          = `stroke="#999" stroke-dasharray="4 3"`
	maxPercentileForXScaling = 100 * (1 - 1e-5)
)

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"}

// xOf maps a percentile to the plot's log axis: log10(1/(1-p)).
func xOf(p float64) float64 {
	if p >= maxPercentileForXScaling {
		return maxNines
	}
	return math.Min(maxNines, -math.Log10(1-p/100))
}

type series struct {
	name  string
	color string
	style string
	curve []stats.CurvePoint
}

// decadeBounds returns the powers of ten enclosing [lo, hi] (in ms), at
// least one decade apart; 1 µs is the floor.
func decadeBounds(lo, hi float64) (float64, float64) {
	lo = math.Max(lo, 0.001)
	hi = math.Max(hi, lo)
	l := math.Pow(10, math.Floor(math.Log10(lo)+1e-9))
	h := math.Pow(10, math.Ceil(math.Log10(hi)-1e-9))
	if h <= l {
		h = l * 10
	}
	return l, h
}

// percentilePlot renders one inline SVG latency-by-percentile plot.
func percentilePlot(title string, ss []series, yMin, yMax float64) template.HTML {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="%s latency by percentile">`,
		plotW, plotH, plotW, plotH, template.HTMLEscapeString(title))
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="#fff" stroke="#ccc"/>`, padL, padT, innerW, innerH)
	fmt.Fprintf(&b, `<text x="%d" y="16" %s font-weight="bold">%s</text>`, padL, svgFont, template.HTMLEscapeString(title))
	px := func(x float64) float64 { return padL + x/maxNines*innerW }
	// Latency axis: log10 from yMin to yMax (both powers of ten), so the
	// body of the distribution and its tail are both readable.
	lo, hi := math.Log10(yMin), math.Log10(yMax)
	py := func(ms float64) float64 {
		v := math.Log10(math.Max(ms, yMin))
		return padT + innerH - math.Min(v-lo, hi-lo)/(hi-lo)*innerH
	}
	for i, lbl := range []string{"0%", "90%", "99%", "99.9%", "99.99%", "99.999%"} {
		x := px(float64(i))
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#eee"/>`, x, padT, x, padT+innerH)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" %s text-anchor="middle">%s</text>`, x, padT+innerH+14, svgFont, lbl)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" %s text-anchor="middle">percentile</text>`, padL+innerW/2, plotH-6, svgFont)
	for e := lo; e <= hi+1e-9; e++ {
		v := math.Pow(10, e)
		y := py(v)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#eee"/>`, padL, y, padL+innerW, y)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" %s text-anchor="end">%s</text>`, padL-4, y+4, svgFont, fmtMS(v))
	}
	fmt.Fprintf(&b, `<text x="12" y="%d" %s transform="rotate(-90 12 %d)" text-anchor="middle">latency (ms, log)</text>`, padT+innerH/2, svgFont, padT+innerH/2)
	for i, s := range ss {
		if len(s.curve) == 0 {
			continue
		}
		var pts strings.Builder
		for _, p := range s.curve {
			fmt.Fprintf(&pts, "%.1f,%.1f ", px(xOf(p.Percentile)), py(p.LatencyMS))
		}
		stroke := fmt.Sprintf(`stroke="%s"`, s.color)
		if s.style != "" {
			stroke = s.style
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke-width="2" %s points="%s"/>`, stroke, strings.TrimSpace(pts.String()))
		ly := padT + 14 + 14*i
		fmt.Fprintf(&b, `<text x="%d" y="%d" %s fill="%s">%s</text>`, padL+8, ly, svgFont, s.color, template.HTMLEscapeString(s.name))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) //nolint:gosec // built from escaped text and numbers only
}

func fmtMS(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v < 1:
		return fmt.Sprintf("%g", v)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}

var page = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>perf {{.R.Scenario}}</title>
<style>body{font-family:sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin:12px 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f4f4f4}td:first-child{text-align:left}
.plots{display:flex;flex-wrap:wrap;gap:12px}.note{color:#555}</style></head><body>
<h1>perf {{.R.Scenario}}</h1>
<p>{{with .R.Params}}{{if .Protocol}}protocol {{.Protocol}}, {{.Connections}} connections, {{if .Rate}}open loop at {{.Rate}} rps{{else}}closed loop{{end}}, {{.DurationS}} s measured after {{.WarmupS}} s warm-up, {{.Rounds}} round(s){{end}}{{end}}</p>
<p class="note">Machine: {{.R.Machine.NumCPU}} x {{.R.Machine.CPUModel}}, {{.R.Machine.MemTotal}}, Linux {{.R.Machine.Kernel}}, {{.R.Machine.Go}}{{with .R.Machine.Nginx}}, {{.}}{{end}}{{with .R.Machine.HAProxy}}, {{.}}{{end}}. Started {{.R.Started.UTC.Format "2006-01-02 15:04:05 UTC"}}.</p>
{{if .R.Targets}}<table><tr><th>target</th><th>requests</th><th>errors</th><th>rps</th><th>MB/s</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th><th>x direct</th><th>+p50 ms</th><th>+p99 ms</th><th>vCPU/1k rps</th><th>peak RSS MB</th></tr>
{{range .R.Targets}}<tr><td>{{.Name}}</td><td>{{.Requests}}</td><td>{{range $k, $v := .Errors}}{{$k}}={{$v}} {{else}}0{{end}}</td><td>{{printf "%.0f" .RPS}}</td><td>{{if .MBps}}{{printf "%.1f" .MBps}}{{else}}-{{end}}</td>
<td>{{printf "%.3f" .Latency.P50}}</td><td>{{printf "%.3f" .Latency.P90}}</td><td>{{printf "%.3f" .Latency.P99}}</td><td>{{printf "%.3f" .Latency.P999}}</td><td>{{printf "%.3f" .Latency.Max}}</td>
{{with .Ratio}}<td>{{printf "%.3f" .Throughput}}</td><td>{{printf "%+.3f" .AddedP50MS}}</td><td>{{printf "%+.3f" .AddedP99MS}}</td>{{else}}<td>-</td><td>-</td><td>-</td>{{end}}
<td>{{if .Usage}}{{printf "%.3f" .VCPUPer1k}}{{else}}-{{end}}</td><td>{{with .Usage}}{{printf "%.1f" .PeakRSSMB}}{{else}}-{{end}}</td></tr>
{{end}}</table>{{end}}
{{if .R.Scale}}<table><tr><th>routes</th><th>method</th><th>apply s</th><th>idle RSS MB</th><th>RSS MB</th><th>peak RSS MB</th><th>KB/route</th><th>error</th></tr>
{{range .R.Scale}}<tr><td>{{.Routes}}</td><td>{{.Method}}</td><td>{{printf "%.3f" .ApplyS}}</td><td>{{printf "%.1f" .IdleRSSMB}}</td><td>{{printf "%.1f" .RSSMB}}</td><td>{{printf "%.1f" .PeakRSSMB}}</td><td>{{printf "%.2f" .KBPerRoute}}</td><td>{{.Error}}</td></tr>{{end}}</table>{{end}}
{{with .R.Churn}}<p>Config pushes: {{.Pushes}} (every {{printf "%.0f" .PushedEvery}} ms), failed {{.PushErrors}}, push latency p50 {{printf "%.2f" .PushP50MS}} ms, max {{printf "%.2f" .PushMaxMS}} ms. {{.FirstError}}</p>{{end}}
{{if .Plots}}<h2>Latency by percentile</h2><div class="plots">{{range .Plots}}<div class="plot">{{.}}</div>{{end}}</div>{{end}}
{{range .R.Skipped}}<p class="note">skipped {{.Target}}: {{.Reason}}</p>{{end}}
{{range .R.Notes}}<p class="note">{{.}}</p>{{end}}
</body></html>
`))

// WriteHTML writes a self-contained HTML report: tables plus an overview
// plot and one latency-by-percentile SVG per target (direct is drawn dashed
// in each for reference). It needs no network to view.
func (r *Report) WriteHTML(w io.Writer) error {
	yMin, yMax := math.Inf(1), 0.0
	var direct []stats.CurvePoint
	for _, t := range r.Targets {
		for _, p := range t.Curve {
			yMin, yMax = math.Min(yMin, p.LatencyMS), math.Max(yMax, p.LatencyMS)
		}
		if t.Name == directName {
			direct = t.Curve
		}
	}
	yMin, yMax = decadeBounds(yMin, yMax)
	var plots []template.HTML
	if len(r.Targets) > 1 {
		var all []series
		for i, t := range r.Targets {
			all = append(all, series{name: t.Name, color: palette[i%len(palette)], curve: t.Curve})
		}
		plots = append(plots, percentilePlot(overviewTitle, all, yMin, yMax))
	}
	for i, t := range r.Targets {
		ss := []series{{name: t.Name, color: palette[i%len(palette)], curve: t.Curve}}
		if direct != nil && t.Name != directName {
			ss = append(ss, series{name: directName + " (reference)", color: "#999", style: referenceStroke, curve: direct})
		}
		plots = append(plots, percentilePlot(t.Name, ss, yMin, yMax))
	}
	if err := page.Execute(w, map[string]any{"R": r, "Plots": plots}); err != nil {
		return fmt.Errorf("report: html: %w", err)
	}
	return nil
}
