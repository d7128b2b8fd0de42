package integration

import (
	"context"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jobx/jobx/internal/testenv"
	"github.com/jobx/jobx/kvmodel"
	"github.com/jobx/jobx/runner"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// sleepYieldPy is yieldPy after a sleep long enough for the test to cut
// the gateway off and compact etcd's history while it runs.
const sleepYieldPy = `"""
Sleep, then yield n numbered pairs over three keys.

**
handler_type: mapper
"""
import time
time.sleep(3)
n = arguments[0][1]
yield MrConfigureToReturn()
for i in range(n):
    yield (i % 3, i)
`

// compactToNow writes a key twice and compacts etcd's history to the
// current revision (physically): every watch that resumes from before it
// gets ErrCompacted.
func compactToNow(t *testing.T, cli *clientv3.Client) {
	t.Helper()
	var rev int64
	for range 2 {
		resp, err := cli.Put(context.Background(), "/test/filler", "x")
		if err != nil {
			t.Fatal(err)
		}
		rev = resp.Header.Revision
	}
	start := time.Now()
	if _, err := cli.Compact(context.Background(), rev, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	t.Logf("compacted etcd's history to revision %d in %s", rev, time.Since(start).Round(time.Microsecond))
}

// requestsDone reports how many of the requests in etcd are done, of how
// many.
func requestsDone(t *testing.T, cli *clientv3.Client) (done, all int) {
	t.Helper()
	reqs, err := kvmodel.List[kvmodel.Request](context.Background(), kvmodel.NewStore(cli))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reqs {
		if r.IsDone {
			done++
		}
	}
	return done, len(reqs)
}

// A blocking request whose handler sleeps while etcd's history is compacted
// to its latest revision still gets its result, and a non-blocking one's
// status is still right. The gateway reaches etcd through a relay that the
// test cuts while the handlers sleep, so its blocking wait resumes past two
// compactions: one while the request runs, one after it ended. Meanwhile
// the runners (talking to etcd directly) run the compactor at a retention
// of 1 s: one of them is elected and compacts.
func TestBlockingRequestSpansACompaction(t *testing.T) {
	endpoint, cli := testenv.Etcd(t)
	relay, gwCli := testenv.EtcdThrough(t, endpoint)
	c := startClusterOn(t, endpoint, gwCli, testenv.NSQD(t))
	direct := func(o *runner.Options) { o.Etcd, o.CompactRetention = cli, time.Second }
	r1, _ := c.addRunner(direct)
	r2, _ := c.addRunner(direct)
	c.workflow("wf")
	c.handler("wf", "map_sleep", "map/sleep.py", sleepYieldPy)
	c.handler("wf", "reduce_sum", "reduce/sum.py", sumPy)
	c.step("wf", "sleep", "map_sleep", "", "reduce_sum")
	c.job("wf", "sleep", "sleep")

	async := c.post("wf", "sleep", `{"arguments":{"n":7}}`, "blocking=false")
	if async.status != 202 {
		t.Fatalf("non-blocking submission: %d %s", async.status, async.raw)
	}
	blocking := make(chan response, 1)
	go func() { blocking <- c.post("wf", "sleep", `{"arguments":{"n":10}}`, "") }()
	waitFor(t, "both requests recorded", 10*time.Second, func() bool { _, all := requestsDone(t, cli); return all == 2 })
	time.Sleep(300 * time.Millisecond) // the handlers sleep for 3 s

	relay.Cut()
	compactToNow(t, cli)
	if done, _ := requestsDone(t, cli); done != 0 {
		t.Fatalf("%d requests ended before the first compaction; the handlers should still sleep", done)
	}
	waitFor(t, "both requests to end", 30*time.Second, func() bool { done, _ := requestsDone(t, cli); return done == 2 })
	compactToNow(t, cli)
	relay.Heal()

	select {
	case r := <-blocking:
		assertPairs(t, r.pairs(t), sumsOf(10))
	case <-time.After(45 * time.Second):
		t.Fatal("the blocking request got no answer")
	}
	status := c.do("GET", async.header.Get("Location"), "", "")
	if status.body["state"] != kvmodel.StateDone {
		t.Fatalf("non-blocking request's status: %d %s", status.status, status.raw)
	}
	assertPairs(t, status.pairs(t), sumsOf(7))

	waitFor(t, "a runner's compactor to compact", 20*time.Second, func() bool {
		return metric(t, r1, "jobx_etcd_compactions_total")+metric(t, r2, "jobx_etcd_compactions_total") > 0
	})
	if leaders := metric(t, r1, "jobx_etcd_compaction_leader") + metric(t, r2, "jobx_etcd_compaction_leader"); leaders != 1 {
		t.Errorf("%v runners lead the compaction, want 1", leaders)
	}
	if a, b := metric(t, r1, "jobx_etcd_compactions_total"), metric(t, r2, "jobx_etcd_compactions_total"); a > 0 && b > 0 {
		t.Errorf("both runners compacted (%v and %v times)", a, b)
	}
}

// metric returns the value of a runner metric without labels other than
// runner (0 when absent).
func metric(t *testing.T, r *runner.Runner, name string) float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	r.Metrics().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for line := range strings.Lines(rec.Body.String()) {
		if strings.HasPrefix(line, name+"{") {
			if v, err := strconv.ParseFloat(strings.TrimSpace(line[strings.LastIndexByte(line, ' ')+1:]), 64); err == nil {
				return v
			}
		}
	}
	return 0
}
