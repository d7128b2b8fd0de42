package integration

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jobx/jobx/gateway"
	"github.com/jobx/jobx/internal/etcdmaint"
	"github.com/jobx/jobx/kvmodel"
	"github.com/jobx/jobx/runner"
)

func TestLongInvocationIsKeptAliveNotRedelivered(t *testing.T) {
	c := startCluster(t)
	shared := sharedFS(t)
	c.addRunner(func(o *runner.Options) { o.MsgTimeout = time.Second }, shared.runner)
	// It runs for three message timeouts.
	shared.slowJob(c, "wf", 3)
	assertPairs(t, c.post("wf", "slow", `{"arguments":{}}`, "").pairs(t), map[string]string{`"done"`: "1"})
	if n := shared.runs("wf"); n != 1 {
		t.Fatalf("the mapper ran %d times; touching should have kept its message from being redelivered", n)
	}
}

func TestRunnerServesOnlyTheWorkflowsItIsGiven(t *testing.T) {
	c := startCluster(t)
	c.addRunner(func(o *runner.Options) { o.Workflows = []string{"mine"} })
	for _, wf := range []string{"mine", "other"} {
		c.leafWorkflow(wf)
	}
	assertPairs(t, c.post("mine", "leaf", `{"arguments":{"n":3}}`, "").pairs(t), sumsOf(3))
	// Nobody serves workflow other: a blocking request is refused at once,
	// a non-blocking one is accepted already failed, not parked.
	r := c.post("other", "leaf", `{"arguments":{"n":3}}`, "")
	if e, _ := r.body["error"].(map[string]any); r.status != 503 || e["kind"] != "no_capability" || !strings.Contains(e["message"].(string), `capability "general" for workflow "other"`) {
		t.Fatalf("want 503 no_capability, got %d: %s", r.status, r.raw)
	}
	r = c.post("other", "leaf", `{"arguments":{"n":3}}`, "blocking=false")
	if got := c.do("GET", r.header.Get("Location"), "", ""); got.body["state"] != "failed" {
		t.Fatalf("want the non-blocking request failed with no_capability: %s", got.raw)
	}
	// Once a runner serving every workflow starts, the job is served.
	c.addRunner()
	assertPairs(t, c.post("other", "leaf", `{"arguments":{"n":3}}`, "").pairs(t), sumsOf(3))
}

func TestRunnerServesWorkflowsCreatedAfterItStarted(t *testing.T) {
	c := startCluster(t)
	c.addRunner()
	time.Sleep(100 * time.Millisecond)
	c.leafWorkflow("late")
	assertPairs(t, c.post("late", "leaf", `{"arguments":{"n":5}}`, "").pairs(t), sumsOf(5))
}

func TestRequestCleanupAfterDeliveryRetentionAndKeep(t *testing.T) {
	c := startCluster(t, func(o *gateway.Options) { o.DeliveredRetention = 0 })
	c.addRunner(func(o *runner.Options) {
		o.CleanupInterval = 50 * time.Millisecond
		o.Retention = 2 * time.Second
	})
	c.workflow("wf")
	c.handler("wf", "map_yield", "map/yield.py", yieldPy)
	c.handler("wf", "map_split", "map/split.py", splitPy)
	c.handler("wf", "reduce_sum", "reduce/sum.py", sumPy)
	c.handler("wf", "reduce_noop", "reduce/noop.py", noopPy)
	c.step("wf", "chunk", "map_yield", "", "reduce_sum")
	c.step("wf", "split", "map_split", "", "reduce_noop")
	c.job("wf", "branch", "split")
	// The keys of no request: the runners' registry, their elections
	// (recovery, compaction, defragmentation), the request history (a
	// summary each) and the definitions.
	notRequests := []string{"/jobx/runners/", "/jobx/recovery/", etcdmaint.CompactElection, etcdmaint.DefragElection, kvmodel.RecentRoot,
		"/entities/workflow/", "/entities/handler/", "/entities/step/", "/entities/job/"}
	count := func(queueToo bool) int {
		n := 0
		for _, kv := range mustList(t, c, "/") {
			if (queueToo || !strings.HasPrefix(kv[0], "/jobx/cleanup/")) &&
				!slices.ContainsFunc(notRequests, func(p string) bool { return strings.HasPrefix(kv[0], p) }) {
				n++
			}
		}
		return n
	}
	// A delivered blocking request is cleaned up at once.
	delivered := c.post("wf", "branch", `{"arguments":{"arg1":5}}`, "")
	delivered.pairs(t)
	waitFor(t, "the delivered request's cleanup", 10*time.Second, func() bool {
		return c.do("GET", "/request/wf/"+delivered.header.Get("X-MR-REQUEST-ID"), "", "").status == 404
	})
	if n := count(false); n != 0 {
		t.Fatalf("%d keys left after cleanup", n)
	}
	// A non-blocking request's result stays fetchable for the retention.
	async := c.post("wf", "branch", `{"arguments":{"arg1":5}}`, "blocking=false")
	loc := async.header.Get("Location")
	waitFor(t, "the async request", 10*time.Second, func() bool { return c.do("GET", loc, "", "").body["state"] == "done" })
	// A kept request is never cleaned up automatically.
	kept := c.post("wf", "branch", `{"arguments":{"arg1":5}}`, "keep=true")
	kept.pairs(t)
	waitFor(t, "the async request's retention to pass", 10*time.Second, func() bool { return c.do("GET", loc, "", "").status == 404 })
	req := &kvmodel.Request{WorkflowName: "wf", ID: kept.header.Get("X-MR-REQUEST-ID")}
	if err := c.store.Get(context.Background(), req); err != nil || !req.Keep {
		t.Fatalf("the kept request is gone: %v", err)
	}
	if n, err := c.store.PruneRequest(context.Background(), "wf", req.ID, true); n != 3 || err != nil {
		t.Fatalf("forced prune of the kept request: %d invocations, %v", n, err)
	}
	waitFor(t, "the cleanup queue to drain", 10*time.Second, func() bool { return count(true) == 0 })
}

func TestCleanupQueueSurvivesARunnerRestart(t *testing.T) {
	c := startCluster(t)
	_, stop := c.addRunner(func(o *runner.Options) { o.CleanupInterval = 0 })
	c.leafWorkflow("wf")
	r := c.post("wf", "leaf", `{"arguments":{"n":3}}`, "")
	r.pairs(t)
	stop()
	if c.do("GET", "/request/wf/"+r.header.Get("X-MR-REQUEST-ID"), "", "").status != 200 {
		t.Fatal("request cleaned up by a runner that does no cleanup")
	}
	c.addRunner(func(o *runner.Options) { o.CleanupInterval = 50 * time.Millisecond })
	waitFor(t, "a new runner to work the queue", 10*time.Second, func() bool {
		return c.do("GET", "/request/wf/"+r.header.Get("X-MR-REQUEST-ID"), "", "").status == 404
	})
}
