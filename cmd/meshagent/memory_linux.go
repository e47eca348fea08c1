package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// trimExecutable advises the kernel that the read-only mappings of this
// process's executable (text, rodata, pclntab) are not needed
// (MADV_DONTNEED). Go touches most of a large binary's init code and
// protobuf descriptors once at startup, and the kernel's fault-around maps
// 64 KiB around every touch; those clean, file-backed pages then count in
// RSS for the process's lifetime. Dropping the mappings is safe for
// read-only private mappings: a later access faults the page back in from
// the page cache (the file is never modified). Writable mappings, and read-only
// ones holding private copies, are never touched. It returns the bytes advised.
func trimExecutable() (int64, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, fmt.Errorf("memory trim: %w", err)
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return 0, fmt.Errorf("memory trim: %w", err)
	}
	defer f.Close()
	// A read-only mapping may still hold private copies (RELRO of a
	// dynamically linked build is written, then made read-only): those
	// mappings report Anonymous pages and are left alone, since dropping
	// them would revert the pages to the file's content.
	var ranges [][2]uint64
	var cur [2]uint64
	inExe := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fs := strings.Fields(line)
		if len(fs) == 0 {
			continue
		}
		if lo, hi, ok := strings.Cut(fs[0], "-"); ok && len(fs) >= 5 {
			// 00400000-01125000 r-xp 00000000 fe:00 9986339   /path/to/exe
			inExe = false
			a, err1 := strconv.ParseUint(lo, 16, 64)
			b, err2 := strconv.ParseUint(hi, 16, 64)
			if err1 == nil && err2 == nil && b > a && len(fs) >= 6 && fs[5] == exe && !strings.Contains(fs[1], "w") {
				inExe, cur = true, [2]uint64{a, b}
			}
			continue
		}
		if inExe && fs[0] == "Anonymous:" && len(fs) >= 2 {
			if fs[1] == "0" {
				ranges = append(ranges, cur)
			}
			inExe = false
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("memory trim: /proc/self/smaps: %w", err)
	}
	var n int64
	for _, r := range ranges {
		_, _, e := syscall.Syscall(syscall.SYS_MADVISE, uintptr(r[0]), uintptr(r[1]-r[0]), syscall.MADV_DONTNEED)
		if e != 0 {
			return n, fmt.Errorf("memory trim: madvise %#x-%#x: %w", r[0], r[1], e)
		}
		n += int64(r[1] - r[0])
	}
	return n, nil
}
