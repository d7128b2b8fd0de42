package namespace_test

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jobx/jobx/processors"
	"github.com/jobx/jobx/sandbox"
	"github.com/jobx/jobx/sandbox/namespace"
)

const pyParent = `"""
Report the process that forked this one.

**
handler_type: mapper
"""
import os
yield MrConfigureToReturn()
yield ("zygote", os.getppid())
`

// A new domain's zygote is known from its start: the runs of a domain all
// fork from the same zygote, which the sweeps between them spare. (While
// bubblewrap sets a domain up, its PID 1 has short-lived children of its
// own; one taken for the zygote had the sweep kill the real one.)
func TestNewDomainsServeEveryRunFromTheirZygote(t *testing.T) {
	sb, handlers := newSandbox(t)
	py, _ := processors.ByName("python")
	for d := 0; d < 12; d++ {
		wf := fmt.Sprintf("wf%d", d) // a workflow of its own: a new domain
		prog, err := py.Install(filepath.Join(handlers, wf), processors.Handler{Workflow: wf, Name: "map_parent", Type: "mapper", SourceType: "python", Source: pyParent})
		if err != nil {
			t.Fatal(err)
		}
		var zygote string
		for run := 0; run < 4; run++ {
			var stdout bytes.Buffer
			out, err := sb.Run(context.Background(), &sandbox.RunSpec{Workflow: wf, Handler: "map_parent", HandlerType: "mapper", Processor: "python",
				Program: prog, Env: []string{"PATH=/usr/bin:/bin", "JOBX_HANDLER_TYPE=mapper"}, Stdin: strings.NewReader("[\"k\", 1]\n"),
				Stdout: &stdout, Limits: sandbox.Limits{Timeout: 30 * time.Second}})
			if err != nil || !out.Succeeded() {
				t.Fatalf("domain %d, run %d: %v %+v", d, run, err, out)
			}
			got := strings.Split(strings.TrimSpace(stdout.String()), "\n")[1]
			if run > 0 && got != zygote {
				t.Fatalf("domain %d, run %d forked from %s, the earlier ones from %s", d, run, got, zygote)
			}
			zygote = got
		}
	}
}

// A domain serves run after run: the zygote forks its next pre-forked
// child while the domain settles after each, and the settle must spare
// that child (killed, it would fail the next run with SIGKILL).
func TestADomainServesHundredsOfRunsInARow(t *testing.T) {
	sb, handlers := newSandbox(t, func(o *namespace.Options) { o.MaxSandboxes = 1 })
	py, _ := processors.ByName("python")
	prog, err := py.Install(filepath.Join(handlers, "wf"), processors.Handler{Workflow: "wf", Name: "map_parent", Type: "mapper", SourceType: "python", Source: pyParent})
	if err != nil {
		t.Fatal(err)
	}
	for run := 0; run < 400; run++ {
		o, err := sb.Run(context.Background(), &sandbox.RunSpec{Workflow: "wf", Handler: "map_parent", HandlerType: "mapper", Processor: "python",
			Program: prog, Env: []string{"PATH=/usr/bin:/bin", "JOBX_HANDLER_TYPE=mapper"}, Stdin: strings.NewReader("[\"k\", 1]\n"),
			Stdout: &bytes.Buffer{}, Limits: sandbox.Limits{Timeout: 30 * time.Second}})
		if err != nil || !o.Succeeded() {
			t.Fatalf("run %d: %v %+v", run, err, o)
		}
	}
}
