package containerd

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Created returns how many boxes the sandbox has started.
func (s *Sandbox) Created() int64 { return s.pool.created.Load() }

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
	f, err := os.Open(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, ctl := range strings.Split(parts[1], ",") {
			switch ctl {
			case "cpuacct":
				data, _ := os.ReadFile(filepath.Join("/sys/fs/cgroup", parts[1], parts[2], "cpuacct.usage"))
				n, _ := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
				return time.Duration(n)
			case "":
				data, _ := os.ReadFile(filepath.Join("/sys/fs/cgroup", parts[2], "cpu.stat"))
				for _, line := range strings.Split(string(data), "\n") {
					if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
						n, _ := strconv.ParseInt(v, 10, 64)
						return time.Duration(n) * time.Microsecond
					}
				}
			}
		}
	}
	return 0
}
