// Package wrk drives the wrk HTTP/1.1 benchmarking tool as perf's load
// generator, in place of perf's own clients: one run is
// `wrk -t T -c N -d D -T timeout --latency -s done.lua URL`, where done.lua
// (written to a temporary file per run) prints wrk's exact results, its
// whole latency histogram included; Parse reads wrk's output and
// Output.Result turns it into a load.Result, so reports built from wrk look
// like those of perf's own clients and merge over rounds. It does not
// start targets nor format reports.
package wrk

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/meshagent/meshagent/perf/load"
)

var (
	// ErrNotFound means the wrk binary is not installed (or not at the
	// given path).
	ErrNotFound = errors.New("wrk: binary not found")
	// ErrOptions reports load options wrk cannot run.
	ErrOptions = errors.New("wrk: unsupported options")
)

//go:embed done.lua
var doneScript []byte

// maxOutput bounds what perf keeps of one run's stdout: the histogram has
// at most one line per distinct microsecond value up to the timeout.
const maxOutput = 64 << 20

// Runner runs wrk against a target. The zero value runs "wrk" from PATH
// with one thread, path "/" and a 5 s timeout.
type Runner struct {
	// Bin is the wrk binary (default "wrk", looked up on PATH).
	Bin string
	// Threads is wrk's -t (default 1), capped at the connections; the
	// connections must be a multiple of it (wrk gives each thread N/T).
	Threads int
	// Path is the request path (default "/").
	Path string
	// Timeout is wrk's -T, rounded up to whole seconds (default 5 s):
	// slower requests count as timeout errors.
	Timeout time.Duration
}

// Name is the load generator's name in progress lines and notes.
func (*Runner) Name() string { return "wrk" }

// bin returns the wrk binary's path or ErrNotFound naming it.
func (r *Runner) bin() (string, error) {
	name := r.Bin
	if name == "" {
		name = "wrk"
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%w: %q (install wrk, e.g. `apt-get install wrk`, or pass its path): %v", ErrNotFound, name, err)
	}
	return p, nil
}

// threads is -t for n connections.
func (r *Runner) threads(n int) int {
	t := r.Threads
	if t <= 0 {
		t = 1
	}
	return min(t, n)
}

// Check reports whether wrk can run protocol p with options o: HTTP/1.1
// only, a closed loop for a duration, times in whole seconds (wrk's
// resolution), and the binary installed.
func (r *Runner) Check(p load.Protocol, o load.Options) error {
	if err := o.Validate(); err != nil {
		return err
	}
	switch {
	case p != load.HTTP1:
		return fmt.Errorf("%w: wrk speaks HTTP/1.1 only, not %s", ErrOptions, p)
	case o.Rate > 0:
		return fmt.Errorf("%w: wrk runs a closed loop only (no rate)", ErrOptions)
	case o.Requests > 0:
		return fmt.Errorf("%w: wrk runs for a duration, not a request count", ErrOptions)
	case o.Duration < time.Second || o.Duration%time.Second != 0:
		return fmt.Errorf("%w: duration %v: wrk runs whole seconds (>= 1s)", ErrOptions, o.Duration)
	case o.Warmup%time.Second != 0:
		return fmt.Errorf("%w: warm-up %v: wrk runs whole seconds", ErrOptions, o.Warmup)
	case o.Connections%r.threads(o.Connections) != 0:
		return fmt.Errorf("%w: %d connections are not a multiple of %d threads", ErrOptions, o.Connections, r.threads(o.Connections))
	}
	_, err := r.bin()
	return err
}

// Warmup runs wrk for o.Warmup (if any) and discards the results; only a
// failure to run is an error.
func (r *Runner) Warmup(ctx context.Context, addr string, o load.Options) error {
	if o.Warmup <= 0 {
		return nil
	}
	_, err := r.run(ctx, addr, o.Connections, o.Warmup)
	return err
}

// Run runs wrk for o.Duration against addr and returns the measured result.
func (r *Runner) Run(ctx context.Context, addr string, o load.Options) (*load.Result, error) {
	out, err := r.run(ctx, addr, o.Connections, o.Duration)
	if err != nil {
		return nil, err
	}
	res, err := out.Result()
	if err != nil {
		return nil, fmt.Errorf("wrk against %s: %w", addr, err)
	}
	return res, nil
}

// run executes one wrk run and parses its output.
func (r *Runner) run(ctx context.Context, addr string, conns int, d time.Duration) (*Output, error) {
	bin, err := r.bin()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "perf-wrk-")
	if err != nil {
		return nil, fmt.Errorf("wrk: script directory: %w", err)
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "done.lua")
	if err := os.WriteFile(script, doneScript, 0o600); err != nil {
		return nil, fmt.Errorf("wrk: write script: %w", err)
	}
	args := r.args(addr, conns, d, script)
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr limitedBuffer
	stdout.limit, stderr.limit = maxOutput, 64<<10
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("wrk: run canceled: %w", ctx.Err())
		}
		return nil, fmt.Errorf("wrk %s: %v: %s", strings.Join(args, " "), err, tail(stderr.String()+stdout.String()))
	}
	if stdout.cut {
		return nil, fmt.Errorf("wrk: output over %d bytes", maxOutput)
	}
	out, err := Parse(stdout.Bytes())
	if err != nil {
		return nil, fmt.Errorf("wrk against %s: %w; stderr: %s", addr, err, tail(stderr.String()))
	}
	return out, nil
}

// args is wrk's command line for one run.
func (r *Runner) args(addr string, conns int, d time.Duration, script string) []string {
	path := r.Path
	if path == "" {
		path = "/"
	}
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	secs := func(d time.Duration) string {
		return strconv.FormatInt(max(1, int64((d+time.Second-1)/time.Second)), 10) + "s"
	}
	return []string{"-t", strconv.Itoa(r.threads(conns)), "-c", strconv.Itoa(conns), "-d", secs(d),
		"-T", secs(timeout), "--latency", "-s", script, "http://" + addr + path}
}

// limitedBuffer keeps the first limit bytes written and notes the rest.
type limitedBuffer struct {
	bytes.Buffer
	limit int
	cut   bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.limit - b.Len(); len(p) > room {
		b.cut = true
		b.Buffer.Write(p[:max(room, 0)])
		return len(p), nil
	}
	return b.Buffer.Write(p)
}

// tail is the end of a process's output, for error messages.
func tail(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 2000 {
		s = "..." + s[len(s)-2000:]
	}
	return s
}
