package integration

import (
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/jobx/jobx/images"
	"github.com/jobx/jobx/internal/manifest"
	"github.com/jobx/jobx/internal/testenv"
	"github.com/jobx/jobx/internal/testenv/testbox"
	"github.com/jobx/jobx/kvmodel"
	"github.com/jobx/jobx/runner"
	ctrd "github.com/jobx/jobx/sandbox/containerd"
	"github.com/jobx/jobx/sharedfs"
)

// containerdRunner starts a private containerd and a runner whose handlers
// run in containerd sandboxes.
func containerdRunner(t *testing.T, c *cluster, mods ...func(*ctrd.Options)) *runner.Runner {
	t.Helper()
	return containerdRunnerWith(t, c, nil, mods...)
}

// containerdRunnerWith is containerdRunner with runner options of its own.
func containerdRunnerWith(t *testing.T, c *cluster, rmod func(*runner.Options), mods ...func(*ctrd.Options)) *runner.Runner {
	t.Helper()
	addr := testbox.Containerd(t)
	agentDir, _ := os.MkdirTemp("", "jobx-agent-")
	t.Cleanup(func() { os.RemoveAll(agentDir) })
	agent := filepath.Join(agentDir, "jobx-agent")
	build := exec.Command("go", "build", "-o", agent, "../cmd/jobx-agent")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build jobx-agent: %v: %s", err, out)
	}
	runnerDir := t.TempDir()
	boxDir, _ := os.MkdirTemp("", "jxc-")
	t.Cleanup(func() { os.RemoveAll(boxDir) })
	o := ctrd.NewOptions()
	o.Address, o.RunnerID, o.Dir, o.HandlersDir, o.AgentPath, o.Log = addr, "ctr1", boxDir, filepath.Join(runnerDir, "handlers"), agent, testenv.Logger(t)
	o.Namespace = ctrd.NamespaceFor("ctr1")
	o.Images = containerdImages(t)
	for _, f := range mods {
		f(o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	sb, err := ctrd.New(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	r, _ := c.addRunner(func(ro *runner.Options) {
		ro.Sandbox, ro.Dir, ro.ID = sb, runnerDir, "ctr1"
		if rmod != nil {
			rmod(ro)
		}
	})
	return r
}

// containerdImages builds jobx's sandbox images once per test binary (the
// build is cached and reproducible).
var containerdImages = func() func(t *testing.T) *images.Store {
	var st *images.Store
	var err error
	return func(t *testing.T) *images.Store {
		t.Helper()
		if st == nil && err == nil {
			dir := filepath.Join(os.TempDir(), "jobx-test-images")
			if st, err = images.Open(dir); err == nil {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
				defer cancel()
				_, err = st.Build(ctx, images.Buildable()...)
			}
		}
		if err != nil {
			t.Fatalf("build sandbox images: %v", err)
		}
		return st
	}
}()

func TestContainerdSandboxRunsAJob(t *testing.T) {
	c := startCluster(t)
	containerdRunner(t, c)
	c.leafWorkflow("wf")
	assertPairs(t, c.post("wf", "leaf", `{"arguments":{"n":6}}`, "").pairs(t), sumsOf(6))
}

func TestContainerdSandboxRunsEveryLanguage(t *testing.T) {
	c := startCluster(t)
	containerdRunner(t, c)
	for _, d := range []string{"../examples/languages", "../examples/dev"} {
		if _, err := manifest.Apply(context.Background(), c.store, d, testenv.Logger(t)); err != nil {
			t.Fatal(err)
		}
	}
	assertPairs(t, c.post("languages", "letters", `{"arguments":{"text":"Hello, World"}}`, "").pairs(t),
		map[string]string{`"h"`: "1", `"e"`: "1", `"l"`: "3", `"o"`: "2", `"w"`: "1", `"r"`: "1", `"d"`: "1"})
	assertPairs(t, c.post("languages", "squares", `{"arguments":{"a":3,"b":4}}`, "").pairs(t), map[string]string{`"squares"`: "25"})
	got := c.post("dev", "job4", `{"arguments":{"arg1":1000}}`, "").pairs(t)
	total := 0
	for _, v := range got {
		total += sumValues(t, v)
	}
	if total != 1000 {
		t.Fatalf("job4 intervals add up to %d: %v", total, got)
	}
}

func TestContainerdSandboxIsolatesAndLimitsHandlers(t *testing.T) {
	c := startCluster(t)
	containerdRunner(t, c, func(o *ctrd.Options) { o.Defaults.Timeout = 5 * time.Second })
	c.leafWorkflow("wf")
	// The gateway listens on the host's loopback: a sandbox without network
	// has a loopback of its own, where nothing listens.
	_, port, _ := net.SplitHostPort(c.gw.Addr())
	dial := "import socket\ns = socket.create_connection(('127.0.0.1', " + port + "), timeout=2)\n"
	header := "\"\"\"\nHostile.\n\n**\nhandler_type: mapper\n%s\"\"\"\n"
	for _, tc := range []struct {
		name, extra, body, kind, mention string
		ok                               bool
	}{
		{"cannot dial the host", "", dial + "yield MrConfigureToReturn()\n", "handler_failed", "Connection refused", false},
		{"can dial the host with host networking", "network: host\n", dial + "yield MrConfigureToReturn()\nyield ('dialled', 1)\n", "", "", true},
		{"cannot read host paths", "", "open('/etc/shadow').read()\nyield MrConfigureToReturn()\n", "handler_failed", "No such file or directory", false},
		{"memory hog is killed", "memory: 64Mi\n", "x = []\nwhile True:\n    x.append(bytearray(8 << 20))\n    x[-1][::4096] = b'x' * len(x[-1][::4096])\nyield MrConfigureToReturn()\n", "oom", "memory limit", false},
		{"sleeper is killed at its timeout", "timeout: 2s\n", "import time\ntime.sleep(60)\nyield MrConfigureToReturn()\n", "timeout", "timed out", false},
		{"fork bomb is stopped by the pids limit", "pids: 32\n", "import os\nfor i in range(1000):\n    os.fork()\nyield MrConfigureToReturn()\n", "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := "map_" + strings.NewReplacer(" ", "_", "-", "_").Replace(tc.name)
			c.handler("wf", name, "map/"+name+".py", fmt.Sprintf(header, tc.extra)+tc.body)
			c.step("wf", name, name, "", "reduce_sum")
			c.job("wf", name, name)
			r := c.post("wf", name, `{"arguments":{"n":1}}`, "")
			if tc.ok {
				if r.status != 200 {
					t.Fatalf("want success, got %d: %.400s", r.status, r.raw)
				}
			} else {
				if r.status != 500 {
					t.Fatalf("want failure, got %d: %.400s", r.status, r.raw)
				}
				e, _ := r.body["error"].(map[string]any)
				msg := fmt.Sprint(e["message"]) + " " + fmt.Sprint(e["stderr_tail"])
				if tc.kind != "" && (e["kind"] != tc.kind || !strings.Contains(msg, tc.mention)) {
					t.Fatalf("want kind %s mentioning %q, got %v: %s", tc.kind, tc.mention, e["kind"], msg)
				}
			}
			// The runner keeps serving.
			assertPairs(t, c.post("wf", "leaf", `{"arguments":{"n":3}}`, "").pairs(t), sumsOf(3))
		})
	}
}

// TestKilledContainerdRunnerLeavesNoStaleContainers: kill -9 a runner
// process whose handlers run in containerd; its warm containers outlive
// it, and the next start of a runner with its id removes them.
func TestKilledContainerdRunnerLeavesNoStaleContainers(t *testing.T) {
	bin := jobxBinary(t)
	agent := filepath.Join(filepath.Dir(bin), "jobx-agent")
	build := exec.Command("go", "build", "-o", agent, "../cmd/jobx-agent")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build jobx-agent: %v: %s", err, out)
	}
	addr := testbox.Containerd(t)
	c := startCluster(t)
	c.leafWorkflow("wf")
	imagesDir := filepath.Join(os.TempDir(), "jobx-test-images")
	containerdImages(t)
	cmd := exec.Command(bin, "runner", "--etcd", c.etcd, "--nsqd", c.nsqd, "--id", "victim", "--dir", t.TempDir(),
		"--sandbox", "containerd", "--containerd", addr, "--images-dir", imagesDir, "--log-level", "warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the victim runner", 30*time.Second, func() bool { return runnerAnnounced(t, c, "victim") })
	assertPairs(t, c.post("wf", "leaf", `{"arguments":{"n":3}}`, "").pairs(t), sumsOf(3))
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	cli, err := containerd.New(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx := namespaces.WithNamespace(context.Background(), ctrd.NamespaceFor("victim"))
	left, err := cli.Containers(ctx)
	if err != nil || len(left) == 0 {
		t.Fatalf("the killed runner left no warm container to clean (%d, %v): the test proves nothing", len(left), err)
	}
	// The runner starts again (in-process here) under the same id.
	o := ctrd.NewOptions()
	boxDir, _ := os.MkdirTemp("", "jxc-")
	defer os.RemoveAll(boxDir)
	o.Address, o.RunnerID, o.Namespace, o.Dir, o.HandlersDir, o.AgentPath, o.Images, o.Log =
		addr, "victim", ctrd.NamespaceFor("victim"), boxDir, filepath.Join(t.TempDir(), "handlers"), agent, containerdImages(t), testenv.Logger(t)
	sb, err := ctrd.New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	if left, err := cli.Containers(ctx); err != nil || len(left) != 0 {
		t.Fatalf("after the restart %d stale containers remain (%v)", len(left), err)
	}
}

func TestContainerdSandboxSessionsAndSharedFiles(t *testing.T) {
	dir := t.TempDir()
	c := startCluster(t)
	containerdRunnerWith(t, c, func(o *runner.Options) { o.FS = sharedfs.Config{Backend: "local", Dir: dir} })
	// Files: written through FS and into the mounted root, read by the
	// next step; nothing outside the workflow's root is reachable.
	os.MkdirAll(filepath.Join(dir, "working", "other"), 0o755)
	os.WriteFile(filepath.Join(dir, "working", "other", "secret.txt"), []byte("no"), 0o644)
	fsJob(t, c, "files")
	assertPairs(t, c.post("files", "j", `{"arguments":{"x":5}}`, "").pairs(t), map[string]string{
		`"a"`: `"written through FS: 5"`, `"names"`: `["deep","direct.txt"]`, `"isdir"`: "true", `"escape"`: `"RuntimeError"`,
	})
	if b, err := os.ReadFile(filepath.Join(dir, "working", "files", "out", "direct.txt")); err != nil || string(b) != "written to the mount" {
		t.Fatalf("the mounted root's file is not on the host: %q %v", b, err)
	}
	// Sessions.
	c.workflow("wf")
	c.handler("wf", "map_remember", "map/remember.py", `"""
Write the session and a file.

**
handler_type: mapper
"""
S_SET('seen', arguments[0][1])
yield MrConfigureToReturn()
yield ('v', arguments[0][1])
`)
	c.handler("wf", "reduce_session", "reduce/session.py", `"""
Read the session.

**
handler_type: reducer
"""
yield ('seen', S_GET('seen'))
`)
	c.step("wf", "s", "map_remember", "", "reduce_session")
	c.job("wf", "j", "s")
	assertPairs(t, c.post("wf", "j", `{"arguments":{"x":7}}`, "").pairs(t), map[string]string{`"seen"`: "7"})
}

func TestContainerdWorkflowDefaultsApplyUnderTheHandlersHeader(t *testing.T) {
	c := startCluster(t)
	containerdRunner(t, c)
	_, port, _ := net.SplitHostPort(c.gw.Addr())
	wf := &kvmodel.Workflow{Name: "hosted", Description: "host networking by default", Defaults: &kvmodel.HandlerOptions{Network: "host"}}
	if err := c.store.Create(context.Background(), wf); err != nil {
		t.Fatal(err)
	}
	dial := "import socket\ns = socket.create_connection(('127.0.0.1', " + port + "), timeout=2)\nyield MrConfigureToReturn()\nyield ('dialled', 1)\n"
	c.handler("hosted", "map_dial", "map/dial.py", "\"\"\"\nDial the host.\n\n**\nhandler_type: mapper\n\"\"\"\n"+dial)
	c.handler("hosted", "map_dial_none", "map/dial_none.py", "\"\"\"\nDial the host, opting out.\n\n**\nhandler_type: mapper\nnetwork: none\n\"\"\"\n"+dial)
	c.handler("hosted", "reduce_sum", "reduce/sum.py", sumPy)
	c.step("hosted", "dial", "map_dial", "", "reduce_sum")
	c.step("hosted", "dial_none", "map_dial_none", "", "reduce_sum")
	c.job("hosted", "dial", "dial")
	c.job("hosted", "dial_none", "dial_none")
	assertPairs(t, c.post("hosted", "dial", `{"arguments":{}}`, "").pairs(t), map[string]string{`"dialled"`: "1"})
	if r := c.post("hosted", "dial_none", `{"arguments":{}}`, ""); r.status != 500 {
		t.Fatalf("the handler's network: none did not win over the workflow's default: %d %s", r.status, r.raw)
	}
}

func TestContainerdWarmSandboxLeaksNothingToTheNextInvocation(t *testing.T) {
	c := startCluster(t)
	containerdRunner(t, c)
	c.workflow("wf")
	c.handler("wf", "map_leak", "map/leak.py", `"""
Look for what an earlier invocation left, then leave it.

**
handler_type: mapper
"""
import os
marker = os.path.join(os.environ['TMPDIR'], 'marker')
seen = [os.path.exists(marker), globals().get('LEAK') is not None, os.environ.get('LEAK_ENV') is not None]
open(marker, 'w').write('x')
globals()['LEAK'] = 1
os.environ['LEAK_ENV'] = '1'
yield MrConfigureToReturn()
yield ('seen', seen)
`)
	c.handler("wf", "reduce_noop", "reduce/noop.py", noopPy)
	c.step("wf", "leak", "map_leak", "", "reduce_noop")
	c.job("wf", "leak", "leak")
	for i := 0; i < 3; i++ {
		assertPairs(t, c.post("wf", "leak", `{"arguments":{"x":1}}`, "").pairs(t), map[string]string{`"seen"`: `[[false,false,false]]`})
	}
}

func TestContainerdPoolMetrics(t *testing.T) {
	c := startCluster(t)
	r := containerdRunner(t, c)
	c.leafWorkflow("wf")
	for i := 0; i < 3; i++ {
		assertPairs(t, c.post("wf", "leaf", `{"arguments":{"n":2}}`, "").pairs(t), sumsOf(2))
	}
	rec := httptest.NewRecorder()
	r.Metrics().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{`jobx_runner_sandboxes_live{runner="ctr1"} 1`, `jobx_runner_sandboxes_idle{runner="ctr1"} 1`,
		`jobx_sandbox_starts_total{runner="ctr1",sandbox="containerd",start="warm"} 5`, `jobx_sandbox_starts_total{runner="ctr1",sandbox="containerd",start="cold"} 1`,
		`jobx_runner_sandbox_isolated{runner="ctr1",sandbox="containerd"} 1`} {
		if !strings.Contains(body, want) {
			t.Errorf("runner metrics lack %s", want)
		}
	}
}
