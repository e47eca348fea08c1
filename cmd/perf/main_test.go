package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestMain lets the test binary act as the `perf backend` child, which
// startBackend launches through os.Executable.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "backend" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
		err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
		stop()
		if err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestCompareCommand(t *testing.T) {
	dir := t.TempDir()
	jf, hf := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.html")
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"compare", "--targets", "direct,meshagent", "--meshagent", "/nonexistent",
		"--duration", "300ms", "--warmup", "100ms", "--rounds", "2", "--connections", "2", "--json", jf, "--html", hf},
		&out, &errOut)
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	for _, s := range []string{"direct", "skipped meshagent", "p99 ms"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("stdout lacks %q:\n%s", s, out.String())
		}
	}
	if !strings.Contains(errOut.String(), "\r[compare]") {
		t.Errorf("no progress line on stderr: %q", errOut.String())
	}
	var rep struct {
		Targets []struct {
			Name  string
			Usage *struct {
				CPUSeconds float64 `json:"cpu_seconds"`
			}
		}
	}
	b, err := os.ReadFile(jf)
	if err != nil || json.Unmarshal(b, &rep) != nil || len(rep.Targets) != 1 {
		t.Fatalf("json report: %v %s", err, b)
	}
	// The backend ran as a child process, so direct has CPU figures.
	if rep.Targets[0].Usage == nil || rep.Targets[0].Usage.CPUSeconds <= 0 {
		t.Errorf("direct usage = %+v, want the backend child's CPU", rep.Targets[0].Usage)
	}
	if h, err := os.ReadFile(hf); err != nil || !bytes.Contains(h, []byte("<svg ")) {
		t.Errorf("html report: %v", err)
	}
	// perf report re-renders the saved JSON.
	hf2 := filepath.Join(dir, "again.html")
	var out2 bytes.Buffer
	if err := run(context.Background(), []string{"report", "--in", jf, "--html", hf2}, &out2, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out2.String(), "direct") {
		t.Errorf("re-rendered text lacks direct:\n%s", out2.String())
	}
	if h, err := os.ReadFile(hf2); err != nil || !bytes.Contains(h, []byte("<svg ")) {
		t.Errorf("re-rendered html: %v", err)
	}
}

func TestFlagErrors(t *testing.T) {
	tests := [][]string{
		{},
		{"frobnicate"},
		{"compare", "--protocol", "smtp"},
		{"compare", "--targets", "direct,envoy", "--backend-inprocess"},
		{"scale", "--sizes", "ten", "--backend-inprocess"},
		{"compare", "extra-arg"},
		{"report"},
		{"report", "--in", "/nonexistent.json"},
	}
	for _, args := range tests {
		var out, errOut bytes.Buffer
		if err := run(context.Background(), args, &out, &errOut); err == nil {
			t.Errorf("run(%q) succeeded", args)
		}
	}
	var errOut bytes.Buffer
	if err := run(context.Background(), []string{"compare", "-h"}, &bytes.Buffer{}, &errOut); !errors.Is(err, flag.ErrHelp) ||
		!strings.Contains(errOut.String(), "-connections") {
		t.Errorf("help: %v %q", err, errOut.String())
	}
	if _, err := parseReady("garbage\n"); err == nil {
		t.Error("parseReady accepted garbage")
	}
	b, err := parseReady("ready http=127.0.0.1:1 grpc=127.0.0.1:2 tcp=127.0.0.1:3\n")
	if err != nil || b.HTTPAddr != "127.0.0.1:1" || b.TCPAddr != "127.0.0.1:3" {
		t.Errorf("parseReady = %+v %v", b, err)
	}
}
