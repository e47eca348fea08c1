package main

import (
	"log/slog"
	"os"
	"regexp"
	"runtime"
	"runtime/debug"
	"strconv"
	"testing"
)

// rssFileKB reads RssFile (file-backed resident pages) of this process.
func rssFileKB(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status: %v", err)
	}
	m := regexp.MustCompile(`RssFile:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		t.Skip("kernel does not report RssFile")
	}
	n, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return n
}

func TestTrimExecutableDropsFileBackedPages(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("trimExecutable is Linux only")
	}
	before := rssFileKB(t)
	n, err := trimExecutable()
	if err != nil {
		t.Fatal(err)
	}
	after := rssFileKB(t)
	if n <= 0 {
		t.Fatalf("trimExecutable advised %d bytes, want the executable's read-only mappings", n)
	}
	if after >= before {
		t.Fatalf("RssFile %d kB after trim, %d kB before: want fewer", after, before)
	}
	// The process keeps working: code and read-only data fault back in.
	runtime.GC()
	if _, err := strconv.Atoi("12345"); err != nil {
		t.Fatal(err)
	}
	t.Logf("RssFile %d kB -> %d kB (advised %d MB)", before, after, n>>20)
}

func TestApplyGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	for _, tc := range []struct {
		name string
		flag int
		env  string
		want int
	}{
		{"default", 0, "", defaultGCPercent},
		{"flag wins", 80, "200", 80},
		{"env kept", 0, "200", 100}, // the runtime read GOGC at start; applyGC leaves it
		{"off", -1, "", -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetGCPercent(100)
			t.Setenv("GOGC", tc.env)
			if tc.env == "" {
				os.Unsetenv("GOGC")
			}
			c := memConfig{gcPercent: tc.flag}
			c.applyGC(slog.New(slog.DiscardHandler))
			if got := debug.SetGCPercent(100); got != tc.want {
				t.Fatalf("GC percent %d, want %d", got, tc.want)
			}
		})
	}
}
