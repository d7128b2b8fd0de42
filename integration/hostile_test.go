package integration

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jobx/jobx/gateway"
	"github.com/jobx/jobx/runner"
)

// TestHostileHandlersFailOnlyTheirOwnRequest runs misbehaving handlers on
// the default sandbox: each fails its own request with an error that says
// what happened, and the runner serves the next request.
func TestHostileHandlersFailOnlyTheirOwnRequest(t *testing.T) {
	c := startCluster(t)
	c.addRunner(func(o *runner.Options) {
		o.Timeout = 3 * time.Second
		o.MaxOutput = 8 << 20
	})
	c.leafWorkflow("wf")
	header := "\"\"\"\nHostile.\n\n**\nhandler_type: mapper\n%s\"\"\"\n"
	for _, tc := range []struct {
		name, extra, body string
		kind, mention     string
	}{
		{"exits non-zero", "", "import sys\nsys.stderr.write('giving up\\n')\nsys.exit(3)\nyield MrConfigureToReturn()\n", "handler_failed", "exited with status 3"},
		{"crashes mid-stream", "", "import os\nyield MrConfigureToReturn()\nyield ('a', 1)\nos.abort()\n", "crashed", "killed by signal SIGABRT"},
		{"writes invalid JSON", "sh", "printf '{\"jobx\":\"return\"}\\n[not json\\n'\n", "protocol", "stdout line 2"},
		{"directs to an unknown step", "", "yield MrConfigureToMap('nowhere')\nyield (1, 2)\n", "definition", `step "nowhere", which does not exist`},
		{"writes gigabytes", "", "yield MrConfigureToReturn()\nwhile True:\n    yield ('x', 'y' * 65536)\n", "output_limit", "wrote more than 8388608 bytes"},
		{"never exits", "", "import time\ntime.sleep(3600)\nyield MrConfigureToReturn()\n", "timeout", "timed out after 3s"},
		{"ignores SIGTERM and never exits", "", "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(3600)\nyield MrConfigureToReturn()\n", "timeout", "timed out"},
		// A sandbox with cgroups kills it (oom); one with rlimits
		// refuses the allocation (MemoryError).
		{"allocates without end", "memory: 256Mi\n", "x = []\nwhile True:\n    x.append(bytearray(1 << 20))\nyield MrConfigureToReturn()\n", "oom|handler_failed", "exceeded its memory limit|MemoryError"},
		{"closes stdout early", "sh", "exec 1>&-\nsleep 0.1\nexit 0\n", "protocol", "wrote no directive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := "map_" + strings.NewReplacer(" ", "_", "-", "_").Replace(tc.name)
			if tc.extra == "sh" {
				c.handler("wf", name, "map/"+name+".sh", "#!/bin/sh\n# Hostile.\n#\n# **\n# handler_type: mapper\n"+tc.body)
			} else {
				c.handler("wf", name, "map/"+name+".py", fmt.Sprintf(header, tc.extra)+tc.body)
			}
			c.step("wf", name, name, "", "reduce_sum")
			c.job("wf", name, name)
			r := c.post("wf", name, `{"arguments":{"n":1}}`, "")
			if r.status != 500 {
				t.Fatalf("want the request to fail (500), got %d: %.300s", r.status, r.raw)
			}
			e, _ := r.body["error"].(map[string]any)
			msg := fmt.Sprint(e["message"]) + " " + fmt.Sprint(e["stderr_tail"])
			// kind and mention may each list alternatives ("a|b"), the
			// i-th mention going with the i-th kind.
			kinds, mentions := strings.Split(tc.kind, "|"), strings.Split(tc.mention, "|")
			ok := false
			for i, k := range kinds {
				ok = ok || (e["kind"] == k && strings.Contains(msg, mentions[i]))
			}
			if !ok {
				t.Fatalf("want kind %s mentioning %q, got %s: %s", tc.kind, tc.mention, e["kind"], msg)
			}
			// The runner keeps serving.
			assertPairs(t, c.post("wf", "leaf", `{"arguments":{"n":3}}`, "").pairs(t), sumsOf(3))
		})
	}
}

// TestHugeFanOutAndHugeResult: a mapper fanning out to thousands of
// children (20,000 in make test-faults or with JOBX_LARGE=1) and a reducer
// returning 50 MB (fifty items of 1 MB: one item is bounded by
// kvmodel.MaxItemBytes) both succeed, with every etcd request within
// etcd's limits.
func TestHugeFanOutAndHugeResult(t *testing.T) {
	children := 3000
	if os.Getenv("JOBX_LARGE") != "" || fullFaults() {
		children = 20000
	}
	c := startCluster(t, func(o *gateway.Options) { o.BlockingTimeout = 10 * time.Minute })
	c.addRunner(func(o *runner.Options) { o.Concurrency = 16 })
	c.workflow("wf")
	c.handler("wf", "map_fan", "map/fan.py", `"""
Fan out to n children.

**
handler_type: mapper
"""
yield MrConfigureToMap('one')
for i in range(arguments[0][1]):
    yield (i, 1)
`)
	c.handler("wf", "map_one", "map/one.py", "\"\"\"\nOne.\n\n**\nhandler_type: mapper\n\"\"\"\nyield MrConfigureToReturn()\nyield ('n', arguments[0][1])\n")
	c.handler("wf", "reduce_sum", "reduce/sum.py", sumPy)
	c.handler("wf", "reduce_big", "reduce/big.py", "\"\"\"\nFifty megabytes.\n\n**\nhandler_type: reducer\n\"\"\"\nfor i in range(50):\n    yield ('big%02d' % i, 'x' * (1 << 20))\n")
	c.step("wf", "one", "map_one", "", "reduce_sum")
	c.step("wf", "fan", "map_fan", "", "reduce_sum")
	c.step("wf", "big", "map_one", "", "reduce_big")
	c.job("wf", "fan", "fan")
	c.job("wf", "big", "big")
	start := time.Now()
	assertPairs(t, c.post("wf", "fan", fmt.Sprintf(`{"arguments":{"n":%d}}`, children), "").pairs(t), map[string]string{`"n"`: fmt.Sprint(children)})
	recordLoad(fmt.Sprintf("fan-out: one mapper to %d children, reduced: right result in %.1f s", children, time.Since(start).Seconds()))
	r := c.post("wf", "big", `{"arguments":{"x":1}}`, "")
	if r.status != 200 || len(r.raw) < 50<<20 {
		t.Fatalf("50 MB result: status %d, %d bytes", r.status, len(r.raw))
	}
}
