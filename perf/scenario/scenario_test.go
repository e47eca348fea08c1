package scenario

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshagent/meshagent/perf/backend"
	"github.com/meshagent/meshagent/perf/load"
	"github.com/meshagent/meshagent/perf/report"
	"github.com/meshagent/meshagent/perf/target"
)

func startBackend(t *testing.T) target.Backend {
	t.Helper()
	s, err := backend.Start(backend.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return target.Backend{HTTPAddr: s.HTTPAddr, GRPCAddr: s.GRPCAddr, TCPAddr: s.TCPAddr}
}

var (
	meshOnce sync.Once
	meshBin  string
	meshWhy  string
	meshDir  string // temporary build directory, removed by TestMain
)

func TestMain(m *testing.M) {
	code := m.Run()
	if meshDir != "" {
		_ = os.RemoveAll(meshDir)
	}
	os.Exit(code)
}

// meshagentBin returns a meshagent binary that has the `run` command:
// $PERF_MESHAGENT, else one built from ./cmd/meshagent. It returns "" and
// the reason when there is none.
func meshagentBin(t *testing.T) (string, string) {
	meshOnce.Do(func() {
		if p := os.Getenv("PERF_MESHAGENT"); p != "" {
			meshBin = p
			return
		}
		goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
		if _, err := os.Stat(goBin); err != nil {
			if goBin, err = exec.LookPath("go"); err != nil {
				meshWhy = "no go toolchain to build meshagent (set PERF_MESHAGENT)"
				return
			}
		}
		dir, err := os.MkdirTemp("", "perf-meshagent-bin-")
		if err != nil {
			meshWhy = err.Error()
			return
		}
		meshDir = dir
		out := filepath.Join(dir, "meshagent")
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, goBin, "build", "-o", out, "github.com/meshagent/meshagent/cmd/meshagent")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			meshWhy = "cannot build meshagent: " + strings.TrimSpace(string(b))
			return
		}
		if b, _ := exec.Command(out, "run", "-h").CombinedOutput(); strings.Contains(string(b), "unknown command") {
			meshWhy = "meshagent has no `run` command yet"
			return
		}
		meshBin = out
	})
	return meshBin, meshWhy
}

func TestCompareSmoke(t *testing.T) {
	b := startBackend(t)
	tests := []struct {
		proto load.Protocol
		conns int
	}{{load.HTTP1, 2}, {load.H2, 2}, {load.GRPC, 2}, {load.TCP, 1}}
	for _, tc := range tests {
		t.Run(tc.proto.String(), func(t *testing.T) {
			targets := []target.Target{&target.Direct{}, &target.Nginx{}, &target.HAProxy{}}
			if bin, why := meshagentBin(t); bin != "" {
				targets = append(targets, &target.Meshagent{Bin: bin})
			} else {
				t.Logf("meshagent not measured: %s", why)
			}
			rep, err := Compare(context.Background(), CompareConfig{
				Backend: b, Targets: targets, Protocol: tc.proto, Rounds: 2,
				Load: load.Options{Connections: tc.conns, Duration: 300 * time.Millisecond, Warmup: 100 * time.Millisecond},
			})
			if err != nil {
				t.Fatal(err)
			}
			checkCompare(t, rep, len(targets))
		})
	}
}

func checkCompare(t *testing.T, rep *report.Report, nTargets int) {
	t.Helper()
	for _, s := range rep.Skipped {
		t.Logf("skipped %s: %s", s.Target, s.Reason)
		if s.Reason == "" {
			t.Errorf("skip of %s has no reason", s.Target)
		}
	}
	if len(rep.Targets)+len(rep.Skipped) < nTargets {
		t.Errorf("%d results + %d skipped, want >= %d", len(rep.Targets), len(rep.Skipped), nTargets)
	}
	if len(rep.Targets) == 0 || rep.Targets[0].Name != "direct" {
		t.Fatalf("first target is not direct: %+v", rep.Targets)
	}
	for _, tg := range rep.Targets {
		t.Logf("%-9s rps=%8.0f p50=%.3fms p99=%.3fms errors=%v", tg.Name, tg.RPS, tg.Latency.P50, tg.Latency.P99, tg.Errors)
		if tg.Name == "meshagent" {
			// The data plane is developed concurrently: report, don't fail.
			if len(tg.Errors) > 0 {
				t.Logf("meshagent errors: %v (%s)", tg.Errors, tg.LastError)
			}
			continue
		}
		if len(tg.Errors) != 0 || tg.RPS <= 0 || tg.Requests == 0 {
			t.Errorf("%s: rps=%v errors=%v last=%s", tg.Name, tg.RPS, tg.Errors, tg.LastError)
		}
		if tg.Name == "direct" {
			if tg.Ratio != nil || tg.Usage != nil {
				t.Errorf("direct (in-process) must have no ratio and no usage")
			}
			continue
		}
		if tg.Ratio == nil || tg.Ratio.Throughput <= 0 {
			t.Errorf("%s: no ratio to direct", tg.Name)
		}
		if tg.Usage == nil || tg.Usage.PeakRSSMB <= 0 || tg.Usage.CPUSeconds <= 0 {
			t.Errorf("%s: usage = %+v, want CPU and RSS of its process", tg.Name, tg.Usage)
		}
	}
}

func TestTCPBulkSmoke(t *testing.T) {
	b := startBackend(t)
	targets := []target.Target{&target.Direct{}, &target.HAProxy{}, &target.Nginx{}}
	if bin, _ := meshagentBin(t); bin != "" {
		targets = append(targets, &target.Meshagent{Bin: bin})
	}
	rep, err := Compare(context.Background(), CompareConfig{
		Backend: b, Targets: targets, Protocol: load.TCPBulk, Client: load.ClientConfig{Payload: 256 << 10},
		Load: load.Options{Connections: 1, Duration: 300 * time.Millisecond, Warmup: 100 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Scenario != "tcp" {
		t.Errorf("scenario = %q", rep.Scenario)
	}
	checkCompare(t, rep, len(targets))
	for _, tg := range rep.Targets {
		if tg.Name != "meshagent" && tg.MBps <= 0 {
			t.Errorf("%s: MB/s = %v", tg.Name, tg.MBps)
		}
	}
}

func TestUnavailableTargetsAreSkipped(t *testing.T) {
	b := startBackend(t)
	rep, err := Compare(context.Background(), CompareConfig{
		Backend: b, Protocol: load.HTTP1,
		Targets: []target.Target{&target.Direct{}, &target.Meshagent{Bin: "/nonexistent/meshagent"},
			&target.Nginx{Bin: "/nonexistent/nginx"}, &target.Meshagent{Bin: "/bin/false"}},
		Load: load.Options{Connections: 1, Requests: 50},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Targets) != 1 || len(rep.Skipped) != 3 {
		t.Fatalf("targets=%d skipped=%+v", len(rep.Targets), rep.Skipped)
	}
	for i, want := range []string{"not found", "nginx not installed", "exited"} {
		if !strings.Contains(rep.Skipped[i].Reason, want) {
			t.Errorf("skip %d reason %q lacks %q", i, rep.Skipped[i].Reason, want)
		}
	}
	if rep.Targets[0].Requests != 50 {
		t.Errorf("direct requests = %d, want 50", rep.Targets[0].Requests)
	}
}

func TestChurnSmoke(t *testing.T) {
	bin, why := meshagentBin(t)
	b := startBackend(t)
	if bin == "" {
		// Without a data plane the scenario must skip with the reason.
		rep, err := Churn(context.Background(), ChurnConfig{Backend: b, Meshagent: &target.Meshagent{Bin: "/nonexistent"},
			Load: load.Options{Connections: 1, Duration: 200 * time.Millisecond}})
		if err != nil || len(rep.Skipped) != 1 {
			t.Fatalf("churn without meshagent: %v %+v", err, rep)
		}
		t.Skipf("meshagent unavailable: %s", why)
	}
	rep, err := Churn(context.Background(), ChurnConfig{Backend: b, Meshagent: &target.Meshagent{Bin: bin},
		Load: load.Options{Connections: 2, Duration: 600 * time.Millisecond, Warmup: 100 * time.Millisecond}, Pushes: 5})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Skipped) > 0 {
		t.Skipf("meshagent could not run churn: %s", rep.Skipped[0].Reason)
	}
	if len(rep.Targets) != 2 || rep.Targets[0].Name != "before" || rep.Targets[1].Name != "during" {
		t.Fatalf("targets = %+v", rep.Targets)
	}
	if rep.Churn == nil || rep.Churn.Pushes != 5 || rep.Churn.PushErrors != 0 {
		t.Fatalf("churn = %+v", rep.Churn)
	}
	t.Logf("churn: %+v; before %v errors, during %v errors", rep.Churn, rep.Targets[0].Errors, rep.Targets[1].Errors)
}

func TestScaleSmoke(t *testing.T) {
	bin, why := meshagentBin(t)
	if bin == "" {
		t.Skipf("meshagent unavailable: %s", why)
	}
	b := startBackend(t)
	rep, err := Scale(context.Background(), ScaleConfig{Backend: b, Sizes: []int{100},
		NewMeshagent: func() *target.Meshagent { return &target.Meshagent{Bin: bin} }, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Skipped) > 0 {
		t.Skipf("meshagent could not run scale: %s", rep.Skipped[0].Reason)
	}
	if len(rep.Scale) != 2 {
		t.Fatalf("scale = %+v", rep.Scale)
	}
	for _, s := range rep.Scale {
		t.Logf("%+v", s)
		if s.Error != "" || s.ApplyS <= 0 || s.RSSMB <= 0 {
			t.Errorf("%s: %+v", s.Method, s)
		}
	}
}

func TestScaleValidates(t *testing.T) {
	nm := func() *target.Meshagent { return &target.Meshagent{} }
	for _, c := range []ScaleConfig{{}, {NewMeshagent: nm, Sizes: []int{0}}, {NewMeshagent: nm, Methods: []string{"ftp"}}} {
		if _, err := Scale(context.Background(), c); err == nil {
			t.Errorf("Scale(%+v) accepted", c)
		}
	}
	routes, ups, err := ScaleObjects(target.Backend{HTTPAddr: "127.0.0.1:8080"}, 3)
	if err != nil || len(routes) != 3 || len(ups) != 3 || routes[2].URI != "/scale/2" || routes[2].UpstreamID != ups[2].ID ||
		ups[0].Nodes[0].Port != 8080 {
		t.Errorf("ScaleObjects = %+v %+v %v", routes, ups, err)
	}
}
