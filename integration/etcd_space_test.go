package integration

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jobx/jobx/internal/etcdmaint"
	"github.com/jobx/jobx/internal/testenv"
	"github.com/jobx/jobx/runner"
)

const (
	// gatePy counts its runs, says it started, and waits for the test to
	// create "open" in the workflow's shared files.
	gatePy = `"""
Wait for the test's gate, then return.

**
handler_type: mapper
"""
import os, time
root = os.environ['JOBX_FS_ROOT']
with open(os.path.join(root, 'runs'), 'a') as f:
    f.write('run\n')
open(os.path.join(root, 'started'), 'w').close()
deadline = time.time() + 60
while not os.path.exists(os.path.join(root, 'open')) and time.time() < deadline:
    time.sleep(0.02)
yield MrConfigureToReturn()
yield ('gated', 1)
`
	// fillPy takes a big argument and returns its size.
	fillPy = `"""
Return the size of the first argument.

**
handler_type: mapper
"""
yield MrConfigureToReturn()
yield ('size', len(arguments[0][1]))
`
)

// The whole NOSPACE path on a real cluster with a small etcd quota:
//   - requests with big arguments (kept) fill etcd until the gateway
//     answers 503 storage_full, with the fix in the message, for
//     non-blocking and blocking requests alike;
//   - a request accepted before, whose handler finishes while etcd is
//     full, is not lost: the runner cannot record its outcome and requeues
//     its message, past --max-attempts, and the request stays pending;
//   - an operator removes the kept requests (deletes work while etcd is
//     full); the runner's defragmentation loop compacts, defragments and
//     disarms by itself; the pending request completes and new requests
//     succeed.
func TestAFullEtcdAnswers503AndLosesNothing(t *testing.T) {
	const quota = 8 << 20
	endpoint, cli := testenv.EtcdWithQuota(t, quota)
	c := startClusterOn(t, endpoint, cli, testenv.NSQD(t))
	fs := sharedFS(t)
	const maxAttempts = 3
	c.addRunner(fs.runner, func(o *runner.Options) {
		o.MaxAttempts = maxAttempts
		o.EtcdDefrag.Threshold = 0.5 // on; the 64 MiB floor keeps it to the NOSPACE rules here
		o.EtcdDefrag.Interval = 200 * time.Millisecond
	})
	c.workflow("wf")
	c.handler("wf", "map_gate", "map/gate.py", gatePy)
	c.handler("wf", "map_fill", "map/fill.py", fillPy)
	c.handler("wf", "reduce_sum", "reduce/sum.py", sumPy)
	c.step("wf", "gate", "map_gate", "", "reduce_sum")
	c.job("wf", "gate", "gate")
	c.step("wf", "fill", "map_fill", "", "reduce_sum")
	c.job("wf", "fill", "fill")
	ctx := context.Background()

	r := c.post("wf", "gate", `{"arguments":{}}`, "blocking=false")
	if r.status != 202 {
		t.Fatalf("gate request: %d %s", r.status, r.raw)
	}
	gated := r.body["request_id"].(string)
	waitFor(t, "the gated handler to start", 30*time.Second, func() bool {
		_, err := os.Stat(fs.path("wf", "started"))
		return err == nil
	})

	blob := `{"arguments":{"blob":"` + strings.Repeat("x", 256<<10) + `"}}`
	var kept []string
	var full response
	fillStart := time.Now()
	for range 500 {
		r := c.post("wf", "fill", blob, "blocking=false&keep=true")
		if r.status != 202 {
			full = r
			break
		}
		kept = append(kept, r.body["request_id"].(string))
	}
	fillTook := time.Since(fillStart)
	errBody, _ := full.body["error"].(map[string]any)
	if full.status != 503 || errBody["kind"] != "storage_full" {
		t.Fatalf("after %d requests: %d %s; want 503 storage_full", len(kept), full.status, full.raw)
	}
	msg, _ := errBody["message"].(string)
	for _, want := range []string{"etcd is out of space", "--etcd-quota", "jobx etcd compact", "jobx etcd defrag", "jobx etcd disarm", "nothing already accepted is lost", "database space exceeded"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the storage_full message does not say %q: %s", want, msg)
		}
	}
	if b := c.post("wf", "gate", `{"arguments":{}}`, ""); b.status != 503 || !strings.Contains(b.raw, "storage_full") {
		t.Errorf("a blocking request on a full etcd: %d %s", b.status, b.raw)
	}
	members, _ := etcdmaint.Status(ctx, cli)
	if len(members) != 1 || !members[0].NoSpace() {
		t.Fatalf("etcd status once full: %+v", members)
	}
	t.Logf("quota %d MiB: %d requests of 256 KiB accepted in %s, then 503 storage_full; database %d bytes (%d in use)",
		quota>>20, len(kept), fillTook.Round(time.Millisecond), members[0].DBSize, members[0].DBSizeInUse)

	// The gated handler finishes now; its outcome cannot be recorded.
	if err := os.WriteFile(fs.path("wf", "open"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the handler to run past --max-attempts", 30*time.Second, func() bool {
		runs, _ := os.ReadFile(fs.path("wf", "runs"))
		return strings.Count(string(runs), "\n") >= maxAttempts+2
	})
	if got := c.do("GET", "/request/wf/"+gated, "", ""); got.body["state"] != "pending" {
		t.Fatalf("the gated request on a full etcd: %d %s; want it still pending", got.status, got.raw)
	}

	// Reclaim: the operator removes the kept requests; the runner's loop
	// does the rest.
	reclaimStart := time.Now()
	for _, id := range kept {
		if _, err := c.store.PruneRequest(ctx, "wf", id, true); err != nil {
			t.Fatalf("remove kept request %s (deletes work while etcd is full): %v", id, err)
		}
	}
	pruned := time.Since(reclaimStart)
	waitFor(t, "the runner's loop to disarm NOSPACE", 30*time.Second, func() bool {
		alarms, err := etcdmaint.Alarms(ctx, cli)
		return err == nil && len(alarms) == 0
	})
	disarmed := time.Since(reclaimStart)
	var done response
	waitFor(t, "the gated request to complete", 90*time.Second, func() bool {
		done = c.do("GET", "/request/wf/"+gated, "", "")
		return done.body["state"] != "pending"
	})
	completed := time.Since(reclaimStart)
	if done.body["state"] != "done" {
		t.Fatalf("the gated request ended %v: %s", done.body["state"], done.raw)
	}
	if !strings.Contains(done.raw, `"pairs":[["gated",1]]`) {
		t.Errorf("the gated request's result: %s", done.raw)
	}
	assertPairs(t, c.post("wf", "gate", `{"arguments":{}}`, "").pairs(t), map[string]string{`"gated"`: "1"})
	if r := c.post("wf", "fill", blob, "blocking=false"); r.status != 202 {
		t.Errorf("a big request after the recovery: %d %s", r.status, r.raw)
	}
	members, _ = etcdmaint.Status(ctx, cli)
	t.Logf("recovery: kept requests removed in %s; NOSPACE disarmed by the runner %s after the removal began; the gated request done after %s; database now %d bytes",
		pruned.Round(time.Millisecond), disarmed.Round(time.Millisecond), completed.Round(time.Millisecond), members[0].DBSize)
}
