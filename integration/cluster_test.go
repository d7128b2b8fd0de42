package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jobx/jobx/gateway"
	jxcluster "github.com/jobx/jobx/internal/cluster"
	"github.com/jobx/jobx/internal/handlersync"
	"github.com/jobx/jobx/internal/testenv"
	"github.com/jobx/jobx/internal/testenv/testbox"
	"github.com/jobx/jobx/kvmodel"
	"github.com/jobx/jobx/processors"
	_ "github.com/jobx/jobx/processors/all"
	"github.com/jobx/jobx/runner"
	"github.com/jobx/jobx/sharedfs"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// cluster is an in-process jobx (internal/cluster) with the test's
// helpers: real etcd and nsqd, one gateway, runners.
type cluster struct {
	t     *testing.T
	jx    *jxcluster.Cluster
	etcd  string // endpoint
	cli   *clientv3.Client
	store *kvmodel.Store
	nsqd  string
	gw    *gateway.Gateway
	url   string
	mu    sync.Mutex
	n     int
}

func startCluster(t *testing.T, gwOpts ...func(*gateway.Options)) *cluster {
	t.Helper()
	return startClusterWithNSQD(t, testenv.NSQD(t), gwOpts...)
}

// startClusterWithNSQD is startCluster on a given nsqd.
func startClusterWithNSQD(t *testing.T, nsqd string, gwOpts ...func(*gateway.Options)) *cluster {
	t.Helper()
	endpoint, cli := testenv.Etcd(t)
	return startClusterOn(t, endpoint, cli, nsqd, gwOpts...)
}

// startClusterOn is startCluster on a given etcd (and a client of it) and nsqd.
func startClusterOn(t *testing.T, endpoint string, cli *clientv3.Client, nsqd string, gwOpts ...func(*gateway.Options)) *cluster {
	t.Helper()
	o := jxcluster.NewOptions()
	o.EtcdEndpoints, o.Client, o.NSQDs, o.Log = []string{endpoint}, cli, []string{nsqd}, testenv.Logger(t)
	o.Gateway.BlockingTimeout = 60 * time.Second
	for _, f := range gwOpts {
		f(o.Gateway)
	}
	jx, err := jxcluster.Start(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { jx.Close() })
	return &cluster{t: t, jx: jx, etcd: endpoint, cli: cli, store: jx.Store(), nsqd: nsqd, gw: jx.Gateway(), url: jx.URL()}
}

// startGateway starts the cluster's gateway on addr, after stopGateway.
func (c *cluster) startGateway(addr string) {
	c.t.Helper()
	if err := c.jx.StartGateway(context.Background(), addr); err != nil {
		c.t.Fatal(err)
	}
	c.gw, c.url = c.jx.Gateway(), c.jx.URL()
}

// stopGateway stops the cluster's gateway.
func (c *cluster) stopGateway() { c.jx.StopGateway() }

// addRunner starts a runner; it is stopped when the test ends. stop stops it early.
func (c *cluster) addRunner(mods ...func(*runner.Options)) (r *runner.Runner, stop func()) {
	c.t.Helper()
	c.mu.Lock()
	c.n++
	n := c.n
	c.mu.Unlock()
	o := runner.NewOptions()
	o.ID = fmt.Sprintf("runner%d", n)
	o.Dir, o.Log = filepath.Join(c.t.TempDir(), o.ID), testenv.Logger(c.t)
	o.RequeueDelay = 50 * time.Millisecond
	o.Grace = 5 * time.Second
	for _, f := range mods {
		f(o)
	}
	if o.Sandbox == nil {
		o.Sandbox = testbox.Sandbox(c.t, o.Dir)
	}
	r, err := c.jx.AddRunner(context.Background(), o)
	if err != nil {
		c.t.Fatal(err)
	}
	// Registered after the sandbox's cleanup, so it runs before it.
	stop = func() { c.jx.StopRunner(r) }
	c.t.Cleanup(stop)
	select {
	case <-r.Ready():
	case <-time.After(10 * time.Second):
		c.t.Fatal("runner not ready within 10s")
	}
	return r, stop
}

func (c *cluster) workflow(name string) {
	c.t.Helper()
	if err := c.store.Create(context.Background(), &kvmodel.Workflow{Name: name, Description: "test workflow " + name}); err != nil {
		c.t.Fatal(err)
	}
}

// handler stores a handler from a source file's name and text, as handler
// sync would.
func (c *cluster) handler(wf, name, file, src string) *kvmodel.Handler {
	c.t.Helper()
	proc, ok := processors.ForFile(file, []byte(src))
	if !ok {
		c.t.Fatalf("no processor for %s", file)
	}
	if err := proc.Check(context.Background(), file, []byte(src)); err != nil {
		c.t.Fatalf("check %s: %v", file, err)
	}
	meta, err := processors.ParseHeader(file, []byte(src))
	if err != nil {
		c.t.Fatal(err)
	}
	h := &kvmodel.Handler{
		Name: name, WorkflowName: wf, Description: meta.Description, SourceType: proc.Name(), SourceCode: src,
		Version: processors.Version([]byte(src)), HandlerType: meta.HandlerType, RequiredCapability: meta.RequiredCapability,
		Options: handlersync.HandlerOptions(file, meta),
	}
	existing := &kvmodel.Handler{WorkflowName: wf, Name: name}
	if c.store.Get(context.Background(), existing) == nil {
		h.Options.File = file
		if err := c.store.Update(context.Background(), h); err != nil {
			c.t.Fatal(err)
		}
		return h
	}
	if err := c.store.Create(context.Background(), h); err != nil {
		c.t.Fatal(err)
	}
	return h
}

func (c *cluster) step(wf, name, mapH, combineH, reduceH string) {
	c.t.Helper()
	s := &kvmodel.Step{Name: name, WorkflowName: wf, Description: "step " + name, MapHandlerName: mapH, CombineHandlerName: combineH, ReduceHandlerName: reduceH}
	if err := c.store.Create(context.Background(), s); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) job(wf, name, step string) {
	c.t.Helper()
	if err := c.store.Create(context.Background(), &kvmodel.Job{Name: name, WorkflowName: wf, Description: "job " + name, InitialStepName: step}); err != nil {
		c.t.Fatal(err)
	}
}

// response is a decoded gateway answer.
type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (c *cluster) do(method, path, contentType, body string) response {
	c.t.Helper()
	req, err := http.NewRequest(method, c.url+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := response{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	json.Unmarshal(raw, &r.body)
	return r
}

// post submits a job and returns the gateway's answer.
func (c *cluster) post(wf, job, body, query string) response {
	c.t.Helper()
	path := "/job/" + wf + "/" + job
	if query != "" {
		path += "?" + query
	}
	return c.do("POST", path, "application/json", body)
}

// pairs returns a successful response's result pairs as a map from the
// JSON of each key to the JSON of its value.
func (r response) pairs(t *testing.T) map[string]string {
	t.Helper()
	if r.status != 200 {
		t.Fatalf("want 200, got %d: %s", r.status, r.raw)
	}
	var body struct {
		Result struct {
			Pairs []json.RawMessage `json:"pairs"`
		} `json:"result"`
	}
	if err := json.Unmarshal([]byte(r.raw), &body); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, p := range body.Result.Pairs {
		var kv []json.RawMessage
		json.Unmarshal(p, &kv)
		out[string(kv[0])] = compact(kv[1])
	}
	return out
}

func compact(raw []byte) string {
	var b bytes.Buffer
	json.Compact(&b, raw)
	return b.String()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sharedFiles is a local shared filesystem for a test's runners: handlers
// reach their workflow's files at JOBX_FS_ROOT in every sandbox.
type sharedFiles struct{ dir string }

func sharedFS(t testing.TB) sharedFiles { return sharedFiles{dir: t.TempDir()} }

// runner configures a runner to serve the shared files.
func (s sharedFiles) runner(o *runner.Options) {
	o.FS = sharedfs.Config{Backend: sharedfs.BackendLocal, Dir: s.dir}
}

// path returns the host path of a workflow's shared file.
func (s sharedFiles) path(wf, name string) string {
	dir, _ := sharedfs.HostDir(sharedfs.Config{Backend: sharedfs.BackendLocal, Dir: s.dir}, wf)
	return filepath.Join(dir, name)
}

// slowJob defines workflow wf with job "slow": a mapper that appends a
// line to the workflow's shared file "runs", sleeps seconds and returns
// ('done', 1), and a summing reducer. Its runners must serve s.
func (s sharedFiles) slowJob(c *cluster, wf string, seconds int) {
	c.workflow(wf)
	c.handler(wf, "map_slow", "map/slow.py", fmt.Sprintf(`"""
Count the runs (in the workflow's shared files, which the sandboxed handler
reaches), then take a while.

**
handler_type: mapper
"""
import os, time
with open(os.path.join(os.environ['JOBX_FS_ROOT'], 'runs'), 'a') as f:
    f.write('run\n')
time.sleep(%d)
yield MrConfigureToReturn()
yield ('done', 1)
`, seconds))
	c.handler(wf, "reduce_sum", "reduce/sum.py", sumPy)
	c.step(wf, "slow", "map_slow", "", "reduce_sum")
	c.job(wf, "slow", "slow")
}

// runs returns how often slowJob's mapper of workflow wf has started.
func (s sharedFiles) runs(wf string) int {
	b, _ := os.ReadFile(s.path(wf, "runs"))
	return strings.Count(string(b), "run")
}
