package integration

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	client "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/jobx/jobx/internal/testenv"
	"github.com/jobx/jobx/processors"
	"github.com/jobx/jobx/runner"
	ctrd "github.com/jobx/jobx/runner/containerd"
)

// containerdCluster is a cluster whose runner runs handlers in containerd
// sandboxes on a private containerd; shared holds the workflows' shared
// directories.
func containerdCluster(t *testing.T) (c *cluster, addr, shared string) {
	t.Helper()
	addr = testenv.Containerd(t)
	c = startCluster(t)
	shared = t.TempDir()
	c.addRunner(func(o *runner.Options) { o.Sandbox = newContainerdSandbox(t, addr, o.ID, o.Dir, shared) })
	return c, addr, shared
}

func newContainerdSandbox(t *testing.T, addr, id, runnerDir, shared string) *ctrd.Sandbox {
	t.Helper()
	dir, err := os.MkdirTemp("", "jx-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	o := ctrd.NewOptions()
	o.Address, o.RunnerID, o.Dir, o.HandlersDir = addr, id, dir, filepath.Join(runnerDir, "handlers")
	o.AgentPath, o.Images, o.Log = testenv.Agent(t), testenv.Images(t), testenv.Logger(t)
	o.SharedDir = func(wf string) string {
		d := filepath.Join(shared, wf)
		os.MkdirAll(d, 0o777)
		os.Chmod(d, 0o777)
		return d
	}
	sb, err := ctrd.New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	return sb
}

// limitedHandler stores a handler and then sets its pids limit, which the
// generic helper does not copy from the header.
func (c *cluster) limitedHandler(wf, name, file, src string, pids int) {
	c.t.Helper()
	h := c.handler(wf, name, file, src)
	if pids > 0 {
		h.Options.Pids = pids
		if err := c.store.Update(context.Background(), h); err != nil {
			c.t.Fatal(err)
		}
	}
}

const shSumReducer = `#!/bin/sh
# Sum each key's values, in POSIX sh.
#
# **
# handler_type: reducer
while IFS= read -r line; do
  key=$(printf '%s' "$line" | sed 's/^\[\([^,]*\),.*/\1/')
  vals=$(printf '%s' "$line" | sed 's/^\[[^,]*,\[\(.*\)\]\]$/\1/' | tr ',' ' ')
  total=0
  for v in $vals; do total=$((total + v)); done
  printf '[%s,%s]\n' "$key" "$total"
done
`

const jsYieldMapper = `/*
Yield n numbered pairs over three keys, in JavaScript.

**
handler_type: mapper
*/
const lines = require('fs').readFileSync(0, 'utf8').split('\n').filter(Boolean).map(JSON.parse);
const n = lines[0][1];
const out = [JSON.stringify({jobx: 'return'})];
for (let i = 0; i < n; i++) out.push(JSON.stringify([i % 3, i]));
process.stdout.write(out.join('\n') + '\n');
`

func TestContainerdRunsHandlersInEveryLanguage(t *testing.T) {
	c, _, _ := containerdCluster(t)
	c.workflow("wf")
	c.handler("wf", "map_yield", "map/yield.py", yieldPy)
	c.handler("wf", "map_split", "map/split.py", splitPy)
	c.handler("wf", "reduce_sum", "reduce/sum.py", sumPy)
	c.handler("wf", "reduce_noop", "reduce/noop.py", noopPy)
	c.handler("wf", "map_js", "map/js.js", jsYieldMapper)
	c.handler("wf", "reduce_sh", "reduce/sh.sh", shSumReducer)
	c.step("wf", "chunk", "map_yield", "", "reduce_sum")
	c.step("wf", "split", "map_split", "", "reduce_noop")
	c.step("wf", "js_sh", "map_js", "", "reduce_sh")
	c.job("wf", "leaf", "chunk")
	c.job("wf", "branch", "split")
	c.job("wf", "js_sh", "js_sh")
	t.Run("python", func(t *testing.T) {
		assertPairs(t, c.post("wf", "leaf", `{"arguments":{"n":10}}`, "").pairs(t), sumsOf(10))
	})
	t.Run("python branch", func(t *testing.T) {
		got := c.post("wf", "branch", `{"arguments":{"arg1":7}}`, "").pairs(t)
		if len(got) == 0 {
			t.Fatal("no pairs")
		}
	})
	t.Run("node and sh", func(t *testing.T) {
		assertPairs(t, c.post("wf", "js_sh", `{"arguments":{"n":9}}`, "").pairs(t), sumsOf(9))
	})
}

// failure posts a job and returns its structured error.
func (c *cluster) failure(wf, job, body string) map[string]any {
	c.t.Helper()
	r := c.post(wf, job, body, "")
	if r.status != 500 {
		c.t.Fatalf("want 500, got %d: %s", r.status, r.raw)
	}
	e, _ := r.body["error"].(map[string]any)
	if e == nil {
		c.t.Fatalf("no error: %s", r.raw)
	}
	return e
}

func TestContainerdLimitsNetworkAndMounts(t *testing.T) {
	c, _, shared := containerdCluster(t)
	c.workflow("wf")
	c.workflow("other")
	os.MkdirAll(filepath.Join(shared, "other"), 0o777)
	os.WriteFile(filepath.Join(shared, "other", "secret"), []byte("other's"), 0o644)
	hostSecret := filepath.Join(t.TempDir(), "host-secret")
	os.WriteFile(hostSecret, []byte("host's"), 0o644)
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()
	dialAddr := fmt.Sprintf("%s:%d", hostIPv4(), ln.Addr().(*net.TCPAddr).Port)

	c.handler("wf", "reduce_sum", "reduce/sum.py", sumPy)
	c.handler("wf", "map_yield", "map/yield.py", yieldPy)
	dial := `"""
Dial the host.

**
handler_type: mapper
%s
"""
import socket
host, port = %q.rsplit(':', 1)
socket.create_connection((host, int(port)), timeout=2).close()
yield MrConfigureToReturn()
yield ("dialed", 1)
`
	c.handler("wf", "map_dial", "map/dial.py", fmt.Sprintf(dial, "", dialAddr))
	c.handler("wf", "map_dial_host", "map/dial_host.py", fmt.Sprintf(dial, "network: host", dialAddr))
	c.handler("wf", "map_read", "map/read.py", `"""
Read a path outside the sandbox's mounts.

**
handler_type: mapper
"""
path = dict(arguments)['path']
open(path).read()
yield MrConfigureToReturn()
`)
	c.handler("wf", "map_shared", "map/shared.py", `"""
Write and read the workflow's shared directory.

**
handler_type: mapper
"""
import os
d = os.environ['JOBX_SHARED_DIR']
open(os.path.join(d, 'out'), 'w').write('hello')
yield MrConfigureToReturn()
yield ("read", open(os.path.join(d, 'out')).read())
`)
	c.handler("wf", "map_hog", "map/hog.py", `"""
Allocate memory without bound.

**
handler_type: mapper
memory: 64Mi
"""
chunks = []
while True:
    chunks.append(bytearray(8 << 20))
yield MrConfigureToReturn()
`)
	c.handler("wf", "map_sleep", "map/sleep.py", `"""
Sleep past the timeout.

**
handler_type: mapper
timeout: 500ms
"""
import time
time.sleep(60)
yield MrConfigureToReturn()
`)
	c.limitedHandler("wf", "map_bomb", "map/bomb.sh", `#!/bin/sh
# A fork bomb.
#
# **
# handler_type: mapper
# timeout: 10s
b() { b | b & }
b
wait
`, 32)
	for _, s := range []struct{ step, mapper string }{{"chunk", "map_yield"}, {"dial", "map_dial"}, {"dial_host", "map_dial_host"}, {"read", "map_read"},
		{"shared", "map_shared"}, {"hog", "map_hog"}, {"sleep", "map_sleep"}, {"bomb", "map_bomb"}} {
		c.step("wf", s.step, s.mapper, "", "reduce_sum")
		c.job("wf", s.step, s.step)
	}
	next := func(t *testing.T) {
		t.Helper()
		assertPairs(t, c.post("wf", "chunk", `{"arguments":{"n":5}}`, "").pairs(t), sumsOf(5))
	}

	t.Run("no network by default", func(t *testing.T) {
		e := c.failure("wf", "dial", `{"arguments":{"x":1}}`)
		if tail, _ := e["stderr_tail"].(string); !strings.Contains(tail, "Error") {
			t.Fatalf("dial failed without an error: %v", e)
		}
		next(t)
	})
	t.Run("host network as opted in", func(t *testing.T) {
		assertPairs(t, c.post("wf", "dial_host", `{"arguments":{"x":1}}`, "").pairs(t), map[string]string{`"dialed"`: "1"})
	})
	for _, path := range []string{hostSecret, filepath.Join(shared, "other", "secret"), "/working/other/secret"} {
		t.Run("cannot read "+path, func(t *testing.T) {
			e := c.failure("wf", "read", fmt.Sprintf(`{"arguments":{"path":%q}}`, path))
			if tail, _ := e["stderr_tail"].(string); !strings.Contains(tail, "No such file") && !strings.Contains(tail, "Permission denied") {
				t.Fatalf("unexpected failure: %v", e)
			}
		})
	}
	t.Run("shared directory is read-write", func(t *testing.T) {
		assertPairs(t, c.post("wf", "shared", `{"arguments":{"x":1}}`, "").pairs(t), map[string]string{`"read"`: `"hello"`})
		if b, _ := os.ReadFile(filepath.Join(shared, "wf", "out")); string(b) != "hello" {
			t.Fatalf("shared file holds %q", b)
		}
	})
	t.Run("memory hog is reported as OOM", func(t *testing.T) {
		if e := c.failure("wf", "hog", `{"arguments":{"x":1}}`); e["kind"] != "oom" {
			t.Fatalf("want an oom failure, got %v", e)
		}
		next(t)
	})
	t.Run("sleeper is killed at its timeout", func(t *testing.T) {
		if e := c.failure("wf", "sleep", `{"arguments":{"x":1}}`); e["kind"] != "timeout" {
			t.Fatalf("want a timeout failure, got %v", e)
		}
		next(t)
	})
	t.Run("fork bomb is stopped by the pids limit", func(t *testing.T) {
		start := time.Now()
		e := c.failure("wf", "bomb", `{"arguments":{"x":1}}`)
		t.Logf("fork bomb: %v after %s", e["kind"], time.Since(start))
		if tail, _ := e["stderr_tail"].(string); !strings.Contains(tail, "fork") && e["kind"] != "timeout" {
			t.Fatalf("unexpected failure: %v", e)
		}
		next(t)
	})
}

func hostIPv4() string {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ip, ok := a.(*net.IPNet); ok && !ip.IP.IsLoopback() && ip.IP.To4() != nil {
			return ip.IP.String()
		}
	}
	return "127.0.0.1"
}

// TestContainerdHelperRunner is a runner's sandbox in a child process
// (run by TestContainerdKilledRunnerLeavesNoStaleContainers): it starts a
// warm sandbox, says so, and waits to be killed.
func TestContainerdHelperRunner(t *testing.T) {
	addr := os.Getenv("JOBX_HELPER_CONTAINERD")
	if addr == "" {
		t.Skip("helper process")
	}
	dir := os.Getenv("JOBX_HELPER_DIR")
	sb := newContainerdSandbox(t, addr, "crashing-runner", dir, t.TempDir())
	spec := helperSpec(t, dir)
	out, err := sb.Run(context.Background(), spec)
	if err != nil || !out.Succeeded() {
		t.Fatalf("%+v %v", out, err)
	}
	fmt.Println("READY")
	time.Sleep(time.Minute)
}

func helperSpec(t *testing.T, runnerDir string) *runner.RunSpec {
	proc, _ := processors.ByName("sh")
	prog, err := proc.Install(filepath.Join(runnerDir, "handlers", "wf"), processors.Handler{
		Workflow: "wf", Name: "map_true", Type: "mapper", SourceType: "sh", Source: "#!/bin/sh\necho '{\"jobx\":\"return\"}'\n"})
	if err != nil {
		t.Fatal(err)
	}
	return &runner.RunSpec{Workflow: "wf", Handler: "map_true", HandlerType: "mapper", Program: prog,
		Stdin: strings.NewReader(""), Stdout: io.Discard, Env: []string{"PATH=/usr/bin:/bin"}, Limits: runner.Limits{Timeout: 10 * time.Second}}
}

func TestContainerdKilledRunnerLeavesNoStaleContainers(t *testing.T) {
	addr := testenv.Containerd(t)
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestContainerdHelperRunner$", "-test.v")
	cmd.Env = append(os.Environ(), "JOBX_HELPER_CONTAINERD="+addr, "JOBX_HELPER_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	var seen string
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(seen, "READY") {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("helper not ready: %s", seen)
		}
		n, err := out.Read(buf)
		seen += string(buf[:n])
		if err != nil {
			t.Fatalf("helper: %v: %s", err, seen)
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	cli, err := client.New(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ns := namespaces.WithNamespace(context.Background(), ctrd.NamespaceFor("crashing-runner"))
	if ctrs, _ := cli.Containers(ns); len(ctrs) == 0 {
		t.Fatal("the killed runner left no container: the test proves nothing")
	}
	// The next runner (another id) starts and removes them.
	newContainerdSandbox(t, addr, "next-runner", t.TempDir(), t.TempDir())
	ctrs, err := cli.Containers(ns)
	if err != nil {
		t.Fatal(err)
	}
	if len(ctrs) != 0 {
		t.Fatalf("%d stale containers left", len(ctrs))
	}
}
