// Package sandboxtest is the contract every sandbox.Sandbox passes, in the
// manner of sharedfs/contract: one suite, run by each implementation's own
// tests against a real instance.
//
//	func TestContract(t *testing.T) {
//		sandboxtest.Run(t, sandboxtest.Env{New: func(t testing.TB, handlers string) sandbox.Sandbox { ... }, Isolating: true})
//	}
//
// It checks output and exit status in every language; the timeout,
// including a handler that ignores SIGTERM; the output, memory and pids
// limits; the scratch quota; warm reuse and its hygiene (no global, file or
// environment variable passes from one run to the next, unless the run's
// reuse key lets its process be kept); and that a killed run, then Close,
// leave no process, mount, cgroup or directory behind. For an isolating
// sandbox it also runs the escape probes: the host's loopback (and an etcd
// listening there) unreachable, host paths and other workflows' files
// invisible, a uid other than 0, a read-only root, a PID namespace of its
// own, no capabilities, a seccomp filter and no_new_privs.
package sandboxtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jobx/jobx/internal/testenv"
	"github.com/jobx/jobx/processors"
	_ "github.com/jobx/jobx/processors/all" // the suite runs every language
	"github.com/jobx/jobx/sandbox"
)

// Env is what the suite needs of an implementation.
type Env struct {
	// New returns a new sandbox whose runner installs handlers under
	// handlers (<handlers>/<workflow>); the suite closes it.
	New func(t testing.TB, handlers string) sandbox.Sandbox
	// Isolating runs the escape probes.
	Isolating bool
	// Leftovers lists what the sandboxes the suite made and closed left on
	// the host (mounts, cgroups, directories); nil checks processes only.
	Leftovers func() []string
	// Unenforced names the limits the implementation documents it cannot
	// enforce here ("pids", "memory", "scratch": the total of a run's
	// files), with why; the suite logs them instead of failing.
	Unenforced map[string]string
}

// Run runs the contract.
func Run(t *testing.T, e Env) {
	s := &suite{e: e}
	t.Run("OutputAndExitStatus", s.outputAndExitStatus)
	t.Run("Timeout", s.timeout)
	t.Run("OutputLimit", s.outputLimit)
	t.Run("MemoryLimit", s.memoryLimit)
	t.Run("PidsLimit", s.pidsLimit)
	t.Run("ScratchQuota", s.scratchQuota)
	t.Run("WarmReuseHygiene", s.hygiene)
	t.Run("KillAndCleanup", s.killAndCleanup)
	if e.Isolating {
		t.Run("EscapeProbes", s.escapeProbes)
	}
}

type suite struct {
	e Env
	n atomic.Int64
}

// box is one sandbox under test with its handler directory.
type box struct {
	t        testing.TB
	sb       sandbox.Sandbox
	handlers string
	closed   bool
}

func (s *suite) box(t testing.TB) *box {
	t.Helper()
	dir, err := os.MkdirTemp("", "jxt-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	b := &box{t: t, handlers: filepath.Join(dir, "handlers")}
	b.sb = s.e.New(t, b.handlers)
	t.Cleanup(func() { b.close() })
	return b
}

func (b *box) close() {
	if !b.closed {
		b.closed = true
		if err := b.sb.Close(); err != nil {
			b.t.Errorf("Close: %v", err)
		}
	}
}

// run is one handler run's settings beyond the handler itself.
type run struct {
	wf     string
	stdin  string
	limits sandbox.Limits
	env    []string
	reuse  string
	shared string
}

// result is a run's outcome and output.
type result struct {
	out    *sandbox.Outcome
	stdout string
	stderr string
}

// run installs src as handler file of workflow r.wf (default "wf") and runs
// it.
func (b *box) run(file, src string, r run) result {
	b.t.Helper()
	res, err := b.try(file, src, r)
	if err != nil {
		b.t.Fatalf("%s: sandbox error: %v", file, err)
	}
	return res
}

func (b *box) try(file, src string, r run) (result, error) {
	b.t.Helper()
	if r.wf == "" {
		r.wf = "wf"
	}
	proc, ok := processors.ForFile(file, []byte(src))
	if !ok {
		b.t.Fatalf("no processor for %s", file)
	}
	meta, err := processors.ParseHeader(file, []byte(src))
	if err != nil {
		b.t.Fatal(err)
	}
	name := strings.NewReplacer("/", "_", ".", "_").Replace(file)
	prog, err := proc.Install(filepath.Join(b.handlers, r.wf), processors.Handler{Workflow: r.wf, Name: name, Type: meta.HandlerType, SourceType: proc.Name(), Source: src})
	if err != nil {
		b.t.Fatal(err)
	}
	if r.limits.Timeout == 0 {
		r.limits.Timeout = 30 * time.Second
	}
	if r.stdin == "" {
		r.stdin = "[\"k\", 1]\n"
	}
	env := append([]string{"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8", "JOBX_WORKFLOW=" + r.wf,
		"JOBX_HANDLER=" + name, "JOBX_HANDLER_TYPE=" + meta.HandlerType}, r.env...)
	var stdout, stderr bytes.Buffer
	out, err := b.sb.Run(context.Background(), &sandbox.RunSpec{
		Workflow: r.wf, Handler: name, HandlerType: meta.HandlerType, Invocation: "inv", Processor: proc.Name(),
		Program: prog, Env: env, Stdin: strings.NewReader(r.stdin), Stdout: &stdout, Stderr: &stderr,
		Limits: r.limits, Reuse: r.reuse, SharedDir: r.shared,
	})
	if err != nil {
		return result{}, err
	}
	return result{out: out, stdout: stdout.String(), stderr: stderr.String()}, nil
}

// mustSucceed fails the test unless the run succeeded.
func (b *box) mustSucceed(file, src string, r run) result {
	b.t.Helper()
	res := b.run(file, src, r)
	if !res.out.Succeeded() {
		b.t.Fatalf("%s failed: %+v\nstderr: %s", file, res.out, res.stderr)
	}
	return res
}

// pairs parses a mapper's output: the directive line, then [k, v] pairs.
func pairs(t testing.TB, stdout string) map[string]json.RawMessage {
	t.Helper()
	m := map[string]json.RawMessage{}
	for i, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		if i == 0 || line == "" {
			continue
		}
		var kv []json.RawMessage
		if err := json.Unmarshal([]byte(line), &kv); err != nil || len(kv) != 2 {
			t.Fatalf("bad output line %q", line)
		}
		var k string
		if err := json.Unmarshal(kv[0], &k); err != nil {
			t.Fatalf("bad key in %q", line)
		}
		m[k] = kv[1]
	}
	return m
}

// Handlers that echo their input pairs, one per language (the Python one
// also says hello on stderr), for the contract and for tests of a
// sandbox's own behaviour.
const (
	EchoPy = `"""
Echo the pairs, and say something on stderr.

**
handler_type: mapper
"""
import sys
print("python says hello", file=sys.stderr)
yield MrConfigureToReturn()
for k, v in arguments:
    yield (k, v)
`

	EchoJS = `/*
Echo the pairs.

**
handler_type: mapper
*/
const lines = require('fs').readFileSync(0, 'utf8').split('\n').filter(Boolean);
process.stdout.write(JSON.stringify({jobx: 'return'}) + '\n' + lines.join('\n') + '\n');
`

	EchoSh = `#!/bin/sh
# Echo the pairs.
#
# **
# handler_type: mapper
echo '{"jobx":"return"}'
cat
`

	EchoExec = `#!/usr/bin/env python3
# Echo the pairs.
#
# **
# handler_type: mapper
import sys
print('{"jobx":"return"}')
for line in sys.stdin:
    print(line.strip())
`
)

const shExit3 = `#!/bin/sh
# Fail with status 3.
#
# **
# handler_type: mapper
echo "about to fail" >&2
exit 3
`

func (s *suite) outputAndExitStatus(t *testing.T) {
	b := s.box(t)
	for _, c := range []struct{ file, src string }{
		{"map/echo.py", EchoPy}, {"map/echo.js", EchoJS}, {"map/echo.sh", EchoSh}, {"map/echo_exec", EchoExec},
	} {
		for i := 0; i < 2; i++ { // cold, then warm
			res := b.mustSucceed(c.file, c.src, run{stdin: "[\"a\", 1]\n[\"b\", [2, 3]]\n"})
			got := pairs(t, res.stdout)
			if string(got["a"]) != "1" || strings.ReplaceAll(string(got["b"]), " ", "") != "[2,3]" {
				t.Fatalf("%s run %d: output %q", c.file, i, res.stdout)
			}
		}
	}
	if res := b.run("map/echo.py", EchoPy, run{}); !strings.Contains(res.out.StderrTail, "python says hello") {
		t.Fatalf("the stderr tail misses the handler's line: %q", res.out.StderrTail)
	}
	res := b.run("map/exit3.sh", shExit3, run{})
	if res.out.Succeeded() || res.out.ExitCode != 3 || !strings.Contains(res.out.StderrTail, "about to fail") {
		t.Fatalf("exit 3: %+v", res.out)
	}
}

const pySleep = `"""
Sleep.

**
handler_type: mapper
"""
import time
time.sleep(60)
yield MrConfigureToReturn()
`

const shIgnoresTerm = `#!/bin/sh
# Ignore SIGTERM and sleep.
#
# **
# handler_type: mapper
trap '' TERM
sleep 60
sleep 60
`

func (s *suite) timeout(t *testing.T) {
	b := s.box(t)
	for _, c := range []struct{ file, src string }{{"map/sleep.py", pySleep}, {"map/ignores_term.sh", shIgnoresTerm}} {
		start := time.Now()
		res := b.run(c.file, c.src, run{limits: sandbox.Limits{Timeout: time.Second}})
		if !res.out.TimedOut || res.out.Succeeded() {
			t.Fatalf("%s: want a timeout, got %+v", c.file, res.out)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("%s: the run took %s past a 1s timeout", c.file, d)
		}
	}
	// The sandbox serves the next run.
	b.mustSucceed("map/echo.py", EchoPy, run{})
}

const pyFlood = `"""
Write far more than the output limit.

**
handler_type: mapper
"""
yield MrConfigureToReturn()
for i in range(200000):
    yield (i, "x" * 100)
`

func (s *suite) outputLimit(t *testing.T) {
	b := s.box(t)
	res := b.run("map/flood.py", pyFlood, run{limits: sandbox.Limits{MaxOutput: 64 << 10}})
	if !res.out.OutputExceeded || res.out.Succeeded() {
		t.Fatalf("want the output limit to stop the handler: %+v", res.out)
	}
	if len(res.stdout) > 64<<10 {
		t.Fatalf("%d bytes passed a 64 KiB output limit", len(res.stdout))
	}
	b.mustSucceed("map/echo.py", EchoPy, run{})
}

const pyHog = `"""
Allocate 512 MiB, touching every page.

**
handler_type: mapper
"""
blocks = []
for i in range(512):
    blocks.append(bytearray(1 << 20))
yield MrConfigureToReturn()
yield ("allocated", len(blocks))
`

func (s *suite) memoryLimit(t *testing.T) {
	b := s.box(t)
	res := b.run("map/hog.py", pyHog, run{limits: sandbox.Limits{Memory: 128 << 20}})
	if why, ok := s.e.Unenforced["memory"]; ok {
		t.Logf("memory limits are not enforced here (%s): %+v", why, res.out)
		return
	}
	if res.out.Succeeded() {
		t.Fatalf("a handler allocated 512 MiB under a 128 MiB limit: %+v", res.out)
	}
	if !res.out.OOMKilled && !strings.Contains(res.out.StderrTail, "MemoryError") {
		t.Fatalf("want an OOM kill or a MemoryError, got %+v", res.out)
	}
	b.mustSucceed("map/echo.py", EchoPy, run{limits: sandbox.Limits{Memory: 128 << 20}})
}

const shForks = `#!/bin/sh
# Start 100 processes at once and count the ones that could not start.
#
# **
# handler_type: mapper
failed=0
i=0
while [ $i -lt 100 ]; do
  sleep 5 2>/dev/null &
  [ $? -eq 0 ] || failed=$((failed+1))
  i=$((i+1))
done
started=$(jobs -p | wc -l)
echo '{"jobx":"return"}'
echo "[\"started\", $started]"
kill $(jobs -p) 2>/dev/null
exit 0
`

func (s *suite) pidsLimit(t *testing.T) {
	b := s.box(t)
	res := b.run("map/forks.sh", shForks, run{limits: sandbox.Limits{Pids: 32}})
	started := -1
	if res.out.Succeeded() {
		var n int
		json.Unmarshal(pairs(t, res.stdout)["started"], &n)
		started = n
	}
	if why, ok := s.e.Unenforced["pids"]; ok {
		t.Logf("pids limits are not enforced here (%s): started %d of 100", why, started)
		return
	}
	if started >= 100 || (started < 0 && !strings.Contains(res.out.StderrTail+res.stderr, "fork")) {
		t.Fatalf("100 processes under a pids limit of 32: started %d, %+v\n%s", started, res.out, res.stderr)
	}
	b.mustSucceed("map/echo.sh", EchoSh, run{limits: sandbox.Limits{Pids: 32}})
}

// Handlers that write 32 MiB into their scratch directory, for the
// contract and for tests of a sandbox's own scratch handling.
const (
	FillScratchPy = `"""
Fill the scratch directory.

**
handler_type: mapper
"""
import os
yield MrConfigureToReturn()
with open(os.path.join(os.environ['JOBX_SCRATCH'], 'fill'), 'wb') as f:
    for _ in range(32):
        f.write(b'x' * (1 << 20))
`
	FillScratchSh = `#!/bin/sh
# Fill the scratch directory.
#
# **
# handler_type: mapper
set -e
dd if=/dev/zero of="$JOBX_SCRATCH/fill" bs=1048576 count=32
echo '{"jobx":"return"}'
`
)

// Handlers that report their scratch file system's size and free bytes,
// and their scratch directory's entries: one pair, "scratch", whose value
// is "<size> <free> <entries>".
const (
	StatScratchPy = `"""
Report the scratch directory.

**
handler_type: mapper
"""
import os
st = os.statvfs(os.environ['JOBX_SCRATCH'])
yield MrConfigureToReturn()
yield ("scratch", "%d %d %d" % (st.f_blocks * st.f_frsize, st.f_bfree * st.f_frsize, len(os.listdir(os.environ['JOBX_SCRATCH']))))
`
	StatScratchSh = `#!/bin/sh
# Report the scratch directory.
#
# **
# handler_type: mapper
set -e
set -- $(stat -f -c '%b %f %S' "$JOBX_SCRATCH")
echo '{"jobx":"return"}'
echo "[\"scratch\", \"$(($1 * $3)) $(($2 * $3)) $(ls -A "$JOBX_SCRATCH" | wc -l)\"]"
`
)

// scratchQuota: a run writing past its quota fails with ENOSPC inside, and
// the next run of the sandbox gets an empty scratch with its whole quota
// free; a run with another quota gets that much.
func (s *suite) scratchQuota(t *testing.T) {
	b := s.box(t)
	const quota = 8 << 20
	for _, c := range []struct{ lang, fill, stat, stderr string }{
		{"py", FillScratchPy, StatScratchPy, "OSError: [Errno 28] No space left on device"},
		{"sh", FillScratchSh, StatScratchSh, "No space left on device"},
	} {
		res := b.run("map/fill."+c.lang, c.fill, run{limits: sandbox.Limits{Scratch: quota}})
		if why, ok := s.e.Unenforced["scratch"]; ok {
			if res.out.Succeeded() {
				t.Fatalf("%s: 32 MiB written under an 8 MiB quota (%s)", c.lang, why)
			}
			t.Logf("scratch quotas bound each file, not the total, here (%s)", why)
			continue
		}
		if res.out.Succeeded() || !strings.Contains(res.out.StderrTail, c.stderr) {
			t.Fatalf("%s: a handler writing 32 MiB into 8 MiB of scratch: %+v, want a failure with %q", c.lang, res.out, c.stderr)
		}
		for _, q := range []int64{quota, 2 * quota} {
			res = b.mustSucceed("map/stat."+c.lang, c.stat, run{limits: sandbox.Limits{Scratch: q}})
			var got string
			json.Unmarshal(pairs(t, res.stdout)["scratch"], &got)
			if want := fmt.Sprintf("%d %d 0", q, q); got != want {
				t.Fatalf("%s: the next run with a %d-byte quota sees size, free and entries %q, want %q", c.lang, q, got, want)
			}
		}
	}
}

const pyLeaky = `"""
Leave traces: module state, a scratch file, an environment variable, a
file in the temporary directory.

**
handler_type: mapper
reuse: request
"""
import os, sys, tempfile
# Module state (an attribute of an imported module) lives as long as the
# process; a handler's own globals are made anew for every run.
seen = getattr(sys, "jobx_leak", None)
sys.jobx_leak = "leaked"
os.environ["JOBX_LEAK"] = "leaked"
with open(os.path.join(os.environ["JOBX_SCRATCH"], "leak"), "w") as f:
    f.write("leaked")
try:
    with open(os.path.join(tempfile.gettempdir(), "jobx-leak"), "w") as f:
        f.write("leaked")
except OSError:
    pass
yield MrConfigureToReturn()
yield ("global", seen)
`

const pyLooks = `"""
Look for the traces of an earlier run.

**
handler_type: mapper
"""
import os, sys, tempfile
found = []
if hasattr(sys, "jobx_leak"):
    found.append("module state")
if os.environ.get("JOBX_LEAK"):
    found.append("environment")
if os.listdir(os.environ["JOBX_SCRATCH"]):
    found.append("scratch")
if os.path.exists(os.path.join(tempfile.gettempdir(), "jobx-leak")) and tempfile.gettempdir() == os.environ["JOBX_SCRATCH"]:
    found.append("tmp")
yield MrConfigureToReturn()
yield ("found", found)
`

func (s *suite) hygiene(t *testing.T) {
	b := s.box(t)
	for i := 0; i < 3; i++ {
		// Without a reuse key nothing of a run reaches the next, whoever
		// runs it.
		res := b.mustSucceed("map/leaky.py", pyLeaky, run{})
		if g := string(pairs(t, res.stdout)["global"]); g != "null" {
			t.Fatalf("run %d saw an earlier run's module state: %s", i, g)
		}
		res = b.mustSucceed("map/looks.py", pyLooks, run{})
		if f := string(pairs(t, res.stdout)["found"]); f != "[]" {
			t.Fatalf("run %d found an earlier run's traces: %s", i, f)
		}
	}
	// A reuse key lets the handler's own process be kept for the key's next
	// run (that is what it asks for), and for that key only.
	var kept bool
	for i := 0; i < 3 && !kept; i++ {
		b.mustSucceed("map/leaky.py", pyLeaky, run{reuse: "request r1"})
		res := b.mustSucceed("map/leaky.py", pyLeaky, run{reuse: "request r1"})
		kept = string(pairs(t, res.stdout)["global"]) == `"leaked"`
	}
	if !kept {
		t.Fatal("no run of a reuse key got the process kept from the key's last run")
	}
	for i := 0; i < 3; i++ {
		res := b.mustSucceed("map/leaky.py", pyLeaky, run{reuse: fmt.Sprintf("request other-%d", i)})
		if g := string(pairs(t, res.stdout)["global"]); g != "null" {
			t.Fatalf("another reuse key got the process kept for r1: module state %s", g)
		}
	}
}

// leftoverHandler starts background processes that name $MARKER on their
// command line: one in the handler's process group and, for isolating
// sandboxes, one detached into a session of its own; then it returns, or
// sleeps past its timeout.
func leftoverHandler(detach, sleep bool) string {
	src := `"""
Leave processes behind.

**
handler_type: mapper
"""
import os, subprocess, sys, time
marker = os.environ["MARKER"]
code = "import time; time.sleep(300)"
subprocess.Popen([sys.executable, "-c", code, marker], stdin=subprocess.DEVNULL)
`
	if detach {
		src += `subprocess.Popen([sys.executable, "-c", code, marker], start_new_session=True,
                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
`
	}
	src += "time.sleep(0.3)\nyield MrConfigureToReturn()\n"
	if sleep {
		src += "time.sleep(60)\n"
	}
	return src
}

// processesWith returns the host pids whose command line holds marker.
func processesWith(marker string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmd, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && bytes.Contains(cmd, []byte(marker)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// gone waits until no process holds marker.
func gone(marker string, within time.Duration) []int {
	deadline := time.Now().Add(within)
	for {
		p := processesWith(marker)
		if len(p) == 0 || time.Now().After(deadline) {
			return p
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *suite) killAndCleanup(t *testing.T) {
	b := s.box(t)
	detach := s.e.Isolating
	for _, c := range []struct {
		name   string
		sleep  bool
		limits sandbox.Limits
	}{
		{"a handler that exits", false, sandbox.Limits{}},
		{"a handler killed at its timeout", true, sandbox.Limits{Timeout: 2 * time.Second}},
	} {
		marker := fmt.Sprintf("jobx-leftover-%d-%d", os.Getpid(), s.n.Add(1))
		res := b.run("map/leaves.py", leftoverHandler(detach, c.sleep), run{limits: c.limits, env: []string{"MARKER=" + marker}})
		if c.sleep != res.out.TimedOut || (!c.sleep && !res.out.Succeeded()) {
			t.Fatalf("%s: %+v\n%s", c.name, res.out, res.stderr)
		}
		if p := gone(marker, 5*time.Second); len(p) > 0 {
			t.Fatalf("%s: processes %v outlived the run", c.name, p)
		}
		b.mustSucceed("map/echo.sh", EchoSh, run{})
	}
	// Close stops everything, even a run in progress.
	marker := fmt.Sprintf("jobx-leftover-%d-%d", os.Getpid(), s.n.Add(1))
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.try("map/leaves.py", leftoverHandler(detach, true), run{env: []string{"MARKER=" + marker}})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for len(processesWith(marker)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the handler's background process never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a run went on 10s after Close")
	}
	if p := gone(marker, 5*time.Second); len(p) > 0 {
		t.Fatalf("processes %v outlived Close", p)
	}
	if s.e.Leftovers != nil {
		if l := s.e.Leftovers(); len(l) > 0 {
			t.Fatalf("Close left: %v", l)
		}
	}
}

const pyProbe = `"""
Probe the sandbox's walls; report what got through.

**
handler_type: mapper
"""
import os, socket
report = {}
def connect(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return "connected"
    except OSError as e:
        return "refused: %s" % e.__class__.__name__
report["loopback"] = connect(int(os.environ["PROBE_PORT"]))
report["etcd"] = connect(int(os.environ["PROBE_ETCD_PORT"]))
def read(path):
    try:
        with open(path) as f:
            f.read(1)
        return "read"
    except OSError as e:
        return "denied: %s" % e.__class__.__name__
for key in ("PROBE_SECRET", "PROBE_OTHER_HANDLER", "PROBE_OTHER_SHARED"):
    report[key] = read(os.environ[key])
report["shadow"] = read("/etc/shadow")
report["root_home"] = "listed" if os.path.isdir("/root") and os.access("/root", os.R_OK) and os.listdir("/root") else "hidden"
report["uid"] = os.getuid()
def write(path):
    try:
        with open(path, "w") as f:
            f.write("x")
        os.unlink(path)
        return "written"
    except OSError as e:
        return "denied: %s" % e.__class__.__name__
report["write_root"] = write("/jobx-probe")
report["write_usr"] = write("/usr/jobx-probe")
report["write_etc"] = write("/etc/jobx-probe")
report["pids"] = len([p for p in os.listdir("/proc") if p.isdigit()])
report["host_pid_visible"] = os.path.exists("/proc/%s" % os.environ["PROBE_HOST_PID"]) and os.environ["PROBE_HOST_PID"] not in ("1", "2")
status = {}
with open("/proc/self/status") as f:
    for line in f:
        k, _, v = line.partition(":")
        status[k] = v.strip()
for k in ("CapEff", "CapPrm", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp"):
    report[k] = status.get(k)
yield MrConfigureToReturn()
for k, v in sorted(report.items()):
    yield (k, v)
`

func (s *suite) escapeProbes(t *testing.T) {
	b := s.box(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
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
	etcdPort := startEtcd(t)
	secretDir := t.TempDir()
	secret := filepath.Join(secretDir, "secret")
	if err := os.WriteFile(secret, []byte("host secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(secretDir, 0o755)
	// Another workflow: its handler and its shared directory.
	b.mustSucceed("map/echo.py", EchoPy, run{wf: "other"})
	otherShared := filepath.Join(secretDir, "other-shared")
	os.MkdirAll(otherShared, 0o777)
	os.WriteFile(filepath.Join(otherShared, "data"), []byte("other workflow's file"), 0o666)
	b.mustSucceed("map/echo.py", EchoPy, run{wf: "other", shared: otherShared})
	otherHandler := ""
	filepath.WalkDir(filepath.Join(b.handlers, "other"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && otherHandler == "" {
			otherHandler = p
		}
		return nil
	})
	if otherHandler == "" {
		t.Fatal("no installed handler of workflow other")
	}
	res := b.mustSucceed("map/probe.py", pyProbe, run{wf: "wf", env: []string{
		"PROBE_PORT=" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port), "PROBE_ETCD_PORT=" + strconv.Itoa(etcdPort),
		"PROBE_SECRET=" + secret, "PROBE_OTHER_HANDLER=" + otherHandler, "PROBE_OTHER_SHARED=" + filepath.Join(otherShared, "data"),
		"PROBE_HOST_PID=" + strconv.Itoa(os.Getpid()),
	}})
	p := pairs(t, res.stdout)
	str := func(k string) string {
		var v any
		json.Unmarshal(p[k], &v)
		return fmt.Sprint(v)
	}
	for k, want := range map[string]string{
		"loopback": "refused", "etcd": "refused", "PROBE_SECRET": "denied", "PROBE_OTHER_HANDLER": "denied",
		"PROBE_OTHER_SHARED": "denied", "shadow": "denied", "root_home": "hidden", "write_root": "denied",
		"write_usr": "denied", "write_etc": "denied", "host_pid_visible": "false",
		"CapEff": "0000000000000000", "CapPrm": "0000000000000000", "CapBnd": "0000000000000000", "CapAmb": "0000000000000000",
		"NoNewPrivs": "1", "Seccomp": "2",
	} {
		if got := str(k); !strings.HasPrefix(got, want) {
			t.Errorf("probe %s: got %q, want %q", k, got, want)
		}
	}
	if uid := str("uid"); uid == "0" {
		t.Errorf("the handler runs as uid 0")
	}
	var pids int
	json.Unmarshal(p["pids"], &pids)
	if pids > 16 {
		t.Errorf("the handler sees %d processes: not a PID namespace of its own", pids)
	}
	if t.Failed() {
		t.Logf("probe report: %s", res.stdout)
	}
}

// startEtcd starts an etcd on the host's loopback and returns its client
// port.
func startEtcd(t testing.TB) int {
	t.Helper()
	endpoint, _ := testenv.Etcd(t)
	_, port, err := net.SplitHostPort(strings.TrimPrefix(strings.TrimPrefix(endpoint, "http://"), "https://"))
	if err != nil {
		t.Fatalf("etcd endpoint %q: %v", endpoint, err)
	}
	n, _ := strconv.Atoi(port)
	return n
}
