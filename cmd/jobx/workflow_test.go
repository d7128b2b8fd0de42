package main

import (
	"encoding/json"
	"testing"
)

func TestWorkflowCommands(t *testing.T) {
	c := newCLI(t)
	out := c.ok("workflow", "create", "dev", "JobX's development jobs")
	mustContain(t, "create output", out, "workflow_name", "dev", "JobX's development jobs")
	mustContain(t, "duplicate create", c.fails("workflow", "create", "dev", "again"), "already exists")
	mustContain(t, "bad name", c.fails("workflow", "create", "a.b", "x"), "must not contain '.'")

	var got map[string]any
	if err := json.Unmarshal([]byte(c.ok("workflow", "get", "dev", "-o", "json")), &got); err != nil {
		t.Fatal(err)
	}
	if got["workflow_name"] != "dev" || got["description"] != "JobX's development jobs" {
		t.Errorf("get -o json = %v", got)
	}
	c.ok("workflow", "create", "other", "another")
	mustContain(t, "list", c.ok("workflow", "list"), "WORKFLOW", "dev", "other", "another")

	mustContain(t, "missing workflow", c.fails("workflow", "get", "nope"), `workflow "nope" does not exist`)
	mustContain(t, "delete", c.ok("workflow", "delete", "other"), "deleted workflow other")
	mustContain(t, "get deleted", c.fails("workflow", "get", "other"), "does not exist")
}
