package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jobx/jobx/kvmodel"
)

const sumSource = `"""
Sum.

**
handler_type: reducer
"""
for k, vs in results:
    yield (k, sum(vs))
`

func TestHandlerCreateGetListDelete(t *testing.T) {
	c := newCLI(t)
	c.ok("workflow", "create", "dev", "dev")
	r := c.run(sumSource, "handler", "create", "dev", "reduce_sum", "sum values", "python", "reducer", "-a", "results=list")
	if r.code != 0 {
		t.Fatalf("create: %d %s", r.code, r.stderr)
	}
	mustContain(t, "create", r.stdout, "handler_name", "reduce_sum", "reducer")
	h := &kvmodel.Handler{WorkflowName: "dev", Name: "reduce_sum"}
	if err := c.store.Get(t.Context(), h); err != nil || h.SourceCode != sumSource || h.Version == "" || h.RequiredCapability != "none" {
		t.Fatalf("stored handler %+v, %v", h, err)
	}
	wf := &kvmodel.Workflow{Name: "dev"}
	if c.store.Get(t.Context(), wf); wf.HandlersState == "" {
		t.Error("handler create did not update handlers_state")
	}

	r = c.run("yield (1,\n", "handler", "create", "dev", "map_bad", "bad", "python", "mapper")
	if r.code == 0 || !strings.Contains(r.stderr, "<stdin>:") {
		t.Errorf("a syntax error was accepted or not located: %d %s", r.code, r.stderr)
	}
	mustContain(t, "bad spec", c.run("x", "handler", "create", "dev", "m", "d", "python", "mapper", "-a", "results=list").stderr, `must name exactly "arguments"`)
	mustContain(t, "bad source type", c.run("x", "handler", "create", "dev", "m", "d", "cobol", "mapper").stderr, "source type \"cobol\"")

	mustContain(t, "get", c.ok("handler", "get", "dev", "reduce_sum"), "sum values", "for k, vs in results:")
	list := c.ok("handler", "list", "dev")
	mustContain(t, "list", list, "HANDLER", "reduce_sum", "reducer", "python")
	if strings.Contains(c.ok("handler", "list", "dev", "-o", "json"), "for k, vs") {
		t.Error("handler list -o json includes the source")
	}

	c.store.Create(t.Context(), &kvmodel.Handler{WorkflowName: "dev", Name: "map_a", HandlerType: "mapper"})
	c.store.Create(t.Context(), &kvmodel.Step{WorkflowName: "dev", Name: "s", Description: "d", MapHandlerName: "map_a", ReduceHandlerName: "reduce_sum"})
	mustContain(t, "delete used", c.fails("handler", "delete", "dev", "reduce_sum"), "used by step(s) s")
	c.ok("handler", "delete", "dev", "reduce_sum", "--force")
	mustContain(t, "get deleted", c.fails("handler", "get", "dev", "reduce_sum"), "does not exist")
}

func TestHandlerSyncPrintsOneLineADecision(t *testing.T) {
	c := newCLI(t)
	c.ok("workflow", "create", "demo", "demo")
	dir := filepath.Join("testdata", "dev", "handlers")

	r := c.run("", "handler", "sync", "demo", dir, "--dry-run")
	mustContain(t, "dry run", r.stdout, "create  map_double  (map/double.py)", "create  reduce_sum  (reduce/sum.py)")
	mustContain(t, "dry run summary", r.stderr, "3 created", "dry run")
	if hs, _ := kvmodel.List[kvmodel.Handler](t.Context(), c.store, "demo"); len(hs) != 0 {
		t.Fatalf("dry run wrote %d handlers", len(hs))
	}

	out := c.ok("handler", "sync", "demo", dir)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || lines[0] != "create  map_double  (map/double.py)" {
		t.Errorf("sync output:\n%s", out)
	}
	mustContain(t, "second sync", c.ok("handler", "sync", "demo", dir), "skip    map_double  (map/double.py)")
	mustContain(t, "forced sync", c.ok("handler", "sync", "demo", dir, "--force"), "update  map_double  (map/double.py)  forced")

	bad := t.TempDir()
	os.WriteFile(filepath.Join(bad, "broken.py"), []byte("\"\"\"\nx\n**\nhandler_type: mapper\nbogus: 1\n\"\"\"\nyield (\n"), 0o644)
	mustContain(t, "bad dir", c.fails("handler", "sync", "demo", bad), "broken.py:5", `"bogus"`, "nothing was written")
}
