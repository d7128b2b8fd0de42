package integration

import (
	"strings"
	"testing"
)

func TestRequestGraphOverHTTP(t *testing.T) {
	c := basic(t)
	r := c.post("wf", "branch", `{"arguments":{"arg1":9}}`, "keep=true")
	r.pairs(t)
	id := r.header.Get("X-MR-REQUEST-ID")
	dot := c.do("GET", "/request/wf/"+id+"/graph?format=dot", "", "")
	if dot.status != 200 || !strings.Contains(dot.raw, "digraph request") || strings.Count(dot.raw, `label="mapped to"`) != 2 ||
		!strings.Contains(dot.raw, `fillcolor="#b8e6b8"`) {
		t.Fatalf("dot: %d %s", dot.status, dot.raw)
	}
	svg := c.do("GET", "/request/wf/"+id+"/graph", "", "")
	if svg.status != 200 || !strings.HasPrefix(strings.TrimSpace(svg.raw), "<?xml") || !strings.Contains(svg.raw, "<svg") {
		t.Fatalf("svg: %d %.200s", svg.status, svg.raw)
	}
	png := c.do("GET", "/request/wf/"+id+"/graph?format=png", "", "")
	if png.status != 200 || !strings.HasPrefix(png.raw, "\x89PNG") {
		t.Fatalf("png: %d", png.status)
	}
	if bad := c.do("GET", "/request/wf/"+id+"/graph?format=gif", "", ""); bad.status != 400 {
		t.Fatalf("format gif: %d", bad.status)
	}
	if missing := c.do("GET", "/request/wf/"+strings.Repeat("0", 40)+"/graph", "", ""); missing.status != 404 {
		t.Fatalf("missing request: %d", missing.status)
	}
}
