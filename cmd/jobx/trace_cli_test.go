package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
)

// TestTraceJSONAndFormats covers what TestTraceCommandsOnARealTwoLevelRequest
// leaves out: dump and graph as JSON on a real request and a failed one,
// PNG output, an unknown format, and sessions as JSON.
func TestTraceJSONAndFormats(t *testing.T) {
	c := newCLI(t)
	c.env["JOBX_GATEWAY"] = startCluster(t, c)
	sub := c.run("", "submit", "demo", "double", "-a", "a=1", "-a", "b=2", "--keep", "--wait")
	id := regexp.MustCompile(`[0-9a-f]{40}`).FindString(sub.stderr)
	if sub.code != 0 || id == "" {
		t.Fatalf("submit: %d %s", sub.code, sub.stderr)
	}

	type node struct {
		Kind    string `json:"kind"`
		Handler string `json:"handler"`
		State   string `json:"state"`
		Data    *struct {
			Arguments   []json.RawMessage `json:"arguments"`
			PostCombine []json.RawMessage `json:"post_combine"`
			PostReduce  []json.RawMessage `json:"post_reduce"`
		} `json:"data"`
		Failure *struct {
			Kind       string `json:"kind"`
			StderrTail string `json:"stderr_tail"`
		} `json:"failure"`
		Log    string `json:"log"`
		Reduce *node  `json:"reduce"`
	}
	type graph struct {
		Request struct {
			State string `json:"state"`
		} `json:"request"`
		Root   node `json:"root"`
		Counts struct{ Invocations, Done, Failed, Pending int }
	}
	decode := func(out string) graph {
		t.Helper()
		var g graph
		if err := json.Unmarshal([]byte(out), &g); err != nil {
			t.Fatalf("%v:\n%s", err, out)
		}
		return g
	}

	d := decode(c.ok("trace", "dump", "demo", id, "-o", "json"))
	if d.Request.State != "done" || d.Root.Data == nil || len(d.Root.Data.Arguments) != 2 || len(d.Root.Data.PostReduce) != 2 ||
		d.Root.Reduce == nil || d.Root.Reduce.Handler != "reduce_sum" || d.Counts.Invocations != 2 || d.Counts.Done != 2 {
		t.Fatalf("dump json: %+v", d)
	}
	// The handler's log lines are kept with the invocation of a kept
	// request, and dumped.
	if !strings.Contains(d.Root.Log, "doubling 2 values") {
		t.Errorf("the mapper's log in the dump: %q", d.Root.Log)
	}
	mustContain(t, "dump text", c.ok("trace", "dump", "demo", id), "  log:\n", "| ", "INFO MR_HANDLER.RAW.map_double: doubling 2 values")
	if g := decode(c.ok("trace", "graph", "demo", id, "-o", "json")); g.Root.Data != nil || g.Root.Handler != "map_double" {
		t.Fatalf("graph json: %+v", g)
	}
	if png := c.ok("trace", "graph", "demo", id, "--format", "png"); !strings.HasPrefix(png, "\x89PNG") {
		t.Fatalf("png: %.20q", png)
	}
	mustContain(t, "unknown format", c.fails("trace", "graph", "demo", id, "--format", "gif"), `format "gif"`)
	if out := strings.TrimSpace(c.ok("trace", "sessions", "demo", id, "-o", "json")); out != "[]" {
		t.Errorf("sessions json: %s", out)
	}

	r := c.run("", "submit", "demo", "fail", "-a", "a=1", "--keep")
	failed := regexp.MustCompile(`[0-9a-f]{40}`).FindString(r.stderr)
	if r.code == 0 || failed == "" {
		t.Fatalf("failing submit: %d %s", r.code, r.stderr)
	}
	f := decode(c.ok("trace", "dump", "demo", failed, "-o", "json"))
	if f.Request.State != "failed" || f.Root.State != "failed" || f.Root.Failure == nil || f.Root.Failure.Kind != "handler_failed" ||
		!strings.Contains(f.Root.Failure.StderrTail, "something broke") || f.Counts.Failed != 1 {
		t.Fatalf("failed dump json: %+v", f)
	}
	mustContain(t, "failed graph", c.ok("trace", "graph", "demo", failed), `fillcolor="#f4a6a6"`, `"Request (`+failed[:10]+`)"`)
}
