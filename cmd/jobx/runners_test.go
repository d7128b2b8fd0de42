package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jobx/jobx/kvmodel"
)

// announce announces a runner until the test ends.
func (c *cli) announce(info kvmodel.RunnerInfo) {
	c.t.Helper()
	if info.Started.IsZero() {
		info.Started = time.Now()
	}
	a, err := c.store.Announce(c.t.Context(), info, 5*time.Second)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(a.Close)
}

// runnerLine returns the line of jobx runners' table that lists id.
func runnerLine(t *testing.T, out, id string) string {
	t.Helper()
	for line := range strings.Lines(out) {
		if strings.HasPrefix(line, id+" ") {
			return line
		}
	}
	t.Fatalf("no line for runner %s in:\n%s", id, out)
	return ""
}

func TestRunnersListsAnnouncedRunners(t *testing.T) {
	c := newCLI(t)
	c.announce(kvmodel.RunnerInfo{ID: "r1", Host: "h", Capabilities: []string{"general", "gpu"}, Sandbox: "namespace", Version: "v", Concurrency: 4})
	c.announce(kvmodel.RunnerInfo{ID: "r2", Host: "h", Capabilities: []string{"general"}, Workflows: []string{"dev"}, Sandbox: "containerd", Version: "v", Concurrency: 2})
	r := c.run("", "runners")
	if r.code != 0 {
		t.Fatalf("jobx runners: exit %d: %s", r.code, r.stderr)
	}
	mustContain(t, "r1's line", runnerLine(t, r.stdout, "r1"), "general,gpu", " * ", "namespace", "0/4")
	mustContain(t, "r2's line", runnerLine(t, r.stdout, "r2"), "dev", "containerd", "0/2")
	if strings.Contains(r.stdout, "UNISOLATED") || r.stderr != "" {
		t.Errorf("isolated runners flagged:\nstdout: %s\nstderr: %s", r.stdout, r.stderr)
	}
}

func TestRunnersFlagsUnisolatedRunners(t *testing.T) {
	c := newCLI(t)
	c.announce(kvmodel.RunnerInfo{ID: "r1", Host: "h", Capabilities: []string{"general"}, Sandbox: "namespace", Concurrency: 4})
	c.announce(kvmodel.RunnerInfo{ID: "r2", Host: "h", Capabilities: []string{"general"}, Sandbox: kvmodel.SandboxNone, Concurrency: 4})
	c.announce(kvmodel.RunnerInfo{ID: "r3", Host: "h", Capabilities: []string{"general"}, Sandbox: kvmodel.SandboxNone, Concurrency: 4})

	r := c.run("", "runners")
	if r.code != 0 {
		t.Fatalf("jobx runners: exit %d: %s", r.code, r.stderr)
	}
	if line := runnerLine(t, r.stdout, "r1"); strings.Contains(line, "UNISOLATED") {
		t.Errorf("r1 (namespace) flagged: %s", line)
	}
	mustContain(t, "r2's line", runnerLine(t, r.stdout, "r2"), "none (UNISOLATED)")
	mustContain(t, "r3's line", runnerLine(t, r.stdout, "r3"), "none (UNISOLATED)")
	mustContain(t, "stderr", r.stderr, "warning: ", "UNISOLATED", "on r2, r3;", "--sandbox auto")
	if strings.Count(r.stderr, "\n") != 1 || strings.Contains(r.stderr, "r1") {
		t.Errorf("want one warning line naming r2 and r3 only:\n%s", r.stderr)
	}

	// -o json: stdout stays JSON, with an isolated field; the warning
	// still goes to stderr.
	r = c.run("", "runners", "-o", "json")
	if r.code != 0 {
		t.Fatalf("jobx runners -o json: exit %d: %s", r.code, r.stderr)
	}
	var listed []struct {
		ID       string `json:"id"`
		Sandbox  string `json:"sandbox"`
		Isolated *bool  `json:"isolated"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &listed); err != nil {
		t.Fatalf("-o json is not JSON: %v\n%s", err, r.stdout)
	}
	got := map[string]string{}
	for _, l := range listed {
		if l.Isolated == nil {
			t.Fatalf("runner %s has no isolated field:\n%s", l.ID, r.stdout)
		}
		got[l.ID] = l.Sandbox + " " + map[bool]string{true: "isolated", false: "unisolated"}[*l.Isolated]
	}
	want := map[string]string{"r1": "namespace isolated", "r2": "none unisolated", "r3": "none unisolated"}
	if len(got) != len(want) {
		t.Fatalf("listed %v, want %v", got, want)
	}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("runner %s: %q, want %q", id, got[id], w)
		}
	}
	mustContain(t, "stderr with -o json", r.stderr, "on r2, r3;")
}
