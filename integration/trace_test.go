package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"

	"github.com/jobx/jobx/internal/trace"
)

// wellFormed fails the test unless doc parses as XML.
func wellFormed(t *testing.T, what, doc string) {
	t.Helper()
	dec := xml.NewDecoder(strings.NewReader(doc))
	for {
		_, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatalf("%s is not well-formed XML: %v\n%s", what, err, doc)
		}
	}
}

// TestTraceOfARealTwoLevelRequest loads JobX's job4 (split into two
// halves, a random-yield leaf and a sum in each, a noop reducer on top) and
// checks each rendering: tree, dump, JSON, DOT and the built-in SVG.
func TestTraceOfARealTwoLevelRequest(t *testing.T) {
	c := uiCluster(t)
	r := c.post("dev", "job4", `{"arguments":{"arg1":1000}}`, "keep=true")
	r.pairs(t)
	id := r.header.Get("X-MR-REQUEST-ID")
	g, err := trace.Load(context.Background(), c.store, "dev", id, true)
	if err != nil {
		t.Fatal(err)
	}
	if g.Counts != (trace.Counts{Invocations: 6, Done: 6}) || g.RequestState() != "done" {
		t.Fatalf("counts %+v, state %s", g.Counts, g.RequestState())
	}

	var tree bytes.Buffer
	g.Tree(&tree)
	lines := strings.Split(strings.TrimSpace(tree.String()), "\n")
	want := []string{
		`^request ` + id + `  workflow dev  job job4  done  \(6 invocations: 6 done, 0 failed, 0 pending\)$`,
		`^M [0-9a-f]{10} \[A-R\] step6_split_argument_1  map_test_split  done$`,
		`^  M [0-9a-f]{10} \[ACR\] step7_chunk_argument  map_test_random_yield  done$`,
		`^  R [0-9a-f]{10} \[   \] step7_chunk_argument  reduce_test_sum  done$`,
		`^  M [0-9a-f]{10} \[ACR\] step7_chunk_argument  map_test_random_yield  done$`,
		`^  R [0-9a-f]{10} \[   \] step7_chunk_argument  reduce_test_sum  done$`,
		`^R [0-9a-f]{10} \[   \] step6_split_argument_1  reduce_test_noop  done$`,
	}
	if len(lines) != len(want) {
		t.Fatalf("tree has %d lines, want %d:\n%s", len(lines), len(want), tree.String())
	}
	for i, re := range want {
		if !regexp.MustCompile(re).MatchString(lines[i]) {
			t.Errorf("tree line %d %q does not match %s", i, lines[i], re)
		}
	}

	var dump bytes.Buffer
	g.Dump(&dump)
	mustHave(t, "dump", dump.String(), "MAP    "+g.Root.ID, `["arg1",1000]`, "[0,500]", "[1,500]", "post_combine:", "post_reduce:", "REDUCE "+g.Root.Reduce.ID)

	js, err := json.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Request struct {
			JobName string `json:"job_name"`
			State   string `json:"state"`
		} `json:"request"`
		Root struct {
			Kind     string `json:"kind"`
			Step     string `json:"step"`
			Children []struct {
				Handler string          `json:"handler"`
				Data    json.RawMessage `json:"data"`
			} `json:"children"`
			Reduce struct{ Kind, Handler string } `json:"reduce"`
		} `json:"root"`
		Counts trace.Counts `json:"counts"`
	}
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	if back.Request.JobName != "job4" || back.Request.State != "done" || back.Root.Kind != "map" || len(back.Root.Children) != 2 ||
		back.Root.Children[0].Handler != "map_test_random_yield" || !strings.Contains(string(back.Root.Children[0].Data), `"post_reduce"`) ||
		back.Root.Reduce.Kind != "reduce" || back.Root.Reduce.Handler != "reduce_test_noop" || back.Counts.Done != 6 {
		t.Errorf("json: %s", js)
	}

	var dot bytes.Buffer
	g.DOT(&dot)
	for edge, n := range map[string]int{`label="mapped to"`: 2, `label="data reduced by"`: 2, `label="step reduced by"`: 1, `label="stored to"`: 3} {
		if got := strings.Count(dot.String(), edge); got != n {
			t.Errorf("dot has %d %s edges, want %d:\n%s", got, edge, n, dot.String())
		}
	}

	var svg bytes.Buffer
	g.LayoutSVG(&svg)
	wellFormed(t, "built-in svg", svg.String())
	if n := strings.Count(svg.String(), `<g class="node `); n != 9 {
		t.Errorf("built-in svg has %d nodes, want 9", n)
	}
	mustHave(t, "built-in svg", svg.String(), `data-invocation="`+g.Root.ID+`"`, "state-done", "#b8e6b8", "MI "+g.Root.ID[:10],
		"RI "+g.Root.Reduce.ID[:10], "Job (job4)", "step reduced by", "data reduced by", "stored to", "mapped to")
}

// TestTraceOfAFailedRequest checks that the failing invocation, its error
// and its stderr show in every rendering.
func TestTraceOfAFailedRequest(t *testing.T) {
	c := uiCluster(t)
	r := c.post("broken", "fail", `{"arguments":{"a":1}}`, "keep=true")
	if r.status != 500 {
		t.Fatalf("want 500, got %d: %s", r.status, r.raw)
	}
	id := r.header.Get("X-MR-REQUEST-ID")
	g, err := trace.Load(context.Background(), c.store, "broken", id, true)
	if err != nil {
		t.Fatal(err)
	}
	if g.Counts.Failed != 1 || g.Root.State != "failed" || g.Root.Failure == nil || g.RequestState() != "failed" {
		t.Fatalf("counts %+v, root %+v", g.Counts, g.Root)
	}
	var tree, dump, dot, svg bytes.Buffer
	g.Tree(&tree)
	g.Dump(&dump)
	g.DOT(&dot)
	g.LayoutSVG(&svg)
	mustHave(t, "tree", tree.String(), "failed  (1 invocations: 0 done, 1 failed", "map_fail  failed")
	mustHave(t, "dump", dump.String(), "error: handler_failed", "stderr (tail):", "| something broke")
	mustHave(t, "dot", dot.String(), `fillcolor="#f4a6a6"`)
	mustHave(t, "svg", svg.String(), "state-failed", `fill="#f4a6a6"`)
	wellFormed(t, "svg", svg.String())
}

// TestRequestGraphFormats covers the graph route's JSON, and its SVG and
// PNG without Graphviz: SVG from the built-in layout, PNG a clear 501.
func TestRequestGraphFormats(t *testing.T) {
	c := uiCluster(t)
	r := c.post("dev", "job5", `{"arguments":{"arg1":50}}`, "keep=true")
	r.pairs(t)
	id := r.header.Get("X-MR-REQUEST-ID")

	js := c.do("GET", "/request/dev/"+id+"/graph?format=json", "", "")
	if js.status != 200 || js.body["counts"] == nil || !strings.Contains(js.raw, `"kind":"reduce"`) {
		t.Fatalf("json: %d %s", js.status, js.raw)
	}
	t.Setenv("PATH", t.TempDir()) // no dot; the request is done, so no runner needs an interpreter
	svg := c.do("GET", "/request/dev/"+id+"/graph", "", "")
	if svg.status != 200 || svg.header.Get("Content-Type") != "image/svg+xml" || !strings.Contains(svg.raw, `data-invocation="`) {
		t.Fatalf("built-in svg: %d %s %.300s", svg.status, svg.header.Get("Content-Type"), svg.raw)
	}
	wellFormed(t, "svg", svg.raw)
	png := c.do("GET", "/request/dev/"+id+"/graph?format=png", "", "")
	if png.status != 501 || !strings.Contains(png.raw, "graphviz") {
		t.Fatalf("png without dot: %d %s", png.status, png.raw)
	}
}

// TestTraceOfAWideRequest loads a request whose root branched to more
// children than one read transaction holds: every child is there, in
// order, with its data and its reduce invocation.
func TestTraceOfAWideRequest(t *testing.T) {
	c := basic(t)
	c.handler("wf", "map_fan", "map/fan.py", `"""
Branch to n children, child i gets i.

**
handler_type: mapper
"""
n = dict(arguments)['n']
yield MrConfigureToMap('chunk')
for i in range(n):
    yield ('n', i)
`)
	c.step("wf", "fan", "map_fan", "", "reduce_noop")
	c.job("wf", "fan", "fan")
	const n = 61
	r := c.post("wf", "fan", `{"arguments":{"n":61}}`, "keep=true")
	r.pairs(t)
	g, err := trace.Load(context.Background(), c.store, "wf", r.header.Get("X-MR-REQUEST-ID"), true)
	if err != nil {
		t.Fatal(err)
	}
	if g.Counts != (trace.Counts{Invocations: 2 + 2*n, Done: 2 + 2*n}) || len(g.Root.Children) != n {
		t.Fatalf("counts %+v, %d children; want %d invocations, all done, and %d children", g.Counts, len(g.Root.Children), 2+2*n, n)
	}
	for i, ch := range g.Root.Children {
		want := fmt.Sprintf(`["n",%d]`, i)
		if ch.Data == nil || len(ch.Data.Arguments) != 1 || string(ch.Data.Arguments[0]) != want || ch.Reduce == nil ||
			ch.Reduce.State != "done" || !ch.Datasets.PostReduce || ch.Handler != "map_yield" {
			t.Fatalf("child %d: %+v, data %+v; want arguments %s, a done reduction and a post_reduce dataset", i, ch, ch.Data, want)
		}
	}
}
