package namespace

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// children returns the host pids of process pid's children, those of every
// one of its threads.
func children(pid int) ([]int, error) {
	tasks, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	if err != nil {
		return nil, err
	}
	var kids []int
	for _, t := range tasks {
		data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + t.Name() + "/children")
		if err != nil {
			continue // the thread exited
		}
		for _, f := range strings.Fields(string(data)) {
			if p, err := strconv.Atoi(f); err == nil {
				kids = append(kids, p)
			}
		}
	}
	return kids, nil
}

// tree returns root and every host pid descending from it. No process of a
// domain escapes its tree: an orphan is re-parented to the domain's PID 1
// (its root), and the seccomp filter refuses CLONE_PARENT.
func tree(root int) []int {
	all := []int{root}
	for i := 0; i < len(all); i++ {
		kids, _ := children(all[i])
		all = append(all, kids...)
	}
	return all
}

// nsPid returns host process pid's pid in its innermost PID namespace.
func nsPid(pid int) (int, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "NSpid:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				return strconv.Atoi(f[len(f)-1])
			}
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no NSpid", pid)
}
