package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jobx/jobx/internal/manifest"
	"github.com/jobx/jobx/internal/testenv"
)

// TestTraceCommandsOnARealTwoLevelRequest runs JobX's job4 (split, then a
// random-yield leaf and a sum in each half, a noop reducer on top) and a
// failing job, and checks each trace command's output.
func TestTraceCommandsOnARealTwoLevelRequest(t *testing.T) {
	c := newCLI(t)
	c.env["JOBX_GATEWAY"] = startCluster(t, c)
	if _, err := manifest.Apply(t.Context(), c.store, "../../examples/dev", testenv.Logger(t)); err != nil {
		t.Fatal(err)
	}
	id := strings.TrimSpace(c.ok("submit", "dev", "job4", "-a", "arg1=1000", "--keep", "--no-wait"))
	c.ok("submit", "dev", "job4", "-a", "arg1=1000", "--keep", "--no-wait", "--wait") // a second one, waited for
	waitDone := func(wf, id string) {
		for i := 0; i < 500; i++ {
			if r := c.run("", "request", "get", wf, id); r.code == 0 && regexp.MustCompile(`is_done\s+true`).MatchString(r.stdout) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		r := c.run("", "request", "get", wf, id)
		t.Fatalf("request %s did not finish: %d %s %s", id, r.code, r.stdout, r.stderr)
	}
	waitDone("dev", id)

	tree := c.ok("trace", "tree", "dev", id)
	lines := strings.Split(strings.TrimSpace(tree), "\n")
	// Header, root map, 2 children (map + reduce each), root reduce.
	if len(lines) != 7 || !strings.HasPrefix(lines[0], "request "+id+"  workflow dev  job job4  done  (6 invocations: 6 done") {
		t.Fatalf("tree:\n%s", tree)
	}
	want := []*regexp.Regexp{
		regexp.MustCompile(`^M [0-9a-f]{10} \[A-R\] step6_split_argument_1  map_test_split  done$`),
		regexp.MustCompile(`^  M [0-9a-f]{10} \[ACR\] step7_chunk_argument  map_test_random_yield  done$`),
		regexp.MustCompile(`^  R [0-9a-f]{10} \[   \] step7_chunk_argument  reduce_test_sum  done$`),
		regexp.MustCompile(`^  M [0-9a-f]{10} \[ACR\] step7_chunk_argument  map_test_random_yield  done$`),
		regexp.MustCompile(`^  R [0-9a-f]{10} \[   \] step7_chunk_argument  reduce_test_sum  done$`),
		regexp.MustCompile(`^R [0-9a-f]{10} \[   \] step6_split_argument_1  reduce_test_noop  done$`),
	}
	for i, re := range want {
		if !re.MatchString(lines[i+1]) {
			t.Fatalf("tree line %d %q does not match %s\n%s", i+1, lines[i+1], re, tree)
		}
	}

	dump := c.ok("trace", "dump", "dev", id)
	mustContain(t, "dump", dump, `["arg1",1000]`, "[0,500]", "[1,500]", "post_combine:", "post_reduce:", "REDUCE")

	var js struct {
		Request struct {
			ID string `json:"-"`
		} `json:"request"`
		Root struct {
			Kind     string `json:"kind"`
			Children []struct {
				Datasets struct {
					PostReduce bool `json:"post_reduce"`
				} `json:"datasets"`
			} `json:"children"`
		} `json:"root"`
		Counts struct{ Invocations, Done int } `json:"counts"`
	}
	if err := json.Unmarshal([]byte(c.ok("trace", "tree", "dev", id, "-o", "json")), &js); err != nil {
		t.Fatal(err)
	}
	if js.Root.Kind != "map" || len(js.Root.Children) != 2 || !js.Root.Children[1].Datasets.PostReduce || js.Counts.Invocations != 6 || js.Counts.Done != 6 {
		t.Fatalf("json: %+v", js)
	}

	dot := c.ok("trace", "graph", "dev", id)
	mustContain(t, "dot", dot, "digraph request", `"Request (`+id[:10]+`)"`, `"Workflow (dev)"`, `"Job (job4)"`,
		`label="mapped to"`, `label="data reduced by"`, `label="step reduced by"`, `label="stored to"`, `MI `, `RI `)
	if strings.Count(dot, `label="mapped to"`) != 2 {
		t.Fatalf("want 2 mapped-to edges:\n%s", dot)
	}
	svg := c.ok("trace", "graph", "dev", id, "--format", "svg")
	mustContain(t, "svg", svg, "<svg", "step7_chunk_argument")

	// A failed request: the dump shows the error and the stderr tail.
	r := c.run("", "submit", "demo", "fail", "-a", "a=1", "--keep")
	failed := ""
	for _, line := range strings.Split(r.stderr+r.stdout, "\n") {
		if m := regexp.MustCompile(`[0-9a-f]{40}`).FindString(line); m != "" && failed == "" {
			failed = m
		}
	}
	if failed == "" {
		t.Fatalf("no request id in %q", r.stderr)
	}
	waitDone("demo", failed)
	mustContain(t, "failed tree", c.ok("trace", "tree", "demo", failed), "failed")
	mustContain(t, "failed dump", c.ok("trace", "dump", "demo", failed), "error: handler_failed", "stderr (tail):", "something broke")
	mustContain(t, "missing request", c.fails("trace", "tree", "dev", strings.Repeat("0", 40)), "does not exist", "--keep")
}
