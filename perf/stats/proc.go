package stats

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// ErrProcFormat reports a /proc file perf could not parse.
var ErrProcFormat = errors.New("stats: unexpected /proc format")

// clockTicks is USER_HZ, the unit of utime/stime in /proc/<pid>/stat. It is
// 100 on every Linux architecture Go supports (the kernel ABI fixes it).
const clockTicks = 100

// ProcSample is one reading of a process's CPU time and memory.
type ProcSample struct {
	// At is when the sample was taken.
	At time.Time
	// CPU is utime+stime, all threads.
	CPU time.Duration
	// RSSKB is the current resident set (VmRSS) in KiB.
	RSSKB int64
	// HWMKB is the peak resident set (VmHWM) in KiB.
	HWMKB int64
}

// ReadProc samples process pid from /proc. It fails if the process is gone.
func ReadProc(pid int) (ProcSample, error) {
	s := ProcSample{At: time.Now()}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, fmt.Errorf("stats: read stat of pid %d: %w", pid, err)
	}
	cpu, err := ParseStatCPU(stat)
	if err != nil {
		return s, err
	}
	s.CPU = cpu
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, fmt.Errorf("stats: read status of pid %d: %w", pid, err)
	}
	s.RSSKB, s.HWMKB, err = ParseStatusMemory(status)
	return s, err
}

// ParseStatCPU returns utime+stime from the content of /proc/<pid>/stat.
// The command name (field 2) may hold spaces and parentheses, so fields are
// counted from the last ')'.
func ParseStatCPU(stat []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("%w: stat has no ')'", ErrProcFormat)
	}
	// After ')': field 3 (state) is index 0; utime is field 14, stime 15.
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("%w: stat has %d fields after comm, want >= 13", ErrProcFormat, len(f))
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 63)
	st, err2 := strconv.ParseUint(f[12], 10, 63)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("%w: utime/stime: %w", ErrProcFormat, err)
	}
	ticks := ut + st
	if ticks > uint64(1<<62)/uint64(time.Second/clockTicks) {
		return 0, fmt.Errorf("%w: utime+stime %d ticks out of range", ErrProcFormat, ticks)
	}
	return time.Duration(ticks) * (time.Second / clockTicks), nil
}

// ParseStatusMemory returns VmRSS and VmHWM in KiB from the content of
// /proc/<pid>/status. A missing line (kernel threads) is an error.
func ParseStatusMemory(status []byte) (rssKB, hwmKB int64, err error) {
	var haveRSS, haveHWM bool
	for _, line := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return 0, 0, fmt.Errorf("%w: %s line %q", ErrProcFormat, k, line)
		}
		n, perr := strconv.ParseInt(f[0], 10, 64)
		if perr != nil || n < 0 {
			return 0, 0, fmt.Errorf("%w: %s value %q", ErrProcFormat, k, f[0])
		}
		if k == "VmRSS" {
			rssKB, haveRSS = n, true
		} else {
			hwmKB, haveHWM = n, true
		}
	}
	if !haveRSS || !haveHWM {
		return 0, 0, fmt.Errorf("%w: status lacks VmRSS/VmHWM", ErrProcFormat)
	}
	return rssKB, hwmKB, nil
}

// Usage is the resource use of a target over a measured interval.
type Usage struct {
	// CPUSeconds is utime+stime consumed during the interval.
	CPUSeconds float64 `json:"cpu_seconds"`
	// WallSeconds is the length of the interval.
	WallSeconds float64 `json:"wall_seconds"`
	// RSSMB is the resident set at the end of the interval, MiB.
	RSSMB float64 `json:"rss_mb"`
	// PeakRSSMB is VmHWM at the end of the interval, MiB.
	PeakRSSMB float64 `json:"peak_rss_mb"`
}

// Between returns the usage from sample a to a later sample b of the same
// process.
func Between(a, b ProcSample) Usage {
	return Usage{
		CPUSeconds:  (b.CPU - a.CPU).Seconds(),
		WallSeconds: b.At.Sub(a.At).Seconds(),
		RSSMB:       float64(b.RSSKB) / 1024,
		PeakRSSMB:   float64(b.HWMKB) / 1024,
	}
}

// VCPUPer1kRPS is the CPU used per 1000 requests per second: cores busy
// divided by thousands of rps. It is 0 when rps is 0.
func (u Usage) VCPUPer1kRPS(rps float64) float64 {
	if rps <= 0 || u.WallSeconds <= 0 {
		return 0
	}
	return (u.CPUSeconds / u.WallSeconds) / (rps / 1000)
}
