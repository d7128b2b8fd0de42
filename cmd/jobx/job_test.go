package main

import (
	"strings"
	"testing"

	"github.com/jobx/jobx/kvmodel"
)

// seedDefs creates workflow dev with a mapper, a combiner, a reducer and a
// step, through the store.
func seedDefs(t *testing.T, c *cli) {
	t.Helper()
	ctx := t.Context()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.store.Create(ctx, &kvmodel.Workflow{Name: "dev", Description: "dev"}))
	for name, typ := range map[string]string{"map_a": "mapper", "map_b": "mapper", "comb_a": "combiner", "red_a": "reducer", "red_b": "reducer"} {
		must(c.store.Create(ctx, &kvmodel.Handler{WorkflowName: "dev", Name: name, HandlerType: typ, SourceType: "python", Description: name}))
	}
	must(c.store.Create(ctx, &kvmodel.Step{WorkflowName: "dev", Name: "s1", Description: "first", MapHandlerName: "map_a", ReduceHandlerName: "red_a"}))
}

func TestJobCommands(t *testing.T) {
	c := newCLI(t)
	seedDefs(t, c)
	mustContain(t, "missing step", c.fails("job", "create", "dev", "j1", "d", "nope"), `initial step "nope" of workflow dev does not exist`)
	mustContain(t, "create", c.ok("job", "create", "dev", "j1", "first job", "s1"), "job_name", "j1", "initial_step_name", "s1")
	c.ok("job", "create", "dev", "a0", "earlier", "s1")

	out := c.ok("job", "list", "dev")
	if i, j := strings.Index(out, "a0"), strings.Index(out, "j1"); i < 0 || j < 0 || i > j {
		t.Errorf("list is not sorted by name:\n%s", out)
	}
	mustContain(t, "get", c.ok("job", "get", "dev", "j1"), "first job")
	mustContain(t, "step delete refuses", c.fails("step", "delete", "dev", "s1"), "initial step of job(s) a0, j1")
	c.ok("job", "delete", "dev", "j1")
	mustContain(t, "get deleted", c.fails("job", "get", "dev", "j1"), `job "j1" of workflow dev does not exist`)
}
