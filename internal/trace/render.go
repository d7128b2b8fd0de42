package trace

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
)

func short(id string) string {
	if len(id) > 10 {
		return id[:10]
	}
	return id
}

func flags(n *Node) string {
	if n.Kind != "map" {
		return "   "
	}
	f := []byte("---")
	if n.Datasets.Arguments {
		f[0] = 'A'
	}
	if n.Datasets.PostCombine {
		f[1] = 'C'
	}
	if n.Datasets.PostReduce {
		f[2] = 'R'
	}
	return string(f)
}

func (g *Graph) header(w io.Writer) {
	r := g.Request
	fmt.Fprintf(w, "request %s  workflow %s  job %s  %s  (%d invocations: %d done, %d failed, %d pending)\n",
		r.ID, r.WorkflowName, r.JobName, r.State, g.Counts.Invocations, g.Counts.Done, g.Counts.Failed, g.Counts.Pending)
}

// Tree writes the indented invocation tree: one line per invocation with
// M (map) or R (reduce), its id, which datasets exist (A arguments,
// C post_combine, R post_reduce), its step, handler and state. A reduce
// invocation follows its map invocation's children, at its map's depth.
func (g *Graph) Tree(w io.Writer) {
	g.header(w)
	g.Walk(func(n *Node, depth int) {
		kind := "M"
		if n.Kind == "reduce" {
			kind = "R"
		}
		fmt.Fprintf(w, "%s%s %s [%s] %s  %s  %s\n", strings.Repeat("  ", depth), kind, short(n.ID), flags(n), n.Step, n.Handler, n.State)
	})
}

// Dump writes the tree with each map invocation's data (load the graph
// with data), each invocation's log tail (kept requests) and every failed
// invocation's error and stderr tail.
func (g *Graph) Dump(w io.Writer) {
	g.header(w)
	if e := g.Request.Error; e != nil {
		fmt.Fprintf(w, "error: %s: %s\n", e.Kind, e.Message)
	}
	g.Walk(func(n *Node, depth int) {
		ind := strings.Repeat("  ", depth)
		kind := "MAP   "
		if n.Kind == "reduce" {
			kind = "REDUCE"
		}
		fmt.Fprintf(w, "%s%s %s  step %s  handler %s  %s\n", ind, kind, n.ID, n.Step, n.Handler, n.State)
		if d := n.Data; d != nil {
			for _, part := range []struct {
				name  string
				items []json.RawMessage
			}{{"arguments", d.Arguments}, {"post_combine", d.PostCombine}, {"post_reduce", d.PostReduce}} {
				if part.items != nil {
					fmt.Fprintf(w, "%s  %s:\n", ind, part.name)
					for _, it := range part.items {
						fmt.Fprintf(w, "%s    %s\n", ind, it)
					}
				}
			}
		}
		if n.Log != "" {
			fmt.Fprintf(w, "%s  log:\n", ind)
			for _, line := range strings.Split(n.Log, "\n") {
				fmt.Fprintf(w, "%s    | %s\n", ind, line)
			}
		}
		if f := n.Failure; f != nil {
			fmt.Fprintf(w, "%s  error: %s: %s\n", ind, f.Kind, f.Message)
			if f.StderrTail != "" {
				fmt.Fprintf(w, "%s  stderr (tail):\n", ind)
				for _, line := range strings.Split(strings.TrimRight(f.StderrTail, "\n"), "\n") {
					fmt.Fprintf(w, "%s    | %s\n", ind, line)
				}
			}
		}
	})
}

// Colors of invocation states in graphs.
var stateColor = map[string]string{
	"pending": "#e8e8e8", "running": "#fff2a8", "done": "#b8e6b8", "failed": "#f4a6a6",
}

// quote makes s a DOT string: backslashes and quotes escaped, newlines as
// DOT's \n line breaks.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s) + `"`
}

// DOT writes the request's physical graph in Graphviz DOT, as JobX drew it:
// request, workflow and job nodes, map nodes (S step, H handler, MI id) and
// reduce nodes (RI id), with edges "mapped to", "data reduced by" (a leaf),
// "step reduced by" (a branch) and "stored to"; nodes coloured by state.
func (g *Graph) DOT(w io.Writer) {
	r := g.Request
	fmt.Fprintf(w, "digraph request {\n  rankdir=TB;\n  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\", fontsize=10];\n  edge [fontname=\"Helvetica\", fontsize=9];\n")
	fmt.Fprintf(w, "  Q [label=%s, fillcolor=%q];\n", quote("Request ("+short(r.ID)+")"), stateColor[g.RequestState()])
	fmt.Fprintf(w, "  W [label=%s, fillcolor=\"#dde8f8\"];\n", quote("Workflow ("+r.WorkflowName+")"))
	fmt.Fprintf(w, "  J [label=%s, fillcolor=\"#dde8f8\"];\n", quote("Job ("+r.JobName+")"))
	fmt.Fprintf(w, "  Q -> W [label=\"resolve workflow\"];\n  W -> J [label=\"resolve job from request in workflow\"];\n")
	fmt.Fprintf(w, "  J -> %s;\n", quote("m_"+g.Root.ID))
	var node func(n *Node)
	node = func(n *Node) {
		id := "m_" + n.ID
		fmt.Fprintf(w, "  %s [label=%s, fillcolor=%q];\n", quote(id), quote(fmt.Sprintf("S %q\nH %q\nMI %s", n.Step, n.Handler, short(n.ID))), stateColor[n.State])
		for _, c := range n.Children {
			node(c)
			fmt.Fprintf(w, "  %s -> %s [label=\"mapped to\"];\n", quote(id), quote("m_"+c.ID))
		}
		if red := n.Reduce; red != nil {
			rid := "r_" + red.ID
			fmt.Fprintf(w, "  %s [label=%s, fillcolor=%q, shape=ellipse];\n", quote(rid), quote(fmt.Sprintf("S %q\nH %q\nRI %s", red.Step, red.Handler, short(red.ID))), stateColor[red.State])
			how := "data reduced by"
			if n.branchOut {
				how = "step reduced by"
			}
			fmt.Fprintf(w, "  %s -> %s [label=%q];\n", quote(id), quote(rid), how)
			fmt.Fprintf(w, "  %s -> %s [label=\"stored to\", style=dashed];\n", quote(rid), quote(id))
		}
	}
	node(g.Root)
	fmt.Fprintln(w, "}")
}

// ErrNoGraphviz means a PNG was asked for and Graphviz's dot is not
// installed.
var ErrNoGraphviz = errors.New("rendering png needs Graphviz's dot (apt-get install graphviz); dot and svg work without it")

// Render turns the graph into format ("svg" or "png") with Graphviz's dot.
// Without dot, SVG comes from LayoutSVG and PNG fails with ErrNoGraphviz.
func (g *Graph) Render(ctx context.Context, format string) ([]byte, error) {
	if format != "svg" && format != "png" {
		return nil, fmt.Errorf("format %q: want dot, svg or png", format)
	}
	dotPath, err := exec.LookPath("dot")
	if err != nil {
		if format == "png" {
			return nil, ErrNoGraphviz
		}
		var b bytes.Buffer
		g.LayoutSVG(&b)
		return b.Bytes(), nil
	}
	var src, out, stderr bytes.Buffer
	g.DOT(&src)
	cmd := exec.CommandContext(ctx, dotPath, "-T"+format)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = &src, &out, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("dot -T%s: %v: %s", format, err, strings.TrimSpace(stderr.String()))
	}
	return out.Bytes(), nil
}
