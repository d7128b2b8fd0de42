package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jobx/jobx/internal/cluster"
	"github.com/jobx/jobx/internal/manifest"
	"github.com/jobx/jobx/internal/testenv"
	"github.com/jobx/jobx/internal/testenv/testbox"
	"github.com/jobx/jobx/runner"
)

// startCluster starts a gateway and a runner in-process over c's etcd and a
// fresh nsqd, loads testdata/dev, and returns the gateway URL.
func startCluster(t *testing.T, c *cli) string {
	t.Helper()
	if _, err := manifest.Apply(t.Context(), c.store, filepath.Join("testdata", "dev"), testenv.Logger(t)); err != nil {
		t.Fatal(err)
	}
	ro := runner.NewOptions()
	ro.Dir, ro.Concurrency = t.TempDir(), 2
	ro.Sandbox = testbox.Sandbox(t, ro.Dir)
	o := cluster.NewOptions()
	o.Dir, o.Log, o.Runners = t.TempDir(), testenv.Logger(t), []*runner.Options{ro}
	o.EtcdEndpoints, o.Client = []string{c.endpoint}, c.store.Client()
	jx, err := cluster.Start(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { jx.Close() })
	<-jx.Runners()[0].Ready()
	return jx.URL()
}

func TestSubmitPrintsResultPairs(t *testing.T) {
	c := newCLI(t)
	c.env["JOBX_GATEWAY"] = startCluster(t, c)

	if out := c.ok("submit", "demo", "double", "-a", "a=1", "-a", "b=2"); out != "a\t2\nb\t4\n" {
		t.Errorf("blocking submit printed %q", out)
	}
	out := c.ok("submit", "demo", "double", "--json", `{"z": 5}`, "-o", "json")
	mustContain(t, "json output", out, `"pairs":[["z",10]]`, `"request_id"`)

	id := strings.TrimSpace(c.ok("submit", "demo", "double", "-a", "a=1", "--no-wait"))
	if len(id) != 40 {
		t.Errorf("--no-wait printed %q, want a request id", id)
	}
	if out := c.ok("submit", "demo", "double", "-a", "q=21", "--no-wait", "--wait"); out != "q\t42\n" {
		t.Errorf("--no-wait --wait printed %q", out)
	}
	mustContain(t, "unknown job", c.fails("submit", "demo", "nope"), `job "nope"`, "not_found")
}

func TestSubmitOfAFailingJobPrintsTheStructuredError(t *testing.T) {
	c := newCLI(t)
	c.env["JOBX_GATEWAY"] = startCluster(t, c)
	r := c.run("", "submit", "demo", "fail", "-a", "a=1")
	if r.code != 1 {
		t.Fatalf("exit %d, want 1; stderr %s", r.code, r.stderr)
	}
	mustContain(t, "stderr", r.stderr, "failed: handler_failed", "handler:", "map_fail", "invocation:", "exit status: 3", "something broke")
}

func TestArgumentsKeepOrderAndParseJSON(t *testing.T) {
	o := submitOptions{json: `{"b": [1, 2], "a": "x"}`, args: []string{"n=3", "s=hello", "o={\"k\":1}"}}
	body, err := o.arguments()
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"arguments":{"b":[1, 2],"a":"x","n":3,"s":"hello","o":{"k":1}}}`; string(body) != want {
		t.Errorf("body = %s, want %s", body, want)
	}
	if _, err := (submitOptions{json: `[1]`}).arguments(); err == nil {
		t.Error("a --json array was accepted")
	}
}
