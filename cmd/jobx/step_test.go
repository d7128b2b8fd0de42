package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jobx/jobx/kvmodel"
)

func TestStepCommands(t *testing.T) {
	c := newCLI(t)
	seedDefs(t, c)
	mustContain(t, "wrong type", c.fails("step", "create", "dev", "s2", "d", "red_a", "", "red_a"), `map handler "red_a" is a reducer, not a mapper`)
	mustContain(t, "missing handler", c.fails("step", "create", "dev", "s2", "d", "map_a", "nope", "red_a"), `combine handler "nope" of workflow dev does not exist`)
	mustContain(t, "create", c.ok("step", "create", "dev", "s2", "second", "map_b", "comb_a", "red_b"), "step_name", "s2", "comb_a")

	out := c.ok("step", "list", "dev")
	mustContain(t, "list", out, "By step:", "s1: map=map_a combine=- reduce=red_a", "By mapper:", "map_a: s1",
		"By combiner:", "comb_a: s2", "By reducer:", "red_b: s2")
	var groups map[string]json.RawMessage
	if err := json.Unmarshal([]byte(c.ok("step", "list", "dev", "-o", "json")), &groups); err != nil || groups["by_reducer"] == nil {
		t.Errorf("list -o json: %v %v", groups, err)
	}

	c.ok("step", "set-handler", "dev", "s2", "-r", "red_a", "-c", "")
	s := &kvmodel.Step{WorkflowName: "dev", Name: "s2"}
	if err := c.store.Get(t.Context(), s); err != nil || s.ReduceHandlerName != "red_a" || s.CombineHandlerName != "" || s.MapHandlerName != "map_b" {
		t.Errorf("after set-handler: %+v %v", s, err)
	}
	mustContain(t, "set-handler bad type", c.fails("step", "set-handler", "dev", "s2", "-m", "comb_a"), "is a combiner, not a mapper")

	r := c.run("", "step", "update-handlers", "dev", "reducer", "red_a", "red_b", "--dry-run")
	mustContain(t, "update-handlers dry run", r.stdout, "step s1: reducer red_a -> red_b", "step s2: reducer red_a -> red_b")
	mustContain(t, "update-handlers dry run", r.stderr, "2 step(s) updated (dry run")
	c.store.Get(t.Context(), s)
	if s.ReduceHandlerName != "red_a" {
		t.Errorf("dry run changed the step: %+v", s)
	}
	c.ok("step", "update-handlers", "dev", "reduce", "red_a", "red_b")
	c.store.Get(t.Context(), s)
	if s.ReduceHandlerName != "red_b" {
		t.Errorf("update-handlers did not repoint: %+v", s)
	}
	mustContain(t, "get", c.ok("step", "get", "dev", "s2"), "reduce_handler_name", "red_b")
	mustContain(t, "delete", c.ok("step", "delete", "dev", "s2"), "deleted step s2")
}

func TestStepCreateWarnsAboutCapabilitiesNobodyOffers(t *testing.T) {
	c := newCLI(t)
	seedDefs(t, c)
	r := c.run("", "step", "create", "dev", "s9", "d", "map_a", "", "red_a")
	if r.code != 0 || !strings.Contains(r.stderr, `warning: no live runner offers capability "general" for workflow dev`) {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	a, err := c.store.Announce(t.Context(), kvmodel.RunnerInfo{ID: "r1", Capabilities: []string{"general"}}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if r := c.run("", "step", "create", "dev", "s10", "d", "map_a", "", "red_a"); r.code != 0 || strings.Contains(r.stderr, "warning") {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
}
