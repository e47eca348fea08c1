package stats

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"runtime"
	"strings"
)

// Machine describes the host a benchmark ran on.
type Machine struct {
	NumCPU   int    `json:"nproc"`
	CPUModel string `json:"cpu_model"`
	MemTotal string `json:"mem_total"`
	Kernel   string `json:"kernel"`
	Go       string `json:"go"`
	Nginx    string `json:"nginx,omitempty"`
	HAProxy  string `json:"haproxy,omitempty"`
}

// DescribeMachine reads /proc and asks nginx/haproxy (when on PATH) for
// their versions. Missing facts are left empty.
func DescribeMachine() Machine {
	m := Machine{NumCPU: runtime.NumCPU(), Go: runtime.Version()}
	m.CPUModel = procField("/proc/cpuinfo", "model name")
	m.MemTotal = procField("/proc/meminfo", "MemTotal")
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	m.Nginx = firstLine(toolVersion("nginx", "-v"))
	m.HAProxy = firstLine(toolVersion("haproxy", "-v"))
	return m
}

func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func toolVersion(name string, args ...string) string {
	p, err := exec.LookPath(name)
	if err != nil {
		return ""
	}
	out, err := exec.Command(p, args...).CombinedOutput()
	if err != nil {
		return ""
	}
	return string(bytes.TrimSpace(out))
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
