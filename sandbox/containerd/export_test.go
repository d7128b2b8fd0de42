package containerd

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Created returns how many boxes the sandbox has started.
func (s *Sandbox) Created() int64 { return s.pool.Created() }

// BoxCPU returns the CPU time used by the live boxes' processes (their
// cgroups' cpuacct.usage, or cpu.stat usage_usec on cgroup v2).
func (s *Sandbox) BoxCPU() time.Duration {
	s.boxMu.Lock()
	defer s.boxMu.Unlock()
	var sum time.Duration
	for _, b := range s.byID {
		if b.task != nil {
			sum += cgroupCPU(int(b.task.Pid()))
		}
	}
	return sum
}

func cgroupCPU(pid int) time.Duration {
	c, err := cgroupsOf(pid)
	if err != nil || c.cpu == "" {
		return 0
	}
	if !c.v2 {
		data, _ := os.ReadFile(filepath.Join(c.cpu, "cpuacct.usage"))
		n, _ := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
		return time.Duration(n)
	}
	data, _ := os.ReadFile(filepath.Join(c.cpu, "cpu.stat"))
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return time.Duration(n) * time.Microsecond
		}
	}
	return 0
}

// Pid is the daemon's process id.
func (d *Daemon) Pid() int { return d.cmd.Process.Pid }

// ShimPids returns the pids of the shims serving the containerd at address.
func ShimPids(address string) []int {
	var out []int
	for _, s := range shimsOf(address) {
		out = append(out, s.pid)
	}
	return out
}
