package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshagent/meshagent/perf/load"
	"github.com/meshagent/meshagent/perf/stats"
)

func result(base time.Duration, n int, errs int) *load.Result {
	r := &load.Result{Latency: stats.NewHistogram(), Elapsed: time.Second}
	for i := range n {
		r.Latency.Record(base + time.Duration(i)*time.Microsecond)
	}
	r.OK = int64(n - errs)
	for range errs {
		r.Errors.Add(stats.ErrReset)
	}
	if errs > 0 {
		r.LastErr = errors.New("connection reset")
	}
	return r
}

func sample() *Report {
	r := &Report{Schema: SchemaVersion, Scenario: "compare", Started: time.Unix(1700000000, 0), Machine: stats.DescribeMachine(),
		Params: Params{Protocol: "http1", Connections: 4, DurationS: 1, WarmupS: 0.5, Rounds: 2}}
	u := &stats.Usage{CPUSeconds: 0.5, WallSeconds: 1, RSSMB: 9, PeakRSSMB: 10}
	r.Targets = []Target{
		FromResult("direct", result(100*time.Microsecond, 1000, 0), nil, 0, 0),
		FromResult("meshagent", result(250*time.Microsecond, 800, 0), u, 8, 0),
		FromResult("nginx<&>", result(200*time.Microsecond, 500, 5), u, 8, 0),
	}
	r.Skipped = []Skip{{Target: "haproxy", Reason: "haproxy not installed"}}
	r.Notes = []string{"shared machine"}
	r.AddRatios("direct")
	return r
}

func TestRatios(t *testing.T) {
	r := sample()
	if r.Targets[0].Ratio != nil {
		t.Error("direct must have no ratio to itself")
	}
	m := r.Targets[1]
	if m.Ratio == nil || m.Ratio.Throughput != 0.8 {
		t.Fatalf("meshagent ratio = %+v, want throughput 0.8", m.Ratio)
	}
	if d := m.Ratio.AddedP50MS; d < 0.045 || d > 0.055 {
		t.Errorf("added p50 = %v ms, want ~0.05", d)
	}
	if v := m.VCPUPer1k; v < 0.62 || v > 0.63 { // 0.5 cores / 0.8 krps
		t.Errorf("vcpu per 1k rps = %v, want 0.625", v)
	}
	if r.Targets[2].Errors["reset"] != 5 || r.Targets[2].LastError == "" {
		t.Errorf("nginx errors = %v %q", r.Targets[2].Errors, r.Targets[2].LastError)
	}
}

func TestJSONSchema(t *testing.T) {
	var buf bytes.Buffer
	if err := sample().WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"schema", "scenario", "started", "machine", "params", "targets", "skipped", "notes"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("top-level key %q missing", k)
		}
	}
	if doc["schema"].(float64) != SchemaVersion {
		t.Errorf("schema = %v", doc["schema"])
	}
	ts := doc["targets"].([]any)
	if len(ts) != 3 {
		t.Fatalf("%d targets", len(ts))
	}
	want := map[string][]string{
		"":          {"name", "requests", "errors", "elapsed_s", "rps", "latency", "curve"},
		"latency":   {"p50_ms", "p90_ms", "p99_ms", "p99_9_ms", "max_ms", "mean_ms"},
		"vs_direct": {"throughput", "added_p50_ms", "added_p99_ms"},
		"usage":     {"cpu_seconds", "wall_seconds", "rss_mb", "peak_rss_mb"},
	}
	mesh := ts[1].(map[string]any)
	for sub, keys := range want {
		obj := mesh
		if sub != "" {
			obj = mesh[sub].(map[string]any)
		}
		for _, k := range keys {
			if _, ok := obj[k]; !ok {
				t.Errorf("targets[1].%s.%s missing", sub, k)
			}
		}
	}
	if _, ok := mesh["vcpu_per_1k_rps"]; !ok {
		t.Error("vcpu_per_1k_rps missing")
	}
	// Round trip into the Go type.
	var back Report
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil || back.Targets[1].Latency != sample().Targets[1].Latency {
		t.Errorf("round trip: %v %+v", err, back.Targets[1].Latency)
	}
}

func TestHTMLHasOneSVGPerTarget(t *testing.T) {
	var buf bytes.Buffer
	r := sample()
	if err := r.WriteHTML(&buf); err != nil {
		t.Fatal(err)
	}
	h := buf.String()
	// One plot per target plus the overview.
	if n := strings.Count(h, "<svg "); n != len(r.Targets)+1 {
		t.Errorf("%d <svg> elements, want %d", n, len(r.Targets)+1)
	}
	for _, tg := range r.Targets {
		label := strings.NewReplacer("<", "&lt;", "&", "&amp;", ">", "&gt;").Replace(tg.Name)
		if !strings.Contains(h, `aria-label="`+label+` latency by percentile"`) {
			t.Errorf("no plot for %q", tg.Name)
		}
	}
	for _, s := range []string{"<polyline", "99.99%", "haproxy not installed", "shared machine", "<table>"} {
		if !strings.Contains(h, s) {
			t.Errorf("html lacks %q", s)
		}
	}
	if strings.Contains(h, "nginx<&>") {
		t.Error("target name not escaped")
	}
	if strings.Contains(h, "href=") || strings.Contains(h, "src=") || strings.Contains(h, "<script") {
		t.Error("html must be self-contained (no links, no scripts)")
	}
	// Files are written whole.
	p := filepath.Join(t.TempDir(), "r.html")
	if err := r.WriteFile(p, (*Report).WriteHTML); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(p); err != nil || !bytes.Equal(b, buf.Bytes()) {
		t.Errorf("file differs: %v", err)
	}
}

func TestTextTable(t *testing.T) {
	var buf bytes.Buffer
	r := sample()
	r.Scale = []ScaleResult{{Routes: 1000, Method: "etcd", ApplyS: 0.5, RSSMB: 20, IdleRSSMB: 10, KBPerRoute: 10.24}}
	r.Churn = &ChurnResult{Pushes: 5, PushErrors: 1, FirstError: "boom"}
	if err := r.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, s := range []string{"target", "p99.9 ms", "x direct", "vCPU/1k rps", "direct", "meshagent", "0.800", "reset=5",
		"skipped haproxy: haproxy not installed", "1000", "10.24", "config pushes: 5", "first push error: boom"} {
		if !strings.Contains(out, s) {
			t.Errorf("text lacks %q:\n%s", s, out)
		}
	}
	lines := strings.Split(out, "\n")
	var header, row string
	for i, l := range lines {
		if strings.Contains(l, "p50 ms") && strings.Contains(l, "target") {
			header, row = l, lines[i+1]
		}
	}
	if header == "" || len(header) != len(row) {
		t.Errorf("table not aligned:\n%s\n%s", header, row)
	}
}

func TestProgressRewritesOneLine(t *testing.T) {
	var buf bytes.Buffer
	p := NewProgress(&buf)
	p.Update("long line %d", 12345)
	p.Update("short")
	p.Done()
	if got, want := buf.String(), "\rlong line 12345\rshort          \n"; got != want {
		t.Errorf("progress = %q, want %q", got, want)
	}
	var nilP *Progress
	nilP.Update("x") // no panic
	nilP.Done()
}
