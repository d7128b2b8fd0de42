package integration

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jobx/jobx/internal/testenv"
	"github.com/jobx/jobx/internal/testenv/testbox"
)

// A restarted node resumes what its previous life left and removes what it
// left running. These tests kill a real `jobx up` process with SIGKILL and
// start it again on the same data directory.

// upProc is a `jobx up` process on a data directory, with fixed addresses,
// killed and started again by a test.
type upProc struct {
	t      *testing.T
	args   []string
	url    string
	cmd    *exec.Cmd
	exited chan struct{}
	out    *testenv.Buffer
}

// upSandbox is the sandbox jobx up picks here: containerd, in a private
// containerd, where the containerd tests run (as root, or under CI), else
// namespace.
func upSandbox() string {
	if testbox.SkipContainerd() == "" {
		return "containerd"
	}
	return "namespace"
}

// newUpProc prepares `jobx up` on a fresh data directory with the tree job
// loaded, on sandbox (containerd: in a private containerd, in
// <data-dir>/containerd).
func newUpProc(t *testing.T, sandbox string) *upProc {
	bin := jobxBinary(t)
	data := t.TempDir()
	wf := filepath.Join(t.TempDir(), "wf")
	writeTreeManifest(t, wf)
	addrs := testenv.FreeAddrs(t, 3)
	args := []string{bin, "up", "--data-dir", data, "--http", addrs[0], "--etcd-listen", addrs[1], "--nsqd-listen", addrs[2],
		"--load", wf, "--log-level", "info", "--sandbox", sandbox}
	if sandbox == "containerd" {
		// Nothing answers at --containerd: jobx up starts its private one.
		args = append(args, "--containerd", filepath.Join(t.TempDir(), "none.sock"), "--images-dir", testbox.Images(t).Dir())
	}
	p := &upProc{t: t, args: args, url: "http://" + addrs[0]}
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("jobx up's output:\n%s", p.out)
		}
	})
	return p
}

// start starts the process and waits until it says it is up.
func (p *upProc) start() {
	p.t.Helper()
	p.out = &testenv.Buffer{}
	cmd := exec.Command(p.args[0], p.args[1:]...)
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.cmd, p.exited = cmd, make(chan struct{})
	go func(exited chan struct{}) { cmd.Wait(); close(exited) }(p.exited)
	waitFor(p.t, "jobx up to be up", 3*time.Minute, func() bool {
		select {
		case <-p.exited:
			p.t.Fatalf("jobx up exited:\n%s", p.out)
		default:
		}
		return strings.Contains(p.out.String(), "jobx is up")
	})
}

// firstLog returns the time of the process's first log line with msg in
// it (zero when there is none).
func (p *upProc) firstLog(msg string) time.Time {
	for _, line := range strings.Split(p.out.String(), "\n") {
		if ts, ok := strings.CutPrefix(line, "time="); ok && strings.Contains(line, msg) {
			if at, err := time.Parse(time.RFC3339Nano, strings.Fields(ts)[0]); err == nil {
				return at
			}
		}
	}
	return time.Time{}
}

func (p *upProc) kill() {
	p.cmd.Process.Kill()
	<-p.exited
}

// stop stops the process as an operator would (SIGTERM, SIGKILL after a
// minute).
func (p *upProc) stop() {
	if p.cmd == nil {
		return
	}
	select {
	case <-p.exited:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(time.Minute):
		p.kill()
	}
}

// writeTreeManifest writes the tree job (treeJob) as a workflow directory
// of workflow "wf", for jobx up --load.
func writeTreeManifest(t *testing.T, dir string) {
	t.Helper()
	manifest := `workflow: wf
steps:
  leaf: {map: map_leaf, reduce: reduce_collect}
  mid: {map: map_mid, reduce: reduce_collect}
  root: {map: map_root, reduce: reduce_collect}
jobs:
  tree: {initial_step: root}
`
	files := map[string]string{"workflow.yaml": manifest}
	for _, h := range treeHandlers {
		files[filepath.Join("handlers", h.file)] = h.src
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFaultUpKilled kills -9 a `jobx up` process (embedded etcd and nsqd,
// gateway, runner, sandboxes) while 10 accepted non-blocking requests run,
// and starts it again on the same data directory: every request completes
// with the right result within a minute of the restart (the recovery runner
// publishes again what the dead nsqd lost, at once, not after
// --stall-after), and what the dead process ran beside itself (sandbox
// processes, containerd shims, mounts, directories, cgroups) is gone. On
// the sandbox jobx up picks here; make test-faults also on namespace when
// that is containerd.
func TestFaultUpKilled(t *testing.T) {
	sandboxes := []string{upSandbox()}
	if fullFaults() && sandboxes[0] != "namespace" {
		sandboxes = append(sandboxes, "namespace")
	}
	for _, sb := range sandboxes {
		t.Run(sb, func(t *testing.T) { testUpKilled(t, sb) })
	}
}

func testUpKilled(t *testing.T, sandbox string) {
	p := newUpProc(t, sandbox)
	rounds := 1
	if fullFaults() {
		rounds = 3
	}
	s := treeShape{b: 3, l: 4, ms: 500}
	row := faultRow{Fault: "jobx up killed -9 mid-job, restarted (" + sandbox + ")"}
	p.start()
	for round := range rounds {
		var locs []string
		for range 10 {
			resp, err := http.Post(p.url+"/job/wf/tree?blocking=false&keep=true", "application/json", strings.NewReader(s.body()))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				t.Fatalf("submit: %s", resp.Status)
			}
			locs = append(locs, resp.Header.Get("Location"))
		}
		var before *lifeLeft
		waitFor(t, "the requests' sandboxes to run", time.Minute, func() bool {
			before = lifeOf(p.cmd.Process.Pid, p.args)
			return before.sandboxes >= 2
		})
		time.Sleep(time.Second)
		before = lifeOf(p.cmd.Process.Pid, p.args)
		p.kill()
		row.Injected++
		t.Logf("round %d: killed jobx up with %d sandboxes: %d processes, %d directories, %d mounts, %d cgroups beside it",
			round, before.sandboxes, len(before.procs), len(before.dirs), len(before.mounts), len(before.cgroups))

		restart := time.Now()
		p.start()
		up := time.Since(restart)
		awaitAll(t, &cluster{t: t, url: p.url}, locs, s, time.Minute-up, &row, false)
		t.Logf("round %d: up again in %s; lost work published again %s after the restart; every request done %s after it",
			round, up.Round(time.Millisecond), p.firstLog("lost queue messages").Sub(restart).Round(time.Millisecond), time.Since(restart).Round(time.Millisecond))
		if left := before.stillThere(); left != "" {
			t.Errorf("round %d: the killed jobx up's leftovers are still there after the restart:\n%s", round, left)
		}
		if t.Failed() {
			t.Fatalf("round %d failed", round)
		}
	}
	recordFault(row)
}

// lifeLeft is what a jobx up process ran beside itself, found while it ran:
// what a SIGKILL leaves for its next life to remove.
type lifeLeft struct {
	sandboxes int            // containers or namespace domains
	procs     map[int]string // pid: start time
	dirs      []string       // its sandboxes' directories (claimed by its pid)
	mounts    []string
	cgroups   []string
}

// lifeOf inventories the sandboxes of jobx up process pid (command line
// args): its descendants, the shims of its private containerd and their
// containers, the directories its sandboxes claimed, the mounts under them
// and under the containerd's state, and their cgroups.
func lifeOf(pid int, args []string) *lifeLeft {
	l := &lifeLeft{procs: map[int]string{}}
	data := ""
	for i, a := range args {
		if a == "--data-dir" {
			data = args[i+1]
		}
	}
	sock := filepath.Join(data, "containerd", "containerd.sock")
	procs := listProcs()
	var ctrIDs []string
	roots := []int{}
	for _, pr := range procs {
		if pr.ppid == pid {
			roots = append(roots, pr.pid)
		}
		if strings.Contains(pr.cmd, "containerd-shim") && strings.Contains(pr.cmd+" ", "-address "+sock+" ") {
			roots = append(roots, pr.pid)
			l.sandboxes++
			if f := strings.Fields(pr.cmd); len(f) > 0 {
				for i := range f[:len(f)-1] {
					if f[i] == "-id" {
						ctrIDs = append(ctrIDs, f[i+1])
					}
				}
			}
		}
	}
	children, byPid := map[int][]int{}, map[int]procInfo{}
	for _, pr := range procs {
		children[pr.ppid] = append(children[pr.ppid], pr.pid)
		byPid[pr.pid] = pr
	}
	var walk func(int)
	walk = func(p int) {
		if st := procStartTime(p); st != "" {
			l.procs[p] = st
		}
		if pr, ok := byPid[p]; ok && pr.ppid == pid && filepath.Base(strings.Fields(pr.cmd + " x")[0]) == "bwrap" {
			l.sandboxes++
		}
		for _, c := range children[p] {
			walk(c)
		}
	}
	for _, r := range roots {
		walk(r)
	}
	entries, _ := os.ReadDir(os.TempDir())
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "jxc-") && !strings.HasPrefix(e.Name(), "jxn-") {
			continue
		}
		dir := filepath.Join(os.TempDir(), e.Name())
		b, _ := os.ReadFile(filepath.Join(dir, "owner"))
		if f := strings.Fields(string(b)); len(f) > 0 && f[0] == strconv.Itoa(pid) {
			l.dirs = append(l.dirs, dir)
			if strings.HasPrefix(e.Name(), "jxn-") {
				l.cgroups = append(l.cgroups, cgroupDirs("jobx/"+e.Name())...)
			}
		}
	}
	for _, id := range ctrIDs {
		l.cgroups = append(l.cgroups, cgroupDirs("jobx-up-1/"+id)...)
	}
	for _, m := range mountPoints() {
		under := strings.HasPrefix(m, filepath.Join(data, "containerd", "state")+"/")
		for _, d := range l.dirs {
			under = under || strings.HasPrefix(m, d+"/")
		}
		if under {
			l.mounts = append(l.mounts, m)
		}
	}
	return l
}

// stillThere describes what of l still exists ("" when nothing).
func (l *lifeLeft) stillThere() string {
	var b strings.Builder
	for pid, start := range l.procs {
		if procStartTime(pid) == start {
			cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			fmt.Fprintf(&b, "  process %d: %s\n", pid, bytes.ReplaceAll(cmd, []byte{0}, []byte{' '}))
		}
	}
	for _, d := range l.dirs {
		if _, err := os.Stat(d); err == nil {
			fmt.Fprintf(&b, "  directory %s\n", d)
		}
	}
	now := map[string]bool{}
	for _, m := range mountPoints() {
		now[m] = true
	}
	for _, m := range l.mounts {
		if now[m] {
			fmt.Fprintf(&b, "  mount %s\n", m)
		}
	}
	for _, c := range l.cgroups {
		if _, err := os.Stat(c); err == nil {
			fmt.Fprintf(&b, "  cgroup %s\n", c)
		}
	}
	return b.String()
}

type procInfo struct {
	pid, ppid int
	cmd       string
}

func listProcs() []procInfo {
	entries, _ := os.ReadDir("/proc")
	var out []procInfo
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		cmd, err2 := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || err2 != nil {
			continue
		}
		i := bytes.LastIndexByte(stat, ')')
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		out = append(out, procInfo{pid: pid, ppid: ppid, cmd: string(bytes.ReplaceAll(bytes.TrimRight(cmd, "\x00"), []byte{0}, []byte{' '}))})
	}
	return out
}

// procStartTime is the start time of a running process ("" for none, or a
// zombie).
func procStartTime(pid int) string {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	i := bytes.LastIndexByte(stat, ')')
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 20 || f[0] == "Z" {
		return ""
	}
	return f[19]
}

// mountPoints lists this process's mount points.
func mountPoints() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 {
			out = append(out, fields[4])
		}
	}
	return out
}

// cgroupDirs returns the directories of cgroup rel in every hierarchy
// where it exists.
func cgroupDirs(rel string) []string {
	var out []string
	for _, d := range append([]string{"/sys/fs/cgroup"}, globDirs("/sys/fs/cgroup/*")...) {
		if st, err := os.Stat(filepath.Join(d, rel)); err == nil && st.IsDir() {
			out = append(out, filepath.Join(d, rel))
		}
	}
	return out
}

func globDirs(pattern string) []string {
	m, _ := filepath.Glob(pattern)
	return m
}

// shimsServing returns the command lines of the containerd shims that serve
// the containerd at address.
func shimsServing(address string) []string {
	var out []string
	for _, p := range listProcs() {
		if strings.Contains(p.cmd, "containerd-shim") && strings.Contains(p.cmd+" ", "-address "+address+" ") {
			out = append(out, fmt.Sprintf("%d: %s", p.pid, p.cmd))
		}
	}
	return out
}
