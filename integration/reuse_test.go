package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// whoPy reports the process it runs in, how many runs that process has
// served (a module-level counter a reused process keeps), and what this
// run was given: its request id and its scratch directory.
const whoPy = `"""
Report the process and the run.

**
handler_type: mapper
reuse: %s
"""
import os, builtins
builtins.jobx_runs = getattr(builtins, 'jobx_runs', 0) + 1
yield MrConfigureToReturn()
yield ('pid', os.getpid())
yield ('runs', builtins.jobx_runs)
yield ('request', os.environ['JOBX_REQUEST_ID'])
yield ('scratch', os.environ['JOBX_SCRATCH'])
yield ('cwd_empty', os.listdir('.') == [])
open('left-behind', 'w').write('x')
`

// firstPy passes each key's first value through.
const firstPy = `"""
Pass each key's first value through.

**
handler_type: reducer
"""
for k, vs in results:
    yield (k, vs[0])
`

// The reuse header decides which runs may share a warm process: none
// (a fresh process per run), request (runs of one request) or handler
// (runs of one handler version, across requests). Every run still gets
// its own environment and an empty scratch directory.
func TestReuseHeaderDecidesWhichRunsShareAProcess(t *testing.T) {
	c := startCluster(t)
	c.addRunner()
	c.workflow("re")
	c.handler("re", "reduce_first", "reduce/first.py", firstPy)
	for _, mode := range []string{"none", "request", "handler"} {
		c.handler("re", "map_who_"+mode, "map/who_"+mode+".py", fmt.Sprintf(whoPy, mode))
		c.step("re", "who_"+mode, "map_who_"+mode, "", "reduce_first")
		c.job("re", mode, "who_"+mode)
	}
	run := func(t *testing.T, mode string) map[string]string {
		t.Helper()
		r := c.post("re", mode, `{"arguments":{"x":1}}`, "")
		got := map[string]string{}
		for k, v := range r.pairs(t) {
			got[strings.Trim(k, `"`)] = strings.Trim(v, `"`)
		}
		if got["request"] != r.header.Get("X-MR-REQUEST-ID") {
			t.Fatalf("%s: the run saw request %q, the response says %q", mode, got["request"], r.header.Get("X-MR-REQUEST-ID"))
		}
		if got["cwd_empty"] != "true" {
			t.Fatalf("%s: the run's scratch directory was not empty: %v", mode, got)
		}
		return got
	}
	for _, mode := range []string{"none", "request", "handler"} {
		t.Run(mode, func(t *testing.T) {
			a, b := run(t, mode), run(t, mode)
			if a["scratch"] == b["scratch"] {
				t.Fatalf("a scratch directory its run left a file in was given to the next run: %s", a["scratch"])
			}
			samePid := a["pid"] == b["pid"]
			switch mode {
			case "handler":
				if !samePid || b["runs"] != "2" {
					t.Fatalf("reuse: handler: the second request did not reuse the first's process: %v then %v", a, b)
				}
			default:
				// One run per request: neither mode shares a process
				// across requests.
				if samePid || b["runs"] != "1" {
					t.Fatalf("reuse: %s: two requests shared a process: %v then %v", mode, a, b)
				}
			}
		})
	}
	// A new version of a handler never runs in its old version's process.
	before := run(t, "handler")
	c.handler("re", "map_who_handler", "map/who_handler.py", fmt.Sprintf(whoPy, "handler")+"\n# v2\n")
	waitFor(t, "the runner to run the new version", 5*time.Second, func() bool {
		after := run(t, "handler")
		return after["pid"] != before["pid"] && after["runs"] == "1"
	})
}
