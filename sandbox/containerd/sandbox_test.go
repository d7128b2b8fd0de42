package containerd_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	client "github.com/containerd/containerd/v2/client"
	"github.com/jobx/jobx/internal/testenv"
	"github.com/jobx/jobx/internal/testenv/testbox"
	"github.com/jobx/jobx/processors"
	_ "github.com/jobx/jobx/processors/all"
	"github.com/jobx/jobx/sandbox"
	ctrd "github.com/jobx/jobx/sandbox/containerd"
	"github.com/jobx/jobx/sandbox/sandboxtest"
)

// env is a sandbox with its handler directory, on a private containerd.
type env struct {
	t   testing.TB
	sb  *ctrd.Sandbox
	dir string // handlers dir
}

func newEnv(t testing.TB, mods ...func(*ctrd.Options)) *env {
	t.Helper()
	addr := testbox.Containerd(t)
	return newEnvAt(t, addr, mods...)
}

func newEnvAt(t testing.TB, addr string, mods ...func(*ctrd.Options)) *env {
	t.Helper()
	dir, err := os.MkdirTemp("", "jx-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	o := ctrd.NewOptions()
	o.Address, o.RunnerID, o.Dir, o.HandlersDir = addr, "test", filepath.Join(dir, "sb"), filepath.Join(dir, "handlers")
	o.AgentPath, o.Images, o.Log = testenv.Agent(t), testbox.Images(t), testenv.Logger(t)
	for _, m := range mods {
		m(o)
	}
	sb, err := ctrd.New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	return &env{t: t, sb: sb, dir: o.HandlersDir}
}

// run installs src as a handler of workflow wf and runs it on stdin.
func (e *env) run(wf, file, src, stdin string, limits sandbox.Limits) (*sandbox.Outcome, string, error) {
	e.t.Helper()
	proc, ok := processors.ForFile(file, []byte(src))
	if !ok {
		e.t.Fatalf("no processor for %s", file)
	}
	meta, err := processors.ParseHeader(file, []byte(src))
	if err != nil {
		e.t.Fatal(err)
	}
	name := strings.NewReplacer("/", "_", ".", "_").Replace(file)
	prog, err := proc.Install(filepath.Join(e.dir, wf), processors.Handler{Workflow: wf, Name: name, Type: meta.HandlerType, SourceType: proc.Name(), Source: src})
	if err != nil {
		e.t.Fatal(err)
	}
	if limits.Timeout == 0 {
		limits.Timeout = 20 * time.Second
	}
	var stdout, stderr bytes.Buffer
	out, err := e.sb.Run(context.Background(), &sandbox.RunSpec{
		Workflow: wf, Handler: name, HandlerType: meta.HandlerType, Invocation: "i1", Program: prog,
		Env:   []string{"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8", "JOBX_WORKFLOW=" + wf, "JOBX_HANDLER=" + name, "JOBX_HANDLER_TYPE=" + meta.HandlerType},
		Stdin: strings.NewReader(stdin), Stdout: &stdout, Stderr: &stderr, Limits: limits,
	})
	return out, stdout.String(), err
}

func (e *env) mustSucceed(wf, file, src, stdin string, limits sandbox.Limits) (*sandbox.Outcome, string) {
	e.t.Helper()
	out, stdout, err := e.run(wf, file, src, stdin, limits)
	if err != nil {
		e.t.Fatalf("%s: %v", file, err)
	}
	if !out.Succeeded() {
		e.t.Fatalf("%s failed: %+v", file, out)
	}
	return out, stdout
}

func TestHandlersInEveryLanguageRunWarm(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct{ file, src string }{
		{"map/echo.py", sandboxtest.EchoPy}, {"map/echo.js", sandboxtest.EchoJS}, {"map/echo.sh", sandboxtest.EchoSh}, {"map/echo", sandboxtest.EchoExec},
	} {
		t.Run(tc.file, func(t *testing.T) {
			for i := 0; i < 3; i++ {
				out, stdout := e.mustSucceed("wf", tc.file, tc.src, "[\"a\", 1]\n", sandbox.Limits{})
				if got := strings.Join(strings.Fields(stdout), ""); got != `{"jobx":"return"}["a",1]` {
					t.Fatalf("stdout %q", stdout)
				}
				if i > 0 && !out.Warm {
					t.Fatalf("run %d was not warm", i)
				}
			}
		})
	}
}

const pyProbe = `"""
Report what the sandbox looks like.

**
handler_type: mapper
"""
import os, socket
yield MrConfigureToReturn()
yield ("uid", os.getuid())
yield ("cwd", os.getcwd())
try:
    open('/etc/jobx-test', 'w')
    yield ("rootfs", "writable")
except OSError:
    yield ("rootfs", "read-only")
marker = os.path.join(os.environ['TMPDIR'], 'marker')
yield ("seen", os.path.exists(marker))
open(marker, 'w').write('x')
yield ("global", globals().get('LEAK', None))
globals()['LEAK'] = 1
status = open('/proc/self/status').read()
yield ("nnp", status.split('NoNewPrivs:')[1].split()[0])
yield ("seccomp", status.split('Seccomp:')[1].split()[0])
yield ("capeff", status.split('CapEff:')[1].split()[0])
`

func TestSandboxIsolatesInvocations(t *testing.T) {
	e := newEnv(t)
	for i := 0; i < 2; i++ {
		_, stdout := e.mustSucceed("wf", "map/probe.py", pyProbe, "", sandbox.Limits{})
		for _, want := range []string{`["uid",65534]`, `["rootfs","read-only"]`, `["seen",false]`, `["global",null]`, `["nnp","1"]`, `["seccomp","2"]`, `["capeff","0000000000000000"]`, `["cwd","/scratch/inv-`} {
			if !strings.Contains(stdout, want) {
				t.Fatalf("run %d: want %s in %s", i, want, stdout)
			}
		}
	}
}

const pyDial = `"""
Dial the address in the argument.

**
handler_type: mapper
"""
import socket
yield MrConfigureToReturn()
addr = arguments[0][1]
host, port = addr.rsplit(':', 1)
try:
    socket.create_connection((host, int(port)), timeout=2).close()
    yield ("dial", "ok")
except OSError as e:
    yield ("dial", "failed: %s" % e)
`

func TestNetworkIsOffByDefaultAndOptIn(t *testing.T) {
	e := newEnv(t)
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	host := hostAddr(t)
	in := fmt.Sprintf("[\"addr\", \"%s:%d\"]\n", host, port)
	_, stdout := e.mustSucceed("wf", "map/dial.py", pyDial, in, sandbox.Limits{})
	if !strings.Contains(stdout, "failed") {
		t.Fatalf("a default sandbox reached the host: %s", stdout)
	}
	_, stdout = e.mustSucceed("wf", "map/dial.py", pyDial, in, sandbox.Limits{Network: "host"})
	if !strings.Contains(stdout, `["dial","ok"]`) {
		t.Fatalf("a host-network sandbox did not reach the host: %s", stdout)
	}
}

// hostAddr returns a non-loopback address of this host (loopback otherwise).
func hostAddr(t testing.TB) string {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ip, ok := a.(*net.IPNet); ok && !ip.IP.IsLoopback() && ip.IP.To4() != nil {
			return ip.IP.String()
		}
	}
	return "127.0.0.1"
}

const pyRead = `"""
Read the path in the argument.

**
handler_type: mapper
"""
yield MrConfigureToReturn()
for _, path in arguments:
    try:
        open(path).read()
        yield (path, "read")
    except OSError as e:
        yield (path, "denied")
`

func TestHandlerSeesOnlyItsMountsAndItsWorkflowsSharedDir(t *testing.T) {
	shared := t.TempDir()
	for _, wf := range []string{"wf", "other"} {
		d := filepath.Join(shared, wf)
		os.MkdirAll(d, 0o777)
		os.Chmod(d, 0o777)
		os.WriteFile(filepath.Join(d, "data"), []byte("x"), 0o644)
	}
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("s"), 0o644)
	e := newEnv(t, func(o *ctrd.Options) {
		o.SharedDir = func(wf string) string { return filepath.Join(shared, wf) }
	})
	in := fmt.Sprintf("[\"a\", %q]\n[\"b\", \"/working/wf/data\"]\n[\"c\", \"/working/other/data\"]\n[\"d\", %q]\n[\"e\", \"/etc/shadow\"]\n",
		secret, filepath.Join(shared, "other", "data"))
	_, stdout := e.mustSucceed("wf", "map/read.py", pyRead, in, sandbox.Limits{})
	want := map[string]string{secret: "denied", "/working/wf/data": "read", "/working/other/data": "denied", filepath.Join(shared, "other", "data"): "denied"}
	for p, w := range want {
		if !strings.Contains(stdout, fmt.Sprintf("[%q,%q]", p, w)) {
			t.Fatalf("%s: want %s in %s", p, w, stdout)
		}
	}
}

const pyHog = `"""
Allocate memory until killed.

**
handler_type: mapper
"""
yield MrConfigureToReturn()
chunks = []
while True:
    chunks.append(bytearray(8 << 20))
`

const pySleep = `"""
Sleep.

**
handler_type: mapper
"""
import time
time.sleep(60)
yield MrConfigureToReturn()
`

const pyForkBomb = `"""
Fork until the pids limit stops it.

**
handler_type: mapper
"""
import os, time
yield MrConfigureToReturn()
for i in range(100000):
    if os.fork() == 0:
        time.sleep(60)
        os._exit(0)
`

const shForkBomb = `#!/bin/sh
# A shell fork bomb.
#
# **
# handler_type: mapper
b() { b | b & }
b
sleep 2
echo '{"jobx":"return"}'
`

func TestLimitsKillAndTheSandboxServesTheNextRun(t *testing.T) {
	e := newEnv(t)
	next := func() {
		t.Helper()
		e.mustSucceed("wf", "map/echo.py", sandboxtest.EchoPy, "[\"a\", 1]\n", sandbox.Limits{Memory: 64 << 20, Pids: 32})
	}
	t.Run("memory hog is OOM killed", func(t *testing.T) {
		out, _, err := e.run("wf", "map/hog.py", pyHog, "", sandbox.Limits{Memory: 64 << 20})
		if err != nil || !out.OOMKilled {
			t.Fatalf("want an OOM kill, got %+v, %v", out, err)
		}
		next()
	})
	t.Run("sleeper is killed at its timeout", func(t *testing.T) {
		start := time.Now()
		out, _, err := e.run("wf", "map/sleep.py", pySleep, "", sandbox.Limits{Timeout: 500 * time.Millisecond})
		if err != nil || !out.TimedOut {
			t.Fatalf("want a timeout, got %+v, %v", out, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("timeout took %s", d)
		}
		next()
	})
	t.Run("fork bomb is stopped by the pids limit", func(t *testing.T) {
		out, _, err := e.run("wf", "map/bomb.py", pyForkBomb, "", sandbox.Limits{Pids: 32, Timeout: 10 * time.Second})
		if err != nil || out.Succeeded() || !strings.Contains(out.StderrTail, "Resource temporarily unavailable") {
			t.Fatalf("want a failed fork, got %+v, %v", out, err)
		}
		next()
	})
	t.Run("shell fork bomb is stopped by the pids limit", func(t *testing.T) {
		out, _, err := e.run("wf", "map/bomb.sh", shForkBomb, "", sandbox.Limits{Pids: 32, Timeout: 10 * time.Second})
		if err != nil {
			t.Fatalf("sandbox failed: %v", err)
		}
		t.Logf("shell bomb: %+v", out)
		next()
	})
	t.Run("output limit", func(t *testing.T) {
		out, _, err := e.run("wf", "map/echo.sh", sandboxtest.EchoSh, strings.Repeat("[\"a\", 1]\n", 1000), sandbox.Limits{MaxOutput: 100})
		if err != nil || !out.OutputExceeded {
			t.Fatalf("want output exceeded, got %+v, %v", out, err)
		}
	})
}

func TestMemoryBudgetBoundsThePool(t *testing.T) {
	e := newEnv(t, func(o *ctrd.Options) {
		o.Defaults.Memory = 64 << 20
		o.MemoryBudget = 128 << 20
	})
	done := make(chan error, 6)
	for i := 0; i < 6; i++ {
		go func(i int) {
			out, _, err := e.run(fmt.Sprintf("wf%d", i%3), "map/echo.sh", sandboxtest.EchoSh, "[\"a\", 1]\n", sandbox.Limits{})
			if err == nil && !out.Succeeded() {
				err = fmt.Errorf("failed: %+v", out)
			}
			done <- err
		}(i)
	}
	for i := 0; i < 6; i++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if _, mem, _ := e.sb.Stats(); mem > 128<<20 {
			t.Fatalf("memory %d over budget", mem)
		}
	}
}

func TestStaleContainersOfACrashedRunAreRemoved(t *testing.T) {
	addr := testbox.Containerd(t)
	e := newEnvAt(t, addr)
	e.mustSucceed("wf", "map/echo.sh", sandboxtest.EchoSh, "", sandbox.Limits{})
	ctx := context.Background()
	// A second runner with the same id finds the first one's containers
	// (as after kill -9) and removes them.
	e2 := newEnvAt(t, addr)
	ctrs, err := e2.sb.Client().Containers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ctrs) != 0 {
		t.Fatalf("%d stale containers left", len(ctrs))
	}
	// The first one, not dead after all (as one killed while containerd
	// still created its containers), starts another after that: the
	// second removes it too when it closes, since the namespace is its.
	e.mustSucceed("wf2", "map/echo.sh", sandboxtest.EchoSh, "", sandbox.Limits{})
	if ctrs, err = e2.sb.Client().Containers(ctx); err != nil || len(ctrs) != 1 {
		t.Fatalf("want the late container, got %d: %v", len(ctrs), err)
	}
	e2.sb.Close()
	cli, err := client.New(addr, client.WithDefaultNamespace(ctrd.NamespaceFor("test")))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if ctrs, err = cli.Containers(ctx); err != nil || len(ctrs) != 0 {
		t.Fatalf("%d containers left after the second runner closed: %v", len(ctrs), err)
	}
}

func TestABurstKeepsItsSandboxesUntilTheyLinger(t *testing.T) {
	e := newEnv(t, func(o *ctrd.Options) {
		o.MaxIdle = 1
		o.Linger = 300 * time.Millisecond
	})
	const n = 4
	burst := func() {
		t.Helper()
		done := make(chan error, n)
		for i := 0; i < n; i++ {
			go func() {
				out, _, err := e.run("wf", "map/sleep.sh", shSleep, "", sandbox.Limits{})
				if err == nil && !out.Succeeded() {
					err = fmt.Errorf("failed: %+v", out)
				}
				done <- err
			}()
		}
		for i := 0; i < n; i++ {
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
	}
	burst()
	created := e.sb.Created()
	if live, _, _ := e.sb.Stats(); live != n {
		t.Fatalf("%d sandboxes after a burst of %d, want %d", live, n, n)
	}
	burst()
	if got := e.sb.Created(); got != created {
		t.Fatalf("a second burst created %d more sandboxes, want none", got-created)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		live, _, idle := e.sb.Stats()
		if live == 1 && idle == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d live, %d idle sandboxes long after the burst, want MaxIdle (1)", live, idle)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

const shSleep = `#!/bin/sh
# Sleep a little, so that concurrent runs overlap.
#
# **
# handler_type: mapper
sleep 0.2
echo '{"jobx":"return"}'
`

const pyReused = `"""
Report this process, its scratch and environment, and leave a detached
sleeper and a marker behind.

**
handler_type: mapper
"""
import os, subprocess, sys

def alive(pid):
    # A killed child of a parked process stays a zombie until it reaps.
    try:
        return open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False

yield MrConfigureToReturn()
for _, old in arguments:
    yield ("alive:%d" % old, alive(old))
yield ("pid", os.getpid())
yield ("cwd", os.getcwd())
yield ("seen", os.path.exists(os.path.join(os.environ['TMPDIR'], 'marker')))
open(os.path.join(os.environ['TMPDIR'], 'marker'), 'w').write('x')
yield ("env", os.environ.get('LEFT', ''))
os.environ['LEFT'] = 'over'
p = subprocess.Popen(['sleep', '60'], start_new_session=True)
yield ("sleeper", p.pid)
`

func TestReuseKeepsTheProcessButNothingElseAndNeverServesAnotherKey(t *testing.T) {
	// One box, so that every run meets what the earlier ones left there.
	e := newEnv(t, func(o *ctrd.Options) { o.MaxSandboxes = 1 })
	spec1 := e.benchSpec(t, "map/reused.py", pyReused)
	spec2 := e.benchSpec(t, "map/reused2.py", pyReused)
	spec := spec1
	type report struct {
		pid, sleeper int
		cwd          string
		alive        map[int]bool
		stdout       string
	}
	run := func(reuse string, check ...int) report {
		t.Helper()
		sp := spec(reuse)
		var in, out strings.Builder
		for _, p := range check {
			fmt.Fprintf(&in, "[\"p\", %d]\n", p)
		}
		sp.Stdin, sp.Stdout = strings.NewReader(in.String()), &out
		o, err := e.sb.Run(context.Background(), sp)
		if err != nil || !o.Succeeded() {
			t.Fatalf("run %q: %+v %v", reuse, o, err)
		}
		r := report{alive: map[int]bool{}, stdout: out.String()}
		for _, line := range strings.Split(out.String(), "\n") {
			var k string
			var v any
			if n, _ := fmt.Sscanf(line, "[%q,", &k); n != 1 {
				continue
			}
			_, rest, _ := strings.Cut(line, ",")
			rest = strings.TrimSuffix(rest, "]")
			v = rest
			switch {
			case k == "pid":
				fmt.Sscan(rest, &r.pid)
			case k == "sleeper":
				fmt.Sscan(rest, &r.sleeper)
			case k == "cwd":
				r.cwd = rest
			case strings.HasPrefix(k, "alive:"):
				var p int
				fmt.Sscanf(k, "alive:%d", &p)
				r.alive[p] = v == "true"
			}
			if k == "seen" && rest != "false" || k == "env" && rest != `""` {
				t.Fatalf("run %q sees what an earlier run left: %s", reuse, line)
			}
		}
		return r
	}
	// A run without reuse leaves nothing: not its process, not its sleeper.
	plain := run("")
	a1 := run("A", plain.pid, plain.sleeper)
	if plain.pid == 0 || a1.alive[plain.pid] || a1.alive[plain.sleeper] {
		t.Fatalf("a run without reuse left processes behind: %+v then %s", plain, a1.stdout)
	}
	// The next run of key A gets A's parked process, with a fresh scratch
	// directory and environment, but not the sleeper A's first run left.
	a2 := run("A", a1.sleeper)
	if a2.pid != a1.pid {
		t.Fatalf("the second run of key A ran in process %d, not the parked %d", a2.pid, a1.pid)
	}
	if a2.alive[a1.sleeper] {
		t.Fatalf("the sleeper of a parked run survived it: %s", a2.stdout)
	}
	if a2.cwd == a1.cwd {
		t.Fatalf("a reused process got the same scratch directory %s", a2.cwd)
	}
	// A run of another handler with key A meets A's parked process, but
	// does not run in it, and leaves it parked.
	spec = spec2
	other := run("A", a2.pid)
	spec = spec1
	if other.pid == a2.pid || !other.alive[a2.pid] {
		t.Fatalf("another handler of key A ran in %d or killed the parked %d: %s", other.pid, a2.pid, other.stdout)
	}
	if again := run("A"); again.pid != a2.pid {
		t.Fatalf("a run of another handler of key A cost the parked process %d (now %d)", a2.pid, again.pid)
	}
	// A run of key B never gets A's process, and cannot reach into it (it
	// waits undumpable); A keeps it for its next run.
	b := run("B", a2.pid, other.pid)
	if b.pid == a2.pid || b.pid == other.pid {
		t.Fatalf("a run of key B ran in a process parked for A (%d, %d): %s", a2.pid, other.pid, b.stdout)
	}
	if a3 := run("A"); a3.pid != a2.pid {
		t.Fatalf("a run of key B cost A its process %d (now %d)", a2.pid, a3.pid)
	}
}

const pyPid = `"""
Report this process.

**
handler_type: mapper
"""
import os
yield MrConfigureToReturn()
yield ("pid", os.getpid())
`

// Two handlers run one after the other, each with its own reuse key (the
// mapper and the reducer of a trivial job, request after request, with
// reuse: handler): each keeps its process, instead of costing the other
// its own at every run.
func TestReuseKeysTakingTurnsKeepTheirProcesses(t *testing.T) {
	e := newEnv(t)
	specs := map[string]func(string) *sandbox.RunSpec{
		"handler wf/m": e.benchSpec(t, "map/m.py", pyPid),
		"handler wf/r": e.benchSpec(t, "map/r.py", pyPid),
	}
	pid := func(key string) string {
		t.Helper()
		sp := specs[key](key)
		var out strings.Builder
		sp.Stdout = &out
		o, err := e.sb.Run(context.Background(), sp)
		if err != nil || !o.Succeeded() {
			t.Fatalf("run %q: %+v %v", key, o, err)
		}
		return out.String()
	}
	first := map[string]string{"handler wf/m": pid("handler wf/m"), "handler wf/r": pid("handler wf/r")}
	for range 5 {
		for _, key := range []string{"handler wf/m", "handler wf/r"} {
			if got := pid(key); got != first[key] {
				t.Fatalf("%s ran in a new process: %s, then %s", key, first[key], got)
			}
		}
	}
}

const pyPeek = `"""
Try to read the memory of the process that forked this one (the box's
zygote), and its own /proc entries.

**
handler_type: mapper
"""
import os
yield MrConfigureToReturn()
zygote = os.getppid()
try:
    with open("/proc/%d/mem" % zygote, "rb") as f:
        yield ("zygote_mem", "opened")
except OSError as e:
    yield ("zygote_mem", type(e).__name__)
yield ("own_fds", len(os.listdir("/proc/self/fd")) > 0)
yield ("own_status", "Name:" in open("/proc/self/status").read())
`

// A handler runs as the same user as its box's zygote, and this kernel
// may have no Yama: the zygote (and the children waiting in it) are not
// dumpable, so a handler cannot reach into them, and so into later
// invocations; the handler still sees its own /proc entries.
func TestHandlersCannotReachIntoTheZygote(t *testing.T) {
	e := newEnv(t)
	for range 2 { // a fresh box, then a warm one
		_, stdout := e.mustSucceed("wf", "map/peek.py", pyPeek, "", sandbox.Limits{})
		if got := strings.Join(strings.Fields(stdout), ""); got != `{"jobx":"return"}["zygote_mem","PermissionError"]["own_fds",true]["own_status",true]` {
			t.Fatalf("a handler reached the zygote, or lost its own /proc: %s", stdout)
		}
	}
}

const pyServers = `"""
Try to reach the box's agent and zygote, and to replace their sockets.

**
handler_type: mapper
"""
import os, socket
yield MrConfigureToReturn()
for name in ("agent.sock", "zygote.sock"):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect("/jobx/run/" + name)
        yield (name, "connected")
    except OSError:
        yield (name, "refused")
    try:
        os.rename("/jobx/run/" + name, "/jobx/run/" + name + ".old")
        yield (name, "moved")
    except OSError:
        pass
`

func TestHandlersCannotAskTheBoxForProcesses(t *testing.T) {
	e := newEnv(t)
	_, stdout := e.mustSucceed("wf", "map/servers.py", pyServers, "", sandbox.Limits{})
	if got := strings.Join(strings.Fields(stdout), ""); got != `{"jobx":"return"}["agent.sock","refused"]["zygote.sock","refused"]` {
		t.Fatalf("a handler reached or moved the box's servers: %s", stdout)
	}
	e.mustSucceed("wf", "map/echo.py", sandboxtest.EchoPy, "", sandbox.Limits{})
}

const pyScratch = `"""
Report the scratch directory; touch it when asked.

**
handler_type: mapper
"""
import os
yield MrConfigureToReturn()
yield ("cwd", os.getcwd())
yield ("entries", len(os.listdir(".")))
for _, how in arguments:
    if how == "write":
        open("left", "w").write("x")
    elif how == "chmod":
        os.chmod(".", 0o777)
`

func TestAnUntouchedScratchDirectoryIsReusedAndATouchedOneNever(t *testing.T) {
	e := newEnv(t)
	cwd := func(in string) string {
		t.Helper()
		_, stdout := e.mustSucceed("wf", "map/scratch.py", pyScratch, in, sandbox.Limits{})
		if !strings.Contains(stdout, `["entries",0]`) {
			t.Fatalf("a run found a scratch directory with entries: %s", stdout)
		}
		_, rest, _ := strings.Cut(stdout, `["cwd",`)
		d, _, _ := strings.Cut(rest, "]")
		return d
	}
	first := cwd("")
	if again := cwd(`["how", "write"]` + "\n"); again != first {
		t.Fatalf("an untouched scratch directory was not reused: %s, then %s", first, again)
	}
	written := cwd(`["how", "chmod"]` + "\n")
	if written == first {
		t.Fatalf("a scratch directory with a file left in it was reused")
	}
	if chmodded := cwd(""); chmodded == written {
		t.Fatalf("a scratch directory whose mode changed was reused")
	}
}
