package main

import (
	"encoding/json"
	"path/filepath"
	"testing"
)

func TestApplyLoadsAWorkflowDirectoryIdempotently(t *testing.T) {
	c := newCLI(t)
	dir := filepath.Join("testdata", "dev")
	mustContain(t, "first apply", c.ok("apply", dir), "create  workflow demo", "create  map_double  (map/double.py)",
		"create  step s1", "create  job double")
	mustContain(t, "second apply", c.ok("apply", dir), "skip    workflow demo", "skip    map_double", "skip    step s1", "skip    job double")
	var res []map[string]any
	if err := json.Unmarshal([]byte(c.ok("apply", dir, "-o", "json")), &res); err != nil || len(res) != 1 {
		t.Fatalf("apply -o json: %v %v", res, err)
	}
	mustContain(t, "job list", c.ok("job", "list", "demo"), "double", "s1", "fail", "s_fail")
}
