package trace

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/jobx/jobx/kvmodel"
)

// twoLevel is a graph shaped like JobX's job4 while it runs: the root map
// branched to two leaves, one leaf reduced, one still pending.
func twoLevel() *Graph {
	id := func(c byte) string { return strings.Repeat(string(c), 40) }
	leaf := func(c byte, state string, reduce *Node) *Node {
		return &Node{ID: id(c), Kind: "map", Step: "chunk", Handler: `map_<"yield">&`, State: state, Reduce: reduce}
	}
	root := &Node{ID: id('a'), Kind: "map", Step: "split", Handler: "map_split", State: "done", branchOut: true, Children: []*Node{
		leaf('b', "done", &Node{ID: id('c'), Kind: "reduce", Step: "chunk", Handler: "reduce_sum", State: "done"}),
		leaf('d', StateRunning, nil),
	}}
	g := &Graph{Request: &kvmodel.Request{ID: id('0'), WorkflowName: "dev", JobName: "job4", State: "pending"}, Root: root}
	g.Walk(func(n *Node, _ int) {
		g.Counts.Invocations++
		if n.State == "done" {
			g.Counts.Done++
		}
	})
	return g
}

func TestLayoutSVGIsWellFormedAndEscaped(t *testing.T) {
	var b bytes.Buffer
	twoLevel().LayoutSVG(&b)
	svg := b.String()
	dec := xml.NewDecoder(strings.NewReader(svg))
	for {
		if _, err := dec.Token(); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("not well-formed: %v\n%s", err, svg)
		}
	}
	for _, want := range []string{
		`H &#34;map_&lt;\&#34;yield\&#34;&gt;&amp;&#34;`, // the handler name, quoted as in JobX's labels, then escaped
		`class="node request state-running"`,             // pending request with finished invocations
		`class="node invocation map state-running"`, "#fff2a8",
		`class="node invocation reduce state-done"`, "RI cccccccccc",
		"data reduced by", "stored to", "mapped to",
	} {
		if !strings.Contains(svg, want) {
			t.Errorf("svg lacks %q:\n%s", want, svg)
		}
	}
	if n := strings.Count(svg, `<g class="node `); n != 3+4 {
		t.Errorf("%d nodes, want 7", n)
	}
}

func TestRequestStateIsInferred(t *testing.T) {
	for _, tc := range []struct {
		name, stored string
		finished     int
		want         string
	}{
		{"a request nothing has finished for is pending", "pending", 0, "pending"},
		{"a pending request with finished invocations is running", "pending", 2, "running"},
		{"a done request is done", "done", 3, "done"},
		{"a failed request is failed", "failed", 1, "failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &Graph{Request: &kvmodel.Request{State: tc.stored}, Counts: Counts{Done: tc.finished}}
			if got := g.RequestState(); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}
