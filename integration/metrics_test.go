package integration

import (
	"io"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jobx/jobx/internal/testenv"
	"github.com/jobx/jobx/runner"
)

func TestMetricsCountRequestsInvocationsAndWarmStarts(t *testing.T) {
	c := startCluster(t)
	r, _ := c.addRunner()
	bare := bareRunner(t, c)
	c.workflow("wf")
	c.handler("wf", "map_yield", "map/yield.py", yieldPy)
	c.handler("wf", "reduce_sum", "reduce/sum.py", sumPy)
	c.handler("wf", "map_boom", "map/boom.py", "\"\"\"\nFail.\n\n**\nhandler_type: mapper\n\"\"\"\nraise ValueError('no')\nyield MrConfigureToReturn()\n")
	c.step("wf", "chunk", "map_yield", "", "reduce_sum")
	c.step("wf", "boom", "map_boom", "", "reduce_sum")
	c.job("wf", "leaf", "chunk")
	c.job("wf", "boom", "boom")
	c.post("wf", "leaf", `{"arguments":{"n":3}}`, "").pairs(t)
	c.post("wf", "leaf", `{"arguments":{"n":3}}`, "").pairs(t)
	c.post("wf", "boom", `{"arguments":{}}`, "")
	c.post("wf", "nope", `{"arguments":{}}`, "")

	gw := c.do("GET", "/metrics", "", "").raw
	for _, want := range []string{
		`jobx_requests_total{job="leaf",outcome="done",workflow="wf"} 2`,
		`jobx_requests_total{job="boom",outcome="failed",workflow="wf"} 1`,
		`jobx_requests_total{job="",outcome="rejected",workflow=""} 1`,
		`jobx_request_duration_seconds_count{job="leaf",workflow="wf"} 2`,
	} {
		if !strings.Contains(gw, want) {
			t.Errorf("gateway metrics lack %s", want)
		}
	}
	kind, isolated := runnerSandbox(t, c, "runner1"), "0"
	if isolates[kind] {
		isolated = "1"
	}
	rec := httptest.NewRecorder()
	r.Metrics().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`jobx_invocations_total{direction="map",handler="map_yield",outcome="done",runner="runner1",step="chunk",workflow="wf"} 2`,
		`jobx_invocations_total{direction="reduce",handler="reduce_sum",outcome="done",runner="runner1",step="chunk",workflow="wf"} 2`,
		`jobx_invocations_total{direction="map",handler="map_boom",outcome="failed_handler_failed",runner="runner1",step="boom",workflow="wf"} 1`,
		`jobx_invocation_duration_seconds_count{handler="map_yield",runner="runner1",step="chunk",workflow="wf"} 2`,
		`jobx_runner_topics{runner="runner1"} 2`,
		`jobx_runner_sandbox_isolated{runner="runner1",sandbox="` + kind + `"} ` + isolated,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("runner metrics lack %s", want)
		}
	}
	// Five runs, each started warm but the first (a sandbox that forks
	// from a warm interpreter, like none, starts even that one warm).
	starts := map[string]int{}
	for _, m := range regexp.MustCompile(`jobx_sandbox_starts_total\{runner="runner1",sandbox="`+kind+`",start="(warm|cold)"\} (\d+)`).FindAllStringSubmatch(string(body), -1) {
		starts[m[1]], _ = strconv.Atoi(m[2])
	}
	if starts["warm"]+starts["cold"] != 5 || starts["cold"] > 1 {
		t.Errorf("sandbox starts on %s: %v, want 5 with at most the first cold", kind, starts)
	}
	rec = httptest.NewRecorder()
	bare.Metrics().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if want := `jobx_runner_sandbox_isolated{runner="bare",sandbox="none"} 0`; !strings.Contains(rec.Body.String(), want) {
		t.Errorf("the none sandbox's runner metrics lack %s", want)
	}
}

// TestQueueDepthMetric: a runner busy with one slow invocation at a time
// reports the requests waiting behind it, from nsqd's stats.
func TestQueueDepthMetric(t *testing.T) {
	tcp, httpAddr := testenv.NSQDWithHTTP(t)
	c := startClusterWithNSQD(t, tcp)
	r, _ := c.addRunner(func(o *runner.Options) { o.Concurrency = 1; o.NSQDHTTP = []string{httpAddr} })
	c.workflow("wf")
	c.handler("wf", "map_slow", "map/slow.py", "\"\"\"\nSlow.\n\n**\nhandler_type: mapper\n\"\"\"\nimport time\ntime.sleep(3)\nyield MrConfigureToReturn()\n")
	c.handler("wf", "reduce_sum", "reduce/sum.py", sumPy)
	c.step("wf", "slow", "map_slow", "", "reduce_sum")
	c.job("wf", "slow", "slow")
	for i := 0; i < 4; i++ {
		c.post("wf", "slow", `{"arguments":{}}`, "blocking=false")
	}
	re := regexp.MustCompile(`jobx_queue_depth\{runner="runner1",topic="mr.wf.map.general"\} (\d+)`)
	waitFor(t, "a queue depth of at least 2", 20*time.Second, func() bool {
		rec := httptest.NewRecorder()
		r.Metrics().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		m := re.FindStringSubmatch(rec.Body.String())
		return m != nil && m[1] >= "2" && len(m[1]) == 1
	})
}
