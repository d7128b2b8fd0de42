package python_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/jobx/jobx/processors"
	"github.com/jobx/jobx/processors/internal/proctest"
	"github.com/jobx/jobx/processors/python"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startZygote starts a zygote on the runtime installed with prog; it logs to
// t.Log and is closed by a cleanup.
func startZygote(t testing.TB, prog processors.Program) *python.Zygote {
	t.Helper()
	dir, err := os.MkdirTemp("", "zyg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	z, err := python.StartZygote(ctx, prog.Argv[1], filepath.Join(dir, "z.sock"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := z.Close(); err != nil {
			t.Error(err)
		}
	})
	return z
}

type spawned struct {
	stdout []string
	stderr string
	status python.ExitStatus
	pid    int
}

// spawnRun runs one invocation on z, feeding stdin and collecting output.
func spawnRun(t testing.TB, z *python.Zygote, prog processors.Program, typ, stdin string, env ...string) (spawned, error) {
	t.Helper()
	return spawnReuse(t, z, prog, "", typ, stdin, env...)
}

// spawnReuse is spawnRun with a reuse key.
func spawnReuse(t testing.TB, z *python.Zygote, prog processors.Program, reuse, typ, stdin string, env ...string) (spawned, error) {
	t.Helper()
	inR, inW, _ := os.Pipe()
	outR, outW, _ := os.Pipe()
	errR, errW, _ := os.Pipe()
	defer inW.Close()
	defer outR.Close()
	defer errR.Close()
	c, err := z.Spawn(context.Background(), python.SpawnRequest{
		HandlerPath: prog.Warm.HandlerPath, HandlerType: typ,
		Env:   append(append([]string{"PATH=" + os.Getenv("PATH")}, prog.Env...), env...),
		Stdin: inR, Stdout: outW, Stderr: errW, Reuse: reuse,
	})
	inR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		return spawned{}, err
	}
	go func() {
		io.WriteString(inW, stdin)
		inW.Close()
	}()
	var wg sync.WaitGroup
	var errb []byte
	wg.Add(1)
	go func() {
		defer wg.Done()
		errb, _ = io.ReadAll(errR)
	}()
	outb, _ := io.ReadAll(outR)
	wg.Wait()
	st, err := c.Wait()
	return spawned{stdout: proctest.Lines(string(outb)), stderr: string(errb), status: st, pid: c.Pid()}, err
}

// keptChild fails the test unless run i (res, err) ran on the child the
// first run ran on (whose pid *pid records) and left it kept.
func keptChild(t *testing.T, i int, res spawned, err error, pid *int) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	if i == 0 {
		*pid = res.pid
	}
	if res.pid != *pid || !res.status.Parked {
		t.Fatalf("run %d: pid %d (first %d), %+v: not the kept child; stderr %s", i, res.pid, *pid, res.status, res.stderr)
	}
}

func TestZygoteRunsConcurrentInvocations(t *testing.T) {
	prog := installTestdata(t, "split.py")
	z := startZygote(t, prog)
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			arg := 1000 + i
			res, err := spawnRun(t, z, prog, "mapper", fmt.Sprintf("[\"arg1\", %d]\n", arg))
			if err != nil {
				errs <- err
				return
			}
			want := fmt.Sprintf(`{"jobx":"map","step":"step7_chunk_argument"}|[0,%d]|[1,%d]`, arg/2, arg/2+arg%2)
			if got := strings.Join(res.stdout, "|"); got != want || !res.status.Success() {
				errs <- fmt.Errorf("arg %d: %v stdout %s, want %s; stderr %s", arg, res.status, got, want, res.stderr)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestZygoteInvocationsDoNotLeakState(t *testing.T) {
	body := `"""
**
handler_type: reducer
"""
import json, os
global COUNTER
seen = ('COUNTER' in globals(), hasattr(json, 'LEAK'), os.environ.get('LEAK_ENV'))
COUNTER = 1
json.LEAK = True
yield 'seen', list(seen)
yield 'cwd', os.getcwd()
yield 'env', os.environ.get('VISIBLE')
`
	prog := proctest.Install(t, python.Processor{}, "leak", "reducer", body)
	z := startZygote(t, prog)
	for i := range 3 {
		res, err := spawnRun(t, z, prog, "reducer", "", fmt.Sprintf("VISIBLE=%d", i))
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf(`["seen",[false,false,null]]|["cwd",%q]|["env","%d"]`, mustGetwd(t), i)
		if got := strings.Join(res.stdout, "|"); got != want {
			t.Fatalf("run %d: %s, want %s; stderr %s", i, got, want, res.stderr)
		}
	}
}

func TestZygoteReusesAChildOnlyForItsKeyAndHandler(t *testing.T) {
	t.Setenv("JOBX_ZYGOTE_PARK_SECONDS", "0.3")
	body := `"""
**
handler_type: reducer
"""
import json, os
seen = hasattr(json, 'LEAK')
json.LEAK = True
for k, v in results:
    if k == 'fail':
        raise ValueError('asked to fail')
yield 'seen', seen
yield 'env', os.environ.get('VISIBLE')
`
	prog := proctest.Install(t, python.Processor{}, "reuse", "reducer", body)
	z := startZygote(t, prog)
	run := func(key, stdin string, i int) spawned {
		t.Helper()
		res, err := spawnReuse(t, z, prog, key, "reducer", stdin, fmt.Sprintf("VISIBLE=%d", i))
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	first := run("r1", "", 0)
	if got := strings.Join(first.stdout, "|"); got != `["seen",false]|["env","0"]` || !first.status.Parked || first.status.Code != 0 {
		t.Fatalf("first run: %s %+v; stderr %s", got, first.status, first.stderr)
	}
	second := run("r1", "", 1)
	if got := strings.Join(second.stdout, "|"); got != `["seen",true]|["env","1"]` || second.pid != first.pid {
		t.Fatalf("second run of the same key: %s (pid %d, first %d); stderr %s", got, second.pid, first.pid, second.stderr)
	}
	other := run("r2", "", 2)
	if got := strings.Join(other.stdout, "|"); got != `["seen",false]|["env","2"]` || other.pid == first.pid {
		t.Fatalf("another key: %s (pid %d, first %d)", got, other.pid, first.pid)
	}
	plain := run("", "", 3)
	if got := strings.Join(plain.stdout, "|"); got != `["seen",false]|["env","3"]` || plain.status.Parked {
		t.Fatalf("no key: %s %+v", got, plain.status)
	}
	failed := run("r1", "[\"fail\", [1]]\n", 4)
	if failed.status.Code != 1 || failed.status.Parked || failed.pid != first.pid {
		t.Fatalf("failing run: %+v (pid %d, first %d); stderr %s", failed.status, failed.pid, first.pid, failed.stderr)
	}
	fresh := run("r1", "", 5)
	if got := strings.Join(fresh.stdout, "|"); got != `["seen",false]|["env","5"]` || fresh.pid == first.pid {
		t.Fatalf("after a failure the key got %s (pid %d, first %d)", got, fresh.pid, first.pid)
	}
	// An idle parked child is retired.
	deadline := time.Now().Add(5 * time.Second)
	for liveInGroup(fresh.pid) {
		if time.Now().After(deadline) {
			t.Fatalf("parked child %d still alive after its idle time", fresh.pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mustGetwd(t testing.TB) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return wd
}

func TestZygoteSpawnAppliesDirAndRlimits(t *testing.T) {
	body := `"""
**
handler_type: reducer
"""
import os, resource
yield 'cwd', os.getcwd()
yield 'fsize', resource.getrlimit(resource.RLIMIT_FSIZE)[0]
`
	prog := proctest.Install(t, python.Processor{}, "dir", "reducer", body)
	z := startZygote(t, prog)
	dir := t.TempDir()
	inR, inW, _ := os.Pipe()
	outR, outW, _ := os.Pipe()
	inW.Close()
	c, err := z.Spawn(context.Background(), python.SpawnRequest{
		HandlerPath: prog.Warm.HandlerPath, HandlerType: "reducer", Dir: dir,
		Stdin: inR, Stdout: outW, Rlimits: python.Rlimits{FSize: 1 << 20},
	})
	inR.Close()
	outW.Close()
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(outR)
	outR.Close()
	if st, err := c.Wait(); err != nil || !st.Success() {
		t.Fatalf("wait: %v %v", st, err)
	}
	want := fmt.Sprintf("[\"cwd\",%q]\n[\"fsize\",1048576]\n", dir)
	if string(out) != want {
		t.Errorf("got %q, want %q", out, want)
	}
}

func TestZygoteReportsFailures(t *testing.T) {
	prog := installTestdata(t, "fail.py")
	z := startZygote(t, prog)
	res, err := spawnRun(t, z, prog, "reducer", "[\"a\", [30]]\n")
	if err != nil {
		t.Fatal(err)
	}
	if res.status.Code != 1 || !strings.Contains(res.stderr, "line 13, in _jobx_handler") {
		t.Errorf("status %v, stderr:\n%s", res.status, res.stderr)
	}

	bad := proctest.Install(t, python.Processor{}, "bad", "reducer", "\"\"\"\n**\nhandler_type: reducer\n\"\"\"\nif\n")
	res, err = spawnRun(t, z, bad, "reducer", "")
	if err != nil {
		t.Fatal(err)
	}
	if res.status.Code != 2 || !strings.Contains(res.stderr, ".py:5: syntax error") {
		t.Errorf("status %v, stderr:\n%s", res.status, res.stderr)
	}
}

const sleeper = "\"\"\"\n**\nhandler_type: reducer\n\"\"\"\nimport time\nRUN('sleep 60')\ntime.sleep(60)\nreturn []\n"

func TestZygoteKillsASleepingChild(t *testing.T) {
	prog := proctest.Install(t, python.Processor{}, "sleep", "reducer", sleeper)
	z := startZygote(t, prog)
	c, err := z.Spawn(context.Background(), python.SpawnRequest{
		HandlerPath: prog.Warm.HandlerPath, HandlerType: "reducer", Env: []string{"PATH=" + os.Getenv("PATH")}})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // let it reach the sleep
	start := time.Now()
	if err := c.Kill(); err != nil {
		t.Fatal(err)
	}
	st, err := c.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if st.Signal != int(syscall.SIGKILL) || time.Since(start) > 5*time.Second {
		t.Errorf("status %v after %v", st, time.Since(start))
	}
	if err := c.Kill(); err != nil {
		t.Errorf("kill after wait: %v", err)
	}
	// The group kill reached the sleep started by RUN.
	deadline := time.Now().Add(5 * time.Second)
	for liveInGroup(c.Pid()) {
		if time.Now().After(deadline) {
			t.Fatalf("process group %d still alive", c.Pid())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestZygoteDeathIsDetected(t *testing.T) {
	prog := proctest.Install(t, python.Processor{}, "sleep", "reducer", sleeper)
	z := startZygote(t, prog)
	c, err := z.Spawn(context.Background(), python.SpawnRequest{HandlerPath: prog.Warm.HandlerPath, HandlerType: "reducer"})
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(z.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Wait(); !errors.Is(err, python.ErrZygoteDead) {
		t.Errorf("wait on a child of a dead zygote: %v, want ErrZygoteDead", err)
	}
	<-z.Done()
	_, err = z.Spawn(context.Background(), python.SpawnRequest{HandlerPath: prog.Warm.HandlerPath, HandlerType: "reducer"})
	if !errors.Is(err, python.ErrZygoteDead) {
		t.Errorf("spawn on a dead zygote: %v, want ErrZygoteDead", err)
	}
}

func TestZygoteRejectsBadRequests(t *testing.T) {
	prog := installTestdata(t, "sum.py")
	z := startZygote(t, prog)
	_, err := z.Spawn(context.Background(), python.SpawnRequest{HandlerPath: prog.Warm.HandlerPath, HandlerType: "bogus"})
	if err == nil || !strings.Contains(err.Error(), "bad handler_type") {
		t.Errorf("got %v", err)
	}
	// The zygote keeps serving.
	res, err := spawnRun(t, z, prog, "reducer", "[\"a\", [1, 2]]\n")
	if err != nil || strings.Join(res.stdout, "|") != `["a",3]` {
		t.Errorf("after a bad request: %v %v %s", res.stdout, err, res.stderr)
	}
}

func BenchmarkZygoteSpawn(b *testing.B) {
	prog := installTestdata(b, "split.py")
	z := startZygote(b, prog)
	b.ResetTimer()
	for b.Loop() {
		res, err := spawnRun(b, z, prog, "mapper", "[\"arg1\", 17]\n")
		if err != nil || len(res.stdout) != 3 {
			b.Fatalf("%v %v %s", err, res.stdout, res.stderr)
		}
	}
}

// BenchmarkColdPython runs the same invocation as BenchmarkZygoteSpawn by
// starting the interpreter (resolved to its real path, bypassing any shim).
func BenchmarkColdPython(b *testing.B) {
	prog := installTestdata(b, "split.py")
	exe, err := exec.Command(prog.Argv[0], "-c", "import sys; print(sys.executable)").Output()
	if err != nil {
		b.Fatal(err)
	}
	prog.Argv[0] = strings.TrimSpace(string(exe))
	b.ResetTimer()
	for b.Loop() {
		res := proctest.Run(b, prog, "[\"arg1\", 17]\n")
		if res.Code != 0 || len(res.Stdout) != 3 {
			b.Fatalf("%d %v %s", res.Code, res.Stdout, res.Stderr)
		}
	}
}

// liveInGroup reports whether a process other than a zombie is in process
// group pgid.
func liveInGroup(pgid int) bool {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 2 && f[0] != "Z" && f[2] == fmt.Sprint(pgid) {
			return true
		}
	}
	return false
}

// BenchmarkZygoteSpawnReuse runs the invocation of BenchmarkZygoteSpawn on
// a parked child (reuse), the path of a handler that opts into reuse, and
// reports the CPU the zygote and its children spend per run.
func BenchmarkZygoteSpawnReuse(b *testing.B) {
	prog := installTestdata(b, "split.py")
	z := startZygote(b, prog)
	child, err := spawnReuse(b, z, prog, "bench", "mapper", "[\"arg1\", 17]\n")
	if err != nil || !child.status.Parked {
		b.Fatalf("the first run was not parked: %v %+v", err, child)
	}
	zygote0, children0 := zygoteCPU(b, z.Pid(), child.pid)
	b.ResetTimer()
	for b.Loop() {
		if child, err = spawnReuse(b, z, prog, "bench", "mapper", "[\"arg1\", 17]\n"); err != nil || len(child.stdout) != 3 {
			b.Fatalf("%v %v %s", err, child.stdout, child.stderr)
		}
	}
	b.StopTimer()
	zygote, children := zygoteCPU(b, z.Pid(), child.pid)
	b.ReportMetric(float64((zygote-zygote0).Microseconds())/float64(b.N), "zygote-cpu-us/op")
	b.ReportMetric(float64((children-children0).Microseconds())/float64(b.N), "children-cpu-us/op")
}

// zygoteCPU is the CPU time of a zygote itself and of its children: those
// it reaped (a parked child retires after a thousand runs) and the live
// one, parked.
func zygoteCPU(t testing.TB, zygote, parked int) (self, children time.Duration) {
	z := procStat(t, zygote)
	return z[11] + z[12], z[13] + z[14] + procStat(t, parked)[11] + procStat(t, parked)[12]
}

// procStat is a live process's /proc/<pid>/stat fields after the command
// name, as times (USER_HZ is 100 on Linux): index 11 is utime, 12 stime,
// 13 cutime, 14 cstime.
func procStat(t testing.TB, pid int) []time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	var out []time.Duration
	for _, f := range strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:])) {
		n, _ := strconv.ParseInt(f, 10, 64)
		out = append(out, time.Duration(n)*10*time.Millisecond)
	}
	return out
}

// A kept child's next run of its key goes to it directly (a lane): it runs
// while the zygote itself is stopped. How a lane's run ends is still told
// right when the child dies without a status (exit, kill), and closing the
// zygote ends its kept children.
func TestZygoteLaneRunsWithoutTheZygoteAndReportsHowItEnded(t *testing.T) {
	body := `"""
**
handler_type: reducer
"""
import os, time
for k, v in results:
    if k == 'exit':
        os._exit(v[0])
    if k == 'sleep':
        time.sleep(v[0])
yield 'pid', os.getpid()
`
	prog := proctest.Install(t, python.Processor{}, "lane", "reducer", body)
	z := startZygote(t, prog)
	run := func(stdin string) spawned {
		t.Helper()
		res, err := spawnReuse(t, z, prog, "k", "reducer", stdin)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	first := run("")
	if !first.status.Parked {
		t.Fatalf("first run not kept: %+v %s", first.status, first.stderr)
	}

	// With the zygote stopped, only a lane can run the key's next run.
	if err := syscall.Kill(z.Pid(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	done := make(chan spawned, 1)
	go func() {
		res, _ := spawnReuse(t, z, prog, "k", "reducer", "")
		done <- res
	}()
	select {
	case second := <-done:
		syscall.Kill(z.Pid(), syscall.SIGCONT)
		if second.pid != first.pid || !second.status.Parked || strings.Join(second.stdout, "") != fmt.Sprintf(`["pid",%d]`, first.pid) {
			t.Fatalf("second run: pid %d (first %d), %+v, %v", second.pid, first.pid, second.status, second.stdout)
		}
	case <-time.After(10 * time.Second):
		syscall.Kill(z.Pid(), syscall.SIGCONT)
		t.Fatal("the kept child's run waited for the stopped zygote")
	}

	// A lane child that exits without a status: the zygote reaps it and
	// tells its code.
	exited := run(`["exit", [3]]` + "\n")
	if exited.pid != first.pid || exited.status.Code != 3 || exited.status.Parked {
		t.Fatalf("os._exit(3) on a lane: pid %d (first %d), %+v", exited.pid, first.pid, exited.status)
	}

	// A killed lane run reports the signal.
	kept := run("")
	if !kept.status.Parked {
		t.Fatalf("run not kept: %+v", kept.status)
	}
	inR, inW, _ := os.Pipe()
	outR, outW, _ := os.Pipe()
	defer outR.Close()
	c, err := z.Spawn(context.Background(), python.SpawnRequest{HandlerPath: prog.Warm.HandlerPath, HandlerType: "reducer",
		Env: []string{"PATH=" + os.Getenv("PATH")}, Stdin: inR, Stdout: outW, Stderr: outW, Reuse: "k"})
	inR.Close()
	outW.Close()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(inW, `["sleep", [30]]`+"\n")
	inW.Close()
	if c.Pid() != kept.pid {
		t.Fatalf("the sleeping run went to pid %d, not the kept child %d", c.Pid(), kept.pid)
	}
	time.Sleep(100 * time.Millisecond)
	c.Kill()
	if st, err := c.Wait(); err != nil || st.Signal != int(syscall.SIGKILL) {
		t.Fatalf("killed lane run: %+v, %v", st, err)
	}

	// Close ends the kept children.
	last := run("")
	if !last.status.Parked || !liveInGroup(last.pid) {
		t.Fatalf("last run not kept: %+v", last.status)
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for liveInGroup(last.pid) {
		if time.Now().After(deadline) {
			t.Fatalf("kept child %d alive after Close", last.pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A kept child's run sees exactly its own environment, in os.environ and
// in the processes it starts, whether or not the run before changed it.
func TestZygoteReusedRunSeesItsOwnEnv(t *testing.T) {
	body := `"""
**
handler_type: reducer
"""
import os, subprocess
names = ('CHANGED', 'REMOVED', 'KEPT', 'LEAKED')
yield 'py', [os.environ.get(n, 'unset') for n in names]
out = subprocess.check_output(['/bin/sh', '-c', 'echo "${CHANGED-unset} ${REMOVED-unset} ${KEPT-unset} ${LEAKED-unset}"'])
yield 'sh', out.decode().split()
for k, v in results:
    if k == 'touch':
        os.environ['LEAKED'] = 'yes'
        os.environ['CHANGED'] = 'by-handler'
        del os.environ['KEPT']
`
	prog := proctest.Install(t, python.Processor{}, "env", "reducer", body)
	z := startZygote(t, prog)
	var pid int
	for i, run := range []struct {
		stdin string
		env   []string
		want  string
	}{
		{"", []string{"CHANGED=one", "REMOVED=here", "KEPT=k"}, "one here k unset"},
		// The run before left the environment as it was given.
		{`["touch", [1]]` + "\n", []string{"CHANGED=two", "KEPT=k"}, "two unset k unset"},
		// The run before changed it; this one asks for the same as that.
		{"", []string{"CHANGED=two", "KEPT=k"}, "two unset k unset"},
		{"", []string{"CHANGED=four", "REMOVED=back"}, "four back unset unset"},
	} {
		res, err := spawnReuse(t, z, prog, "env", "reducer", run.stdin, run.env...)
		keptChild(t, i, res, err, &pid)
		w := `["` + strings.ReplaceAll(run.want, " ", `","`) + `"]`
		if got, want := strings.Join(res.stdout, "|"), `["py",`+w+`]|["sh",`+w+`]`; got != want {
			t.Errorf("run %d: %s, want %s; stderr %s", i, got, want, res.stderr)
		}
	}
}

// A kept child's LOG writes to that run's stderr, in the format and at the
// JOBX_LOG_LEVEL of that run, whatever the run before did to the logger, its
// handler or its formatter; print() goes to the run's stderr too.
func TestZygoteReusedRunLogsAsFresh(t *testing.T) {
	body := `"""
**
handler_type: reducer
"""
import logging, os, sys
LOG.debug('debug %s', os.environ['RUN'])
LOG.info('info %s', os.environ['RUN'])
print('print', os.environ['RUN'])
for k, v in results:
    if k == 'tamper':
        h = LOG.handlers[0]
        h.setLevel(logging.CRITICAL)
        h.addFilter(lambda r: False)
        h.formatter._style._fmt = 'BAD %(message)s'
        h.formatter.datefmt = '%Y'
        h.terminator = '!'
        LOG.addFilter(lambda r: False)
        LOG.addHandler(logging.StreamHandler(sys.stderr))
        LOG.propagate = True
        LOG.disabled = True
return []
`
	prog := proctest.Install(t, python.Processor{}, "logs", "reducer", body)
	z := startZygote(t, prog)
	stamp := `\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}`
	line := func(level, msg string) string {
		return stamp + " " + level + " MR_HANDLER.RAW.logs: " + msg
	}
	var pid int
	for i, run := range []struct {
		stdin, level string
		want         []string
	}{
		{`["tamper", [1]]` + "\n", "DEBUG", []string{line("DEBUG", "debug 0"), line("INFO", "info 0"), "print 0"}},
		{"", "INFO", []string{line("INFO", "info 1"), "print 1"}},
		{"", "warning", []string{"print 2"}},
		{"", "", []string{line("DEBUG", "debug 3"), line("INFO", "info 3"), "print 3"}},
	} {
		env := []string{"RUN=" + strconv.Itoa(i)}
		if run.level != "" {
			env = append(env, "JOBX_LOG_LEVEL="+run.level)
		}
		res, err := spawnReuse(t, z, prog, "logs", "reducer", run.stdin, env...)
		keptChild(t, i, res, err, &pid)
		got := proctest.Lines(res.stderr)
		if len(got) != len(run.want) {
			t.Errorf("run %d: stderr %q, want %q", i, got, run.want)
			continue
		}
		for j, re := range run.want {
			if !regexp.MustCompile("^" + re + "$").MatchString(got[j]) {
				t.Errorf("run %d: stderr line %d is %q, want %q", i, j, got[j], re)
			}
		}
	}
}

// Nothing a kept child's run left in its streams reaches the next run's
// output: here stderr text that its flush at the end could not write.
func TestZygoteReusedRunGetsNothingTheRunBeforeLeftBuffered(t *testing.T) {
	body := `"""
**
handler_type: reducer
"""
import os, sys
print('print', os.environ['RUN'])
for k, v in results:
    if k == 'strand':
        sys.stderr.write('stranded')  # no newline: buffered
        os.close(2)
return []
`
	prog := proctest.Install(t, python.Processor{}, "strand", "reducer", body)
	z := startZygote(t, prog)
	first, err := spawnReuse(t, z, prog, "strand", "reducer", `["strand", [1]]`+"\n", "RUN=0")
	if err != nil {
		t.Fatal(err)
	}
	if !first.status.Parked {
		t.Fatalf("first run not kept: %+v %s", first.status, first.stderr)
	}
	second, err := spawnReuse(t, z, prog, "strand", "reducer", "", "RUN=1")
	if err != nil {
		t.Fatal(err)
	}
	if second.pid != first.pid || second.stderr != "print 1\n" {
		t.Errorf("second run (pid %d, first %d): stderr %q, want %q", second.pid, first.pid, second.stderr, "print 1\n")
	}
}
