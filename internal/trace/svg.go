package trace

import (
	"fmt"
	"html"
	"io"
	"strings"
)

// Sizes of the built-in SVG layout, in pixels.
const (
	boxW, boxH = 210, 56
	gapX, gapY = 26, 64
	margin     = 20
)

// box is one node of the built-in layout.
type box struct {
	id, class, fill string
	lines           []string
	x, y            int // centre of the top edge
	ellipse         bool
}

type arrow struct {
	from, to *box
	label    string
	back     bool // drawn dashed, curving back up (reduce -> map "stored to")
}

// LayoutSVG writes the graph as SVG without Graphviz: a layered tree, the
// request, workflow and job above the root map invocation, each map
// invocation above its children and its reduce invocation (drawn after
// the children, as an ellipse). Nodes and edges carry the same labels and
// colours as DOT; each node is a <g class="node state-<state>"
// data-invocation="<id>"> so that pages and tests can find it.
func (g *Graph) LayoutSVG(w io.Writer) {
	var boxes []*box
	var arrows []arrow
	add := func(b *box) *box { boxes = append(boxes, b); return b }
	r := g.Request
	q := add(&box{id: "request", class: "request state-" + g.RequestState(), fill: stateColor[g.RequestState()], lines: []string{"Request (" + short(r.ID) + ")"}})
	wf := add(&box{id: "workflow", class: "workflow", fill: "#dde8f8", lines: []string{"Workflow (" + r.WorkflowName + ")"}})
	job := add(&box{id: "job", class: "job", fill: "#dde8f8", lines: []string{"Job (" + r.JobName + ")"}})
	arrows = append(arrows, arrow{from: q, to: wf, label: "resolve workflow"}, arrow{from: wf, to: job, label: "resolve job from request in workflow"})
	for i, b := range []*box{q, wf, job} {
		b.y = margin + i*(boxH/2+gapY)
	}
	top := job.y + boxH/2 + gapY

	// place lays out n's subtree with its left edge at left and returns
	// the subtree's width.
	var place func(n *Node, left, depth int) (*box, int)
	place = func(n *Node, left, depth int) (*box, int) {
		b := add(&box{id: n.ID, class: "invocation map state-" + n.State, fill: stateColor[n.State],
			lines: []string{"S " + fmt.Sprintf("%q", n.Step), "H " + fmt.Sprintf("%q", n.Handler), "MI " + short(n.ID)}})
		b.y = top + depth*(boxH+gapY)
		width := 0
		var below []*box
		for _, c := range n.Children {
			cb, cw := place(c, left+width, depth+1)
			arrows = append(arrows, arrow{from: b, to: cb, label: "mapped to"})
			below = append(below, cb)
			width += cw + gapX
		}
		if red := n.Reduce; red != nil {
			rb := add(&box{id: red.ID, class: "invocation reduce state-" + red.State, fill: stateColor[red.State], ellipse: true,
				lines: []string{"S " + fmt.Sprintf("%q", red.Step), "H " + fmt.Sprintf("%q", red.Handler), "RI " + short(red.ID)}})
			rb.x, rb.y = left+width+boxW/2, top+(depth+1)*(boxH+gapY)
			how := "data reduced by"
			if n.branchOut {
				how = "step reduced by"
			}
			arrows = append(arrows, arrow{from: b, to: rb, label: how}, arrow{from: rb, to: b, label: "stored to", back: true})
			below = append(below, rb)
			width += boxW + gapX
		}
		if len(below) == 0 {
			b.x = left + boxW/2
			return b, boxW
		}
		width -= gapX
		b.x = (below[0].x + below[len(below)-1].x) / 2
		return b, width
	}
	root, width := place(g.Root, margin, 0)
	arrows = append(arrows, arrow{from: job, to: root})
	for _, b := range []*box{q, wf, job} {
		b.x = root.x
	}
	maxY := 0
	for _, b := range boxes {
		maxY = max(maxY, b.y+b.height())
	}
	W, H := max(width, boxW)+2*margin, maxY+margin

	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n")
	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="Helvetica, Arial, sans-serif">`+"\n", W, H, W, H)
	fmt.Fprintf(w, `<title>%s</title>`+"\n", esc("request "+r.ID))
	fmt.Fprint(w, `<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>`+"\n")
	fmt.Fprintf(w, `<rect width="100%%" height="100%%" fill="#ffffff"/>`+"\n")
	for _, a := range arrows {
		x1, y1 := a.from.x, a.from.y+a.from.height()
		x2, y2 := a.to.x, a.to.y
		if a.back {
			// From the reduce node's top back to the map node's bottom,
			// bowing right so it does not cover the forward edge.
			x1, y1 = a.from.x+boxW/3, a.from.y
			x2, y2 = a.to.x+boxW/3, a.to.y+a.to.height()
			cx := max(x1, x2) + 50
			fmt.Fprintf(w, `<path class="edge" d="M%d,%d Q%d,%d %d,%d" fill="none" stroke="#555" stroke-dasharray="5,4" marker-end="url(#arrow)"/>`+"\n", x1, y1, cx, (y1+y2)/2, x2, y2)
			fmt.Fprintf(w, `<text x="%d" y="%d" font-size="9" fill="#333">%s</text>`+"\n", cx-20, (y1+y2)/2+4, esc(a.label))
			continue
		}
		fmt.Fprintf(w, `<line class="edge" x1="%d" y1="%d" x2="%d" y2="%d" stroke="#555" marker-end="url(#arrow)"/>`+"\n", x1, y1, x2, y2)
		if a.label != "" {
			fmt.Fprintf(w, `<text x="%d" y="%d" font-size="9" fill="#333">%s</text>`+"\n", (x1+x2)/2+4, (y1+y2)/2, esc(a.label))
		}
	}
	for _, b := range boxes {
		h := b.height()
		fmt.Fprintf(w, `<g class="node %s" data-invocation="%s">`, b.class, esc(b.id))
		if b.ellipse {
			fmt.Fprintf(w, `<ellipse cx="%d" cy="%d" rx="%d" ry="%d" fill="%s" stroke="#444"/>`, b.x, b.y+h/2, boxW/2, h/2, b.fill)
		} else {
			fmt.Fprintf(w, `<rect x="%d" y="%d" width="%d" height="%d" rx="6" fill="%s" stroke="#444"/>`, b.x-boxW/2, b.y, boxW, h, b.fill)
		}
		for i, line := range b.lines {
			fmt.Fprintf(w, `<text x="%d" y="%d" font-size="10" text-anchor="middle">%s</text>`, b.x, b.y+h/2+(2*i-len(b.lines)+1)*7+4, esc(line))
		}
		fmt.Fprintln(w, `</g>`)
	}
	fmt.Fprintln(w, `</svg>`)
}

func (b *box) height() int {
	if len(b.lines) == 1 {
		return boxH / 2
	}
	return boxH
}

func esc(s string) string { return html.EscapeString(strings.ToValidUTF8(s, "?")) }
