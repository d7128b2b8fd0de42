package namespace

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jobx/jobx/sandbox/internal/leftover"
	"github.com/jobx/jobx/sandbox/internal/warm"
)

// cgroupRoot is where the cgroup hierarchies are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// cgroups is a domain's control groups, made by a root runner: one per
// controller on a cgroup v1 host (memory, pids, cpu), one on a v2 host. A
// domain runs one invocation at a time, so its limits are the
// invocation's.
type cgroups struct {
	dirs   []string // every directory, removed by remove
	memory string   // the directory with memory.oom_control (v1) or memory.events (v2)
	procs  string   // a directory whose cgroup.procs lists the domain's processes
	v2     bool

	// procsFile and oomFile read procs' cgroup.procs and memory's OOM
	// count through kept descriptors (a domain reads them around every
	// run); remove closes them.
	procsFile, oomFile *warm.Kept
}

// cgroupsAvailable says whether this process can make cgroups: it is root
// and the memory and pids controllers are mounted where it can write.
func cgroupsAvailable() bool {
	if os.Geteuid() != 0 {
		return false
	}
	if v2() {
		ctl, err := os.ReadFile(filepath.Join(cgroupRoot, "cgroup.subtree_control"))
		return err == nil && strings.Contains(string(ctl), "memory") && strings.Contains(string(ctl), "pids")
	}
	for _, c := range []string{"memory", "pids"} {
		if syscall.Access(filepath.Join(cgroupRoot, c), 2) != nil {
			return false
		}
	}
	return true
}

func v2() bool {
	_, err := os.Stat(filepath.Join(cgroupRoot, "cgroup.controllers"))
	return err == nil
}

// groupParent is the cgroup (relative to each hierarchy) under which a
// sandbox keeps its domains' cgroups.
func groupParent(sandboxName string) string { return filepath.Join("jobx", sandboxName) }

// newCgroups makes the cgroups of a domain and sets its limits: memory
// bytes, pids (processes and threads) and cpu (cores; 0: no limit).
func newCgroups(parent, name string, memory, pids int64, cpu float64) (_ *cgroups, err error) {
	cg := &cgroups{v2: v2()}
	defer func() {
		if err != nil {
			cg.remove()
		}
	}()
	if cg.v2 {
		base := filepath.Join(cgroupRoot, parent)
		if err := mkdirControllers(base); err != nil {
			return nil, err
		}
		dir := filepath.Join(base, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return nil, err
		}
		cg.dirs, cg.memory, cg.procs = []string{dir}, dir, dir
		if err := writeFile(dir, "memory.max", strconv.FormatInt(memory, 10)); err != nil {
			return nil, err
		}
		writeFile(dir, "memory.swap.max", "0")
		if err := writeFile(dir, "pids.max", strconv.FormatInt(pids, 10)); err != nil {
			return nil, err
		}
		if cpu > 0 {
			if err := writeFile(dir, "cpu.max", fmt.Sprintf("%d 100000", int64(cpu*100000))); err != nil {
				return nil, err
			}
		}
		cg.keep()
		return cg, nil
	}
	ctls := []string{"memory", "pids"}
	if cpu > 0 {
		ctls = append(ctls, "cpu")
	}
	for _, c := range ctls {
		dir := filepath.Join(cgroupRoot, c, parent, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		cg.dirs = append(cg.dirs, dir)
	}
	cg.memory, cg.procs = cg.dirs[0], cg.dirs[1]
	if err := writeFile(cg.memory, "memory.limit_in_bytes", strconv.FormatInt(memory, 10)); err != nil {
		return nil, err
	}
	if err := writeFile(cg.procs, "pids.max", strconv.FormatInt(pids, 10)); err != nil {
		return nil, err
	}
	if cpu > 0 {
		if err := writeFile(cg.dirs[2], "cpu.cfs_period_us", "100000"); err != nil {
			return nil, err
		}
		if err := writeFile(cg.dirs[2], "cpu.cfs_quota_us", strconv.FormatInt(int64(cpu*100000), 10)); err != nil {
			return nil, err
		}
	}
	cg.keep()
	return cg, nil
}

// keep makes the kept readers of cg's cgroup.procs and OOM count.
func (cg *cgroups) keep() {
	cg.procsFile = warm.CgroupProcs(cg.procs, cg.v2)
	cg.oomFile = warm.OOMEvents(cg.memory, cg.v2)
}

// mkdirControllers makes the v2 cgroups from the root down to dir, each
// passing the memory, pids and cpu controllers to its children.
func mkdirControllers(dir string) error {
	rel, err := filepath.Rel(cgroupRoot, dir)
	if err != nil {
		return err
	}
	cur := cgroupRoot
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		cur = filepath.Join(cur, part)
		if err := os.Mkdir(cur, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
		if err := writeFile(cur, "cgroup.subtree_control", "+memory +pids +cpu"); err != nil {
			return fmt.Errorf("cgroup %s: enable controllers: %w", cur, err)
		}
	}
	return nil
}

func writeFile(dir, name, value string) error {
	return os.WriteFile(filepath.Join(dir, name), []byte(value), 0)
}

// add moves process pid (and its threads) into every cgroup of the domain.
func (cg *cgroups) add(pid int) error {
	for _, d := range cg.dirs {
		if err := writeFile(d, "cgroup.procs", strconv.Itoa(pid)); err != nil {
			return fmt.Errorf("cgroup %s: %w", d, err)
		}
	}
	return nil
}

// oomKills returns the count of the domain's processes killed by its
// memory limit.
func (cg *cgroups) oomKills() int64 { return cg.oomFile.OOMKills() }

// pids returns the host pids of the domain's processes.
func (cg *cgroups) pids() ([]int, error) {
	return cg.procsFile.Pids()
}

// remove kills what is left in the domain's cgroups and removes them,
// waiting up to a second for the processes to go.
func (cg *cgroups) remove() error {
	var errs []error
	if cg.procsFile != nil {
		cg.procsFile.Close()
		cg.oomFile.Close()
	}
	for _, d := range cg.dirs {
		if err := removeCgroup(d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func removeCgroup(dir string) error {
	deadline := time.Now().Add(time.Second)
	for {
		err := os.Remove(dir)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("remove cgroup %s: %w", dir, err)
		}
		pids, _ := warm.ReadPids(filepath.Join(dir, "cgroup.procs"))
		for _, p := range pids {
			syscall.Kill(p, syscall.SIGKILL)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// removeStaleCgroups removes the cgroups under parent that no live process
// holds: those of domains of a runner that died (its domains die with it).
func removeStaleCgroups(parent string) {
	var bases []string
	if v2() {
		bases = []string{filepath.Join(cgroupRoot, parent)}
	} else {
		for _, c := range []string{"memory", "pids", "cpu"} {
			bases = append(bases, filepath.Join(cgroupRoot, c, parent))
		}
	}
	for _, base := range bases {
		entries, err := os.ReadDir(base)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if !e.IsDir() {
				continue
			}
			dir := filepath.Join(base, e.Name())
			if pids, err := warm.ReadPids(filepath.Join(dir, "cgroup.procs")); err == nil && len(pids) == 0 {
				os.Remove(dir)
			}
		}
	}
}

// removeDeadCgroups removes the cgroups of the sandboxes of dead runners:
// under jobx/, those of the sandboxes named in dead (whose directories
// Sweep just removed), and those of any sandbox but own whose directory
// in dir is gone or claimed by a dead process, once they are a minute old
// and hold no process (a sandbox in another directory may be starting a
// domain). A domain's processes die with its runner, so their cgroups are
// empty.
func removeDeadCgroups(dir, own string, dead []string) {
	var bases []string
	if v2() {
		bases = []string{filepath.Join(cgroupRoot, "jobx")}
	} else {
		for _, c := range []string{"memory", "pids", "cpu"} {
			bases = append(bases, filepath.Join(cgroupRoot, c, "jobx"))
		}
	}
	for _, base := range bases {
		entries, err := os.ReadDir(base)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if !e.IsDir() || e.Name() == own {
				continue
			}
			cg := filepath.Join(base, e.Name())
			if !slices.Contains(dead, e.Name()) {
				if claimed, alive := leftover.Owner(filepath.Join(dir, e.Name())); alive || (!claimed && dirExists(filepath.Join(dir, e.Name()))) {
					continue
				}
				if st, err := os.Stat(cg); err != nil || time.Since(st.ModTime()) < time.Minute {
					continue
				}
			}
			removeEmptyTree(cg)
		}
	}
}

// removeEmptyTree removes the cgroup dir and those under it, deepest first,
// leaving any that holds a process.
func removeEmptyTree(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			removeEmptyTree(filepath.Join(dir, e.Name()))
		}
	}
	if pids, err := warm.ReadPids(filepath.Join(dir, "cgroup.procs")); err == nil && len(pids) == 0 {
		os.Remove(dir)
	}
}

func dirExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}
