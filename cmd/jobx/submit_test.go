package main

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jobx/jobx/gateway"
	"github.com/jobx/jobx/internal/manifest"
	"github.com/jobx/jobx/internal/testenv"
	"github.com/jobx/jobx/runner"
)

// startCluster starts a gateway and a runner in-process over c's etcd and a
// fresh nsqd, loads testdata/dev, and returns the gateway URL.
func startCluster(t *testing.T, c *cli) string {
	t.Helper()
	nsqd := testenv.NSQD(t)
	if _, err := manifest.Apply(t.Context(), c.store, filepath.Join("testdata", "dev"), testenv.Logger(t)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)

	gopts := gateway.NewOptions()
	gopts.Addr, gopts.Etcd, gopts.NSQDs, gopts.Log = "127.0.0.1:0", c.store.Client(), []string{nsqd}, testenv.Logger(t)
	gw, err := gateway.New(ctx, gopts)
	if err != nil {
		t.Fatal(err)
	}
	ropts := runner.NewOptions()
	ropts.Etcd, ropts.NSQDs, ropts.Dir, ropts.Log, ropts.Concurrency = c.store.Client(), []string{nsqd}, t.TempDir(), testenv.Logger(t), 2
	ropts.Sandbox = testenv.Sandbox(t, ropts.Dir)
	r, err := runner.New(ctx, ropts)
	if err != nil {
		gw.Close()
		t.Fatal(err)
	}
	go func() { gw.Run(ctx); done <- struct{}{} }()
	go func() { r.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() {
		cancel()
		<-done
		<-done
		if err := errors.Join(r.Close(), gw.Close()); err != nil {
			t.Error(err)
		}
	})
	<-r.Ready()
	return "http://" + gw.Addr()
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
