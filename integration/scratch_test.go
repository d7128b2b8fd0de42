package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/jobx/jobx/internal/testenv"
	"github.com/jobx/jobx/kvmodel"
	"github.com/jobx/jobx/runner"
	"github.com/jobx/jobx/sandbox"
	"github.com/jobx/jobx/sandbox/none"
)

// recordingSandbox records the limits of every run it is given, by
// workflow and handler.
type recordingSandbox struct {
	sandbox.Sandbox
	mu     sync.Mutex
	limits map[string]sandbox.Limits
}

func (r *recordingSandbox) Run(ctx context.Context, spec *sandbox.RunSpec) (*sandbox.Outcome, error) {
	r.mu.Lock()
	r.limits[spec.Workflow+"/"+spec.Handler] = spec.Limits
	r.mu.Unlock()
	return r.Sandbox.Run(ctx, spec)
}

func (r *recordingSandbox) scratch(wf, handler string) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.limits[wf+"/"+handler].Scratch
}

const scratchSizePy = `"""
Report the size of the scratch file system.

**
handler_type: mapper
%s"""
import os
st = os.statvfs(os.environ['JOBX_SCRATCH'])
yield MrConfigureToReturn()
yield ('scratch', st.f_blocks * st.f_frsize)
`

// A run's scratch quota reaches its RunSpec from the handler's header, else
// its workflow's defaults, else the runner's Scratch; on the none sandbox
// (as root) the handler then sees a scratch file system of that size.
func TestScratchQuotaComesFromTheHeaderThenTheWorkflowThenTheRunner(t *testing.T) {
	c := startCluster(t)
	rec := &recordingSandbox{limits: map[string]sandbox.Limits{}}
	c.addRunner(func(o *runner.Options) {
		o.Scratch = 24 << 20
		sb, err := none.New(none.Options{Dir: filepath.Join(o.Dir, "sandbox"), Zygotes: 1, Log: testenv.Logger(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sb.Close() })
		rec.Sandbox, o.Sandbox = sb, rec
	})
	c.workflow("plain")
	if err := c.store.Create(context.Background(), &kvmodel.Workflow{Name: "quota", Description: "a scratch default",
		Defaults: &kvmodel.HandlerOptions{Scratch: 16 << 20}}); err != nil {
		t.Fatal(err)
	}
	for _, wf := range []string{"plain", "quota"} {
		c.handler(wf, "map_size", "map/size.py", fmt.Sprintf(scratchSizePy, ""))
		c.handler(wf, "map_size_own", "map/size_own.py", fmt.Sprintf(scratchSizePy, "scratch: 8Mi\n"))
		c.handler(wf, "reduce_noop", "reduce/noop.py", noopPy)
		c.step(wf, "size", "map_size", "", "reduce_noop")
		c.step(wf, "size_own", "map_size_own", "", "reduce_noop")
		c.job(wf, "size", "size")
		c.job(wf, "size_own", "size_own")
	}
	for _, tc := range []struct {
		name, wf, job, handler string
		want                   int64
	}{
		{"the runner's default", "plain", "size", "map_size", 24 << 20},
		{"the workflow's default over the runner's", "quota", "size", "map_size", 16 << 20},
		{"the handler's header over the runner's", "plain", "size_own", "map_size_own", 8 << 20},
		{"the handler's header over the workflow's", "quota", "size_own", "map_size_own", 8 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := c.post(tc.wf, tc.job, `{"arguments":{}}`, "").pairs(t)
			if n := rec.scratch(tc.wf, tc.handler); n != tc.want {
				t.Fatalf("RunSpec.Limits.Scratch = %d, want %d", n, tc.want)
			}
			// As root the none sandbox mounts a tmpfs of the quota.
			if os.Geteuid() == 0 {
				assertPairs(t, got, map[string]string{`"scratch"`: fmt.Sprintf("[%d]", tc.want)})
			}
		})
	}
}
