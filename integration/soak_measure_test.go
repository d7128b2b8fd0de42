package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	ctrd "github.com/jobx/jobx/sandbox/containerd"
)

// What the soak test (soak_test.go) measures, and its processes.

// soakSample is the state of the system at one time of the soak.
type soakSample struct {
	at                                     time.Duration // since the load started
	done, failed, lost, wrong, nb, expired int
	dbSize, dbInUse                        int64
	compactions, defrags                   int
	up, gw                                 procSample
	boxes                                  []boxSample
	kinds                                  []string // the boxes' sandboxes
}

// procSample is a jobx process's RSS, goroutines and open descriptors.
type procSample struct {
	rss             int64
	goroutines, fds int
}

// boxSample is a runner process and its sandboxes: their processes (of
// which interpreters: zygotes, kept processes, handler runs), containers
// and scratch directories.
type boxSample struct {
	procSample
	procs, interp, containers, scratch int
}

// soakLegend explains a sample's line.
const soakLegend = "every 10 s: time; requests done, failed, lost, wrong, and non-blocking accepted (expired); etcd's db size, space in use, compactions, defragmentations; " +
	"RSS, goroutines (g) and open descriptors (fd) of jobx up (etcd, nsqd), the gateway and each runner; each sandbox's processes (interpreters), containers, scratch directories"

func (s *soak) sample(at time.Duration) soakSample {
	sm := soakSample{at: at}
	l := s.led
	l.mu.Lock()
	sm.done, sm.failed, sm.wrong, sm.nb, sm.expired = l.done, l.failed, len(l.errors), l.nb, l.expired
	sm.lost = l.lost(time.Now())
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if st, err := s.cli.Status(ctx, s.etcd); err == nil {
		sm.dbSize, sm.dbInUse = st.DbSize, st.DbSizeInUse
	} else {
		s.t.Errorf("etcd status: %v", err)
	}
	sm.compactions = int(metricValue(s.etcd, "etcd_debugging_mvcc_db_compaction_total_duration_milliseconds_count"))
	sm.defrags = int(metricValue(s.etcd, "etcd_disk_backend_defrag_duration_seconds_count"))
	sm.up, sm.gw = s.up.sample(), s.gw.sample()
	for _, b := range s.boxes {
		sm.boxes = append(sm.boxes, b.sample())
		sm.kinds = append(sm.kinds, b.kind)
	}
	s.samples = append(s.samples, sm)
	return sm
}

func (sm soakSample) line() string {
	const mib = 1 << 20
	var b strings.Builder
	at := sm.at.Round(time.Second)
	fmt.Fprintf(&b, "%2d:%02d  done %d failed %d lost %d wrong %d, non-blocking %d (%d expired) | etcd %.1f MiB, %.1f in use, %d compactions, %d defrags | up %s | gateway %s",
		int(at.Minutes()), int(at.Seconds())%60, sm.done, sm.failed, sm.lost, sm.wrong, sm.nb, sm.expired,
		float64(sm.dbSize)/mib, float64(sm.dbInUse)/mib, sm.compactions, sm.defrags, sm.up, sm.gw)
	for i, bs := range sm.boxes {
		fmt.Fprintf(&b, " | %s %s,", sm.kinds[i], bs.procSample)
		if sm.kinds[i] == "containerd" {
			fmt.Fprintf(&b, " %d containers", bs.containers)
		}
		fmt.Fprintf(&b, " %d procs (%d interp) %d scratch", bs.procs, bs.interp, bs.scratch)
	}
	return b.String()
}

func (ps procSample) String() string {
	return fmt.Sprintf("%d MiB %dg %dfd", ps.rss>>20, ps.goroutines, ps.fds)
}

// sample reads a jobx process's RSS and descriptors from /proc, and its
// goroutines from its /metrics.
func (p *soakProc) sample() procSample {
	pid := p.cmd.Process.Pid
	ps := procSample{rss: procStatus(pid, "VmRSS"), goroutines: int(metricValue(p.metrics, "go_goroutines"))}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	ps.fds = len(fds)
	return ps
}

// sample reads b's runner and its sandboxes. The namespace (and none)
// sandbox's processes descend from the runner; a container's are its
// task's. A sandbox's scratch directories are those under /scratch in its
// mount namespace.
func (b *soakBox) sample() boxSample {
	bs := boxSample{procSample: b.proc.sample()}
	var pids []int
	if b.ctrd != nil {
		ctrs := b.containers()
		bs.containers = len(ctrs)
		ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ctrd.NamespaceFor(b.id)), 10*time.Second)
		defer cancel()
		for _, c := range ctrs {
			task, err := c.Task(ctx, nil)
			if err != nil {
				continue
			}
			ps, _ := task.Pids(ctx)
			for _, p := range ps {
				pids = append(pids, int(p.Pid))
			}
		}
	} else {
		pids = descendants(b.proc.cmd.Process.Pid)
	}
	bs.procs = len(pids)
	self, _ := os.Readlink("/proc/self/ns/mnt")
	mounts := map[string]int{} // a process of each sandbox's mount namespace
	for _, pid := range pids {
		if isInterpreter(pid) {
			bs.interp++
		}
		if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid)); err == nil && ns != self {
			mounts[ns] = pid
		}
	}
	for _, pid := range mounts {
		ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/root/scratch", pid))
		bs.scratch += len(ents)
	}
	return bs
}

// containers lists the containers of b's runner.
func (b *soakBox) containers() []containerd.Container {
	if b.ctrd == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ctrd.NamespaceFor(b.id)), 10*time.Second)
	defer cancel()
	ctrs, _ := b.ctrd.Containers(ctx)
	return ctrs
}

// descendants lists the processes that descend from pid.
func descendants(pid int) []int {
	kids := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces.
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(f) > 1 {
			pp, _ := strconv.Atoi(f[1])
			kids[pp] = append(kids[pp], p)
		}
	}
	var out []int
	for queue := kids[pid]; len(queue) > 0; queue = queue[1:] {
		out = append(out, queue[0])
		queue = append(queue, kids[queue[0]]...)
	}
	return out
}

// isInterpreter says whether pid runs a handler language's interpreter.
func isInterpreter(pid int) bool {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	argv0, _, _ := bytes.Cut(cmdline, []byte{0})
	base := filepath.Base(string(argv0))
	return bytes.Contains(cmdline, []byte("jobx_runtime.py")) || strings.HasPrefix(base, "python") ||
		strings.HasPrefix(base, "node") || strings.HasPrefix(base, "perl")
}

// procStatus is a /proc/<pid>/status field given in kB, in bytes.
func procStatus(pid int, field string) int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, field+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// metricValue reads an unlabelled metric from base/metrics (0 when it
// cannot).
func metricValue(base, name string) float64 {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(base + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f
		}
	}
	return 0
}

// soakProc is a jobx process of the soak, its output in a log file (shown
// when the test fails), stopped with SIGTERM when the test ends.
type soakProc struct {
	name, log string
	metrics   string // base URL of its /metrics
	cmd       *exec.Cmd
	exited    chan struct{}
}

func startSoakProc(t *testing.T, bin, name, log string, args ...string) *soakProc {
	t.Helper()
	f, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the test
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &soakProc{name: name, log: log, cmd: cmd, exited: make(chan struct{})}
	go func() { cmd.Wait(); f.Close(); close(p.exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("%s's log:\n%s", name, p.tail())
		}
	})
	return p
}

// await polls ready until it holds, the process exits or within passes.
func (p *soakProc) await(within time.Duration, ready func() bool) error {
	deadline := time.Now().Add(within)
	for !ready() {
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited: %s", p.name, p.tail())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within %s: %s", p.name, within, p.tail())
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

// tail is the end of the process's log.
func (p *soakProc) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// copyWorkflow copies the workflow directory src to dst, naming its
// workflow wf.
func copyWorkflow(t *testing.T, src, dst, wf string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if rel == "workflow.yaml" {
			b = regexp.MustCompile(`(?m)^workflow: .*$`).ReplaceAll(b, []byte("workflow: "+wf))
		}
		return os.WriteFile(to, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}
