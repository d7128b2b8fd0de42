package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"

	"github.com/jobx/jobx/gateway"
)

func TestProgressBar(t *testing.T) {
	for _, tc := range []struct {
		name        string
		done, known int
		want        string
	}{
		{"nothing known yet draws an empty bar", 0, 0, "[..........]"},
		{"half done fills half", 3, 6, "[#####.....]"},
		{"all done fills the bar", 6, 6, "[##########]"},
		{"more done than known never overflows", 7, 6, "[##########]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := progressBar(tc.done, tc.known, 10); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestProgressOffATerminalIsOneLinePerChange(t *testing.T) {
	var b bytes.Buffer
	p := newProgressReporter(&b, "abc")
	for _, pg := range []gateway.Progress{{Done: 0, Known: 1}, {Done: 0, Known: 1}, {Done: 1, Known: 3}, {Done: 3, Known: 3}} {
		p.report(pg)
	}
	p.finish()
	want := "request abc: 0/1 invocations done\nrequest abc: 1/3 invocations done\nrequest abc: 3/3 invocations done\n"
	if b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
}

// TestSubmitWaitReportsProgress submits with --wait: the request is
// polled and its progress reported on stderr while the result goes to
// stdout.
func TestSubmitWaitReportsProgress(t *testing.T) {
	c := newCLI(t)
	c.env["JOBX_GATEWAY"] = startCluster(t, c)
	r := c.run("", "submit", "demo", "double", "-a", "q=21", "--wait")
	if r.code != 0 || r.stdout != "q\t42\n" {
		t.Fatalf("exit %d, stdout %q, stderr %s", r.code, r.stdout, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	id := regexp.MustCompile(`^request ([0-9a-f]{40}) submitted; waiting for it$`).FindStringSubmatch(lines[0])
	if id == nil || len(lines) < 2 || lines[len(lines)-1] != "request "+id[1]+": 2/2 invocations done" {
		t.Fatalf("stderr:\n%s", r.stderr)
	}
	if strings.Contains(r.stderr, "\r") {
		t.Errorf("a bar was drawn off a terminal:\n%q", r.stderr)
	}
}
