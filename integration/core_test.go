package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jobx/jobx/gateway"
	"github.com/jobx/jobx/internal/queue"
	"github.com/jobx/jobx/kvmodel"
	"github.com/jobx/jobx/runner"
	"github.com/nsqio/go-nsq"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// JobX-style handlers: function bodies, run unmodified.
const (
	splitPy = `"""
Split an argument in half, and send to a downstream step.

**
argument_spec:
    - name: arguments
      type: list
handler_type: mapper
required_capability: none
"""
arg = dict(arguments)['arg1']
yield MrConfigureToMap('chunk')
yield (0, arg // 2)
yield (1, arg // 2 + arg % 2)
`
	// yieldPy is a deterministic leaf mapper: key i%3 gets i for i < n.
	yieldPy = `"""
Yield n numbered pairs over three keys.

**
handler_type: mapper
"""
n = arguments[0][1]
yield MrConfigureToReturn()
for i in range(n):
    yield (i % 3, i)
`
	sumPy = `"""
Sum each key's values.

**
argument_spec:
    - name: results
      type: list
handler_type: reducer
required_capability: none
"""
tally = {}
for k, vs in results:
    tally[k] = sum(vs)
return tally.items()
`
	noopPy = `"""
Pass each key and its value list through.

**
handler_type: reducer
"""
for k, vs in results:
    yield (k, vs)
`
)

// sumsOf is what yieldPy then sumPy give for n.
func sumsOf(n int) map[string]string {
	s := [3]int{}
	for i := 0; i < n; i++ {
		s[i%3] += i
	}
	out := map[string]string{}
	for k, v := range s {
		if k < n {
			out[fmt.Sprint(k)] = fmt.Sprint(v)
		}
	}
	return out
}

func assertPairs(t *testing.T, got, want map[string]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("want %v, got %v", want, got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("key %s: want %s, got %s (all: %v)", k, v, got[k], got)
		}
	}
}

// leafWorkflow defines job "leaf" in workflow wf (creating the workflow):
// yieldPy then sumPy, step "chunk".
func (c *cluster) leafWorkflow(wf string) {
	c.t.Helper()
	c.workflow(wf)
	c.handler(wf, "map_yield", "map/yield.py", yieldPy)
	c.handler(wf, "reduce_sum", "reduce/sum.py", sumPy)
	c.step(wf, "chunk", "map_yield", "", "reduce_sum")
	c.job(wf, "leaf", "chunk")
}

// basic is a cluster with one runner and workflow "wf" holding:
// leaf job (yield -> sum), branch job (split -> leaf step, noop on top).
func basic(t *testing.T) *cluster {
	c := startCluster(t)
	c.addRunner()
	c.leafWorkflow("wf")
	c.handler("wf", "map_split", "map/split.py", splitPy)
	c.handler("wf", "reduce_noop", "reduce/noop.py", noopPy)
	c.step("wf", "split", "map_split", "", "reduce_noop")
	c.job("wf", "branch", "split")
	return c
}

func TestLeafJobReturnsTheReducedPairs(t *testing.T) {
	c := basic(t)
	r := c.post("wf", "leaf", `{"arguments":{"n":10}}`, "")
	assertPairs(t, r.pairs(t), sumsOf(10))
	if r.header.Get("X-MR-REQUEST-ID") == "" || r.header.Get("X-FULFILLED-BY") == "" {
		t.Fatalf("missing JobX headers: %v", r.header)
	}
}

func TestBranchReducesChildrenByKey(t *testing.T) {
	c := basic(t)
	// split 21 -> children (0, 10) and (1, 11); each leaf yields n pairs over
	// keys 0..2 and sums them; the noop reducer on top gets each key's
	// child sums as a list, in child order.
	got := c.post("wf", "branch", `{"arguments":{"arg1":21}}`, "").pairs(t)
	a, b := sumsOf(10), sumsOf(11)
	want := map[string]string{}
	for k := range b {
		if v, ok := a[k]; ok {
			want[k] = "[" + v + "," + b[k] + "]"
		} else {
			want[k] = "[" + b[k] + "]"
		}
	}
	assertPairs(t, got, want)
}

func TestTwoLevelBranchClimbsToTheRoot(t *testing.T) {
	c := basic(t)
	c.handler("wf", "map_fan", "map/fan.py", `"""
Branch every argument to step split, as arg1.

**
handler_type: mapper
"""
yield MrConfigureToMap('split')
for k, v in arguments:
    yield ('arg1', v)
`)
	c.handler("wf", "reduce_total", "reduce/total.py", `"""
Total every value, flattening lists.

**
handler_type: reducer
"""
def flat(v):
    if isinstance(v, list):
        return sum(flat(x) for x in v)
    return v
yield ('total', sum(flat(v) for k, vs in results for v in vs))
`)
	c.step("wf", "fan", "map_fan", "", "reduce_total")
	c.job("wf", "two_level", "fan")
	got := c.post("wf", "two_level", `{"arguments":{"a":21,"b":7}}`, "").pairs(t)
	want := 0
	for _, n := range []int{10, 11, 3, 4} {
		for i := 0; i < n; i++ {
			want += i
		}
	}
	assertPairs(t, got, map[string]string{`"total"`: fmt.Sprint(want)})
}

func TestBranchWithNoChildrenCompletes(t *testing.T) {
	c := basic(t)
	c.handler("wf", "map_none", "map/none.py", `"""
Branch to nothing.

**
handler_type: mapper
"""
yield MrConfigureToMap('chunk')
`)
	c.step("wf", "nothing", "map_none", "", "reduce_sum")
	c.job("wf", "empty", "nothing")
	got := c.post("wf", "empty", `{"arguments":{}}`, "").pairs(t)
	assertPairs(t, got, map[string]string{})
}

func TestCustomCombinerRunsBetweenMapperAndReducer(t *testing.T) {
	c := basic(t)
	c.handler("wf", "combine_max", "combine/max.py", `"""
Keep each key's largest value only.

**
handler_type: combiner
"""
for k, vs in results:
    yield (k, [max(vs)])
`)
	c.step("wf", "chunk_max", "map_yield", "combine_max", "reduce_sum")
	c.job("wf", "leaf_max", "chunk_max")
	got := c.post("wf", "leaf_max", `{"arguments":{"n":10}}`, "").pairs(t)
	assertPairs(t, got, map[string]string{"0": "9", "1": "7", "2": "8"})
}

func TestFailingHandlerGivesAStructuredErrorWithStderr(t *testing.T) {
	c := basic(t)
	c.handler("wf", "map_boom", "map/boom.py", `"""
Fail loudly.

**
handler_type: mapper
"""
LOG.error("about to fail: disk is lava")
raise ValueError("boom at %d" % arguments[0][1])
yield MrConfigureToReturn()
`)
	c.step("wf", "boom", "map_boom", "", "reduce_sum")
	c.job("wf", "boom", "boom")
	r := c.post("wf", "boom", `{"arguments":{"x":42}}`, "")
	if r.status != 500 {
		t.Fatalf("want 500, got %d: %s", r.status, r.raw)
	}
	e, _ := r.body["error"].(map[string]any)
	if e == nil || e["kind"] != "handler_failed" || e["handler"] != "map_boom" || e["exit_code"] != float64(1) {
		t.Fatalf("error lacks kind/handler/exit status: %s", r.raw)
	}
	tail, _ := e["stderr_tail"].(string)
	if !strings.Contains(tail, "disk is lava") || !strings.Contains(tail, "ValueError: boom at 42") {
		t.Fatalf("stderr tail lacks the log and the traceback: %q", tail)
	}
	// JobX's exception headers, on the answer and on the request's status.
	for _, h := range []http.Header{r.header, c.get("/request/wf/" + r.header.Get("X-MR-REQUEST-ID")).header} {
		if typ, msg := h.Get("X-MR-EXCEPTION-TYPE"), h.Get("X-MR-EXCEPTION-MESSAGE"); typ != "handler_failed" || msg != e["message"] {
			t.Fatalf("exception headers %q %q, want handler_failed and %q", typ, msg, e["message"])
		}
	}
	// The request records the failed invocation, whose error is kept.
	req := &kvmodel.Request{WorkflowName: "wf", ID: r.header.Get("X-MR-REQUEST-ID")}
	if err := c.store.Get(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if !req.IsDone || req.FailedInvocationID == nil || *req.FailedInvocationID != e["invocation_id"] {
		t.Fatalf("request does not name the failed invocation: %+v", req)
	}
	inv := &kvmodel.Invocation{WorkflowName: "wf", ID: *req.FailedInvocationID}
	if err := c.store.Get(context.Background(), inv); err != nil || inv.Error == nil || !strings.Contains(*inv.Error, "ValueError") {
		t.Fatalf("invocation error not recorded: %+v %v", inv, err)
	}
}

func TestHandlersInEveryLanguage(t *testing.T) {
	c := basic(t)
	c.handler("wf", "map_js", "map/js.js", `/*
Yield n numbered pairs over three keys, in JavaScript.

**
handler_type: mapper
*/
const lines = require('fs').readFileSync(0, 'utf8').split('\n').filter(Boolean).map(JSON.parse);
const n = lines[0][1];
const out = [JSON.stringify({jobx: 'return'})];
for (let i = 0; i < n; i++) out.push(JSON.stringify([i % 3, i]));
process.stdout.write(out.join('\n') + '\n');
`)
	c.handler("wf", "reduce_sh", "reduce/sh.sh", `#!/bin/sh
# Sum each key's values, in POSIX sh (with jq-free arithmetic).
#
# **
# handler_type: reducer
while IFS= read -r line; do
  key=$(printf '%s' "$line" | sed 's/^\[\([^,]*\),.*/\1/')
  vals=$(printf '%s' "$line" | sed 's/^\[[^,]*,\[\(.*\)\]\]$/\1/' | tr ',' ' ')
  total=0
  for v in $vals; do total=$((total + v)); done
  printf '[%s,%s]\n' "$key" "$total"
done
`)
	c.handler("wf", "reduce_exec", "reduce/exec_sum", `#!/usr/bin/env python3
# Sum each key's values, as a plain executable.
#
# **
# handler_type: reducer
import json, sys
for line in sys.stdin:
    k, vs = json.loads(line)
    print(json.dumps([k, sum(vs)]))
`)
	c.step("wf", "js_sh", "map_js", "", "reduce_sh")
	c.step("wf", "js_exec", "map_js", "", "reduce_exec")
	c.job("wf", "js_sh", "js_sh")
	c.job("wf", "js_exec", "js_exec")
	for _, job := range []string{"js_sh", "js_exec"} {
		t.Run(job, func(t *testing.T) {
			assertPairs(t, c.post("wf", job, `{"arguments":{"n":9}}`, "").pairs(t), sumsOf(9))
		})
	}
}

func TestRunningRunnerPicksUpHandlerUpdates(t *testing.T) {
	c := basic(t)
	assertPairs(t, c.post("wf", "leaf", `{"arguments":{"n":4}}`, "").pairs(t), sumsOf(4))
	c.handler("wf", "reduce_sum", "reduce/sum.py", strings.Replace(sumPy, "sum(vs)", "sum(vs) * 100", 1))
	// The watch delivers the update in well under a second.
	deadline := time.Now().Add(time.Second)
	for {
		got := c.post("wf", "leaf", `{"arguments":{"n":4}}`, "").pairs(t)
		if got["0"] == "300" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("runner still runs the old handler after 1s: %v", got)
		}
	}
}

func TestDuplicateDeliveryOfAFinishedInvocationChangesNothing(t *testing.T) {
	c := basic(t)
	r := c.post("wf", "branch", `{"arguments":{"arg1":9}}`, "keep=true")
	want := r.pairs(t)
	reqID := r.header.Get("X-MR-REQUEST-ID")
	snapshot := func() map[string]string {
		resp, err := c.cli.Get(context.Background(), "/", clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, kv := range resp.Kvs {
			// The registry's heartbeat (load, time) is runner state, not the request's.
			if !strings.HasPrefix(string(kv.Key), "/jobx/cleanup/") && !strings.HasPrefix(string(kv.Key), "/jobx/runners/") {
				out[string(kv.Key)] = string(kv.Value)
			}
		}
		return out
	}
	before := snapshot()
	req := &kvmodel.Request{WorkflowName: "wf", ID: reqID}
	if err := c.store.Get(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	// Re-deliver every message of the request: the root map, both
	// children's maps and every reduction.
	pub, err := queue.NewPublisher([]string{c.nsqd}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	var msgs []queue.Message
	for _, kv := range mustList(t, c, "/entities/invocation/wf/") {
		inv := &kvmodel.Invocation{}
		kvmodel.Decode(inv, kv[0], []byte(kv[1]), 0)
		if inv.RequestID != reqID {
			continue
		}
		msg := queue.Message{JobClass: inv.Direction, WorkflowName: "wf", RequestID: reqID, InvocationID: inv.ID, StepName: inv.StepName}
		topic := kvmodel.MapTopic("wf", "general")
		if inv.Direction == "reduce" {
			msg.MapInvocationID = inv.Parent()
			topic = kvmodel.ReduceTopic("wf", "general")
		}
		msgs = append(msgs, msg)
		if err := pub.Publish(topic, msg.Encode()); err != nil {
			t.Fatal(err)
		}
		if inv.Direction == "map" {
			// And as a first delivery with the copy its publisher sent:
			// the invocation as it was created, the request as it is.
			created := *inv
			created.State, created.HandlerName, created.FinishedTimestamp = kvmodel.StatePending, "", ""
			created.MappedCount, created.MappedWaiting, created.MappedStep = nil, nil, ""
			invJSON, _ := kvmodel.Encode(&created)
			reqJSON, _ := kvmodel.Encode(req)
			msg.Fresh = queue.NewFresh(invJSON, reqJSON, req.Revision(), nil)
			if err := pub.Publish(topic, msg.Encode()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(msgs) != 6 {
		t.Fatalf("want 6 invocations (3 maps, 3 reduces), got %d", len(msgs))
	}
	// Wait until the runner has consumed them: a fresh request behind them
	// on the same topics completes only after.
	assertPairs(t, c.post("wf", "branch", `{"arguments":{"arg1":9}}`, "").pairs(t), want)
	after := snapshot()
	for k, v := range before {
		if after[k] != v {
			t.Errorf("key %s changed by a duplicate delivery:\n before %s\n after  %s", k, v, after[k])
		}
	}
}

func mustList(t *testing.T, c *cluster, prefix string) [][2]string {
	resp, err := c.cli.Get(context.Background(), prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	var out [][2]string
	for _, kv := range resp.Kvs {
		out = append(out, [2]string{string(kv.Key), string(kv.Value)})
	}
	return out
}

func TestFiftyConcurrentRequestsAllAnswerCorrectly(t *testing.T) {
	c := basic(t)
	var wg sync.WaitGroup
	errs := make(chan string, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(n int) {
			defer wg.Done()
			r := c.post("wf", "leaf", fmt.Sprintf(`{"arguments":{"n":%d}}`, n), "")
			if r.status != 200 {
				errs <- fmt.Sprintf("n=%d: status %d: %s", n, r.status, r.raw)
				return
			}
			got := map[string]string{}
			var body struct {
				Result struct{ Pairs [][]json.RawMessage }
			}
			json.Unmarshal([]byte(r.raw), &body)
			for _, p := range body.Result.Pairs {
				got[string(p[0])] = string(p[1])
			}
			want := sumsOf(n)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				errs <- fmt.Sprintf("n=%d: want %v, got %v", n, want, got)
			}
		}(i + 1)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestBadRequestsAreAnsweredWithClearErrors(t *testing.T) {
	c := basic(t)
	for _, tc := range []struct {
		name, path, ctype, body string
		status                  int
		mention                 string
	}{
		{"malformed JSON", "/job/wf/leaf", "application/json", `{"arguments":`, 400, "not valid JSON"},
		{"arguments not an object", "/job/wf/leaf", "application/json", `{"arguments":[1,2]}`, 400, `"arguments" must be a JSON object`},
		{"missing arguments", "/job/wf/leaf", "application/json", `{}`, 400, `lacks "arguments"`},
		{"unknown field", "/job/wf/leaf", "application/json", `{"arguments":{},"argz":1}`, 400, `unknown field "argz"`},
		{"wrong content type", "/job/wf/leaf", "text/plain", `{"arguments":{}}`, 415, "application/json"},
		{"unknown workflow", "/job/nope/leaf", "application/json", `{"arguments":{}}`, 404, `workflow "nope"`},
		{"unknown job", "/job/wf/nope", "application/json", `{"arguments":{}}`, 404, `job "nope"`},
		{"dotted workflow", "/job/a.b/leaf", "application/json", `{"arguments":{}}`, 400, "'.'"},
		{"unicode workflow name", "/job/wf_%C3%BC/leaf", "application/json", `{"arguments":{}}`, 400, "ASCII"},
		{"very long workflow name", "/job/" + strings.Repeat("w", 300) + "/leaf", "application/json", `{"arguments":{}}`, 400, "long"},
		{"NUL in workflow name", "/job/wf%00/leaf", "application/json", `{"arguments":{}}`, 400, "workflow"},
		{"path trick in workflow name", "/job/..%2F..%2Fetc/leaf", "application/json", `{"arguments":{}}`, 404, "no route for POST /job/..%2F..%2Fetc/leaf"},
		{"NUL in job name", "/job/wf/leaf%00", "application/json", `{"arguments":{}}`, 400, "control characters"},
		{"path trick in job name", "/job/wf/..%2Fleaf", "application/json", `{"arguments":{}}`, 404, "no route"},
		{"absolute path as request id", "/request/wf/%2Fetc%2Fpasswd", "", "", 404, "no route"},
		{"path trick in request id", "/request/wf/..", "", "", 404, "request .. of workflow wf"},
		{"unicode job name", "/job/wf/l%C3%A9af", "application/json", `{"arguments":{}}`, 404, `job "léaf"`},
		{"oversized body", "/job/wf/leaf", "application/json", `{"arguments":{"x":"` + strings.Repeat("x", 9<<20) + `"}}`, 413, "over the 8388608-byte request body limit (set by jobx gateway --max-body)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			method := "POST"
			if strings.HasPrefix(tc.path, "/request/") {
				method = "GET"
			}
			r := c.do(method, tc.path, tc.ctype, tc.body)
			e, _ := r.body["error"].(map[string]any)
			msg, _ := e["message"].(string)
			if r.status != tc.status || !strings.Contains(msg, tc.mention) {
				t.Fatalf("want %d mentioning %q, got %d: %.300s", tc.status, tc.mention, r.status, r.raw)
			}
			if r.header.Get("X-FULFILLED-BY") == "" || method == "POST" && !strings.Contains(msg, "no route") && r.header.Get("X-MR-REQUEST-ID") == "" {
				t.Fatalf("missing JobX headers: %v", r.header)
			}
		})
	}
}

func TestNonBlockingRequestIsFetchable(t *testing.T) {
	c := basic(t)
	r := c.post("wf", "leaf", `{"arguments":{"n":5}}`, "blocking=false")
	if r.status != 202 || r.header.Get("Location") == "" {
		t.Fatalf("want 202 with Location, got %d %v: %s", r.status, r.header, r.raw)
	}
	var got response
	waitFor(t, "the request to finish", 30*time.Second, func() bool {
		got = c.do("GET", r.header.Get("Location"), "", "")
		return got.body["state"] == "done"
	})
	assertPairs(t, got.pairs(t), sumsOf(5))
	p, _ := got.body["progress"].(map[string]any)
	if p["invocations_done"] != float64(2) || p["invocations_known"] != float64(2) {
		t.Fatalf("progress: %v", p)
	}
}

func TestBlockingWaitPastItsLimitAnswers504AndTheJobGoesOn(t *testing.T) {
	c := startCluster(t, func(o *gateway.Options) { o.BlockingTimeout = 300 * time.Millisecond })
	c.addRunner()
	c.workflow("wf")
	c.handler("wf", "map_slow", "map/slow.py", `"""
Sleep a second.

**
handler_type: mapper
"""
import time
time.sleep(1)
yield MrConfigureToReturn()
yield ('slept', 1)
`)
	c.handler("wf", "reduce_sum", "reduce/sum.py", sumPy)
	c.step("wf", "slow", "map_slow", "", "reduce_sum")
	c.job("wf", "slow", "slow")
	r := c.post("wf", "slow", `{"arguments":{}}`, "")
	if r.status != 504 || !strings.Contains(r.raw, "goes on") {
		t.Fatalf("want 504, got %d: %s", r.status, r.raw)
	}
	id := r.header.Get("X-MR-REQUEST-ID")
	waitFor(t, "the request to finish anyway", 30*time.Second, func() bool {
		return c.do("GET", "/request/wf/"+id, "", "").body["state"] == "done"
	})
}

func TestHandlerRetriesItsOwnFailuresAsItsHeaderAsks(t *testing.T) {
	c := startCluster(t)
	c.addRunner(sharedFS(t).runner)
	c.leafWorkflow("wf")
	// Fails on its first two runs (counted in a file of the workflow's
	// shared files), then succeeds.
	c.handler("wf", "map_flaky", "map/flaky.py", `"""
Fail twice, then work.

**
handler_type: mapper
retries:
  count: 2
  backoff: 10ms
"""
import os
p = os.path.join(os.environ['JOBX_FS_ROOT'], 'count')
n = int(open(p).read()) if os.path.exists(p) else 0
open(p, 'w').write(str(n + 1))
if n < 2:
    raise RuntimeError('flaky run %d' % n)
yield MrConfigureToReturn()
yield ('runs', n + 1)
`)
	c.step("wf", "flaky", "map_flaky", "", "reduce_sum")
	c.job("wf", "flaky", "flaky")
	assertPairs(t, c.post("wf", "flaky", `{"arguments":{}}`, "").pairs(t), map[string]string{`"runs"`: "3"})
}

// A first delivery whose copy of the request is out of date (the request
// was written after the message was published) is read again from etcd,
// and its invocation runs once, on the request as it is.
func TestStaleFreshCopyIsReadAgainFromEtcd(t *testing.T) {
	c := basic(t)
	ctx := context.Background()
	req := &kvmodel.Request{ID: kvmodel.NewID(), WorkflowName: "wf", JobName: "leaf", State: kvmodel.StatePending, IsBlocking: false}
	root := &kvmodel.Invocation{ID: kvmodel.NewID(), WorkflowName: "wf", RequestID: req.ID, Direction: "map", StepName: "chunk", State: kvmodel.StatePending}
	req.InvocationID = root.ID
	args := kvmodel.AppendPairItem(nil, kvmodel.Pair{Key: json.RawMessage(`"n"`), Value: json.RawMessage(`5`)})
	published := kvmodel.PutOp(req).Value
	if err := c.store.Apply(ctx, append(kvmodel.DatasetOps("wf", root.ID, kvmodel.Arguments, args), kvmodel.PutOp(root), kvmodel.PutOp(req))); err != nil {
		t.Fatal(err)
	}
	if err := c.store.Get(ctx, req); err != nil {
		t.Fatal(err)
	}
	stale := req.Revision()
	req.Context = map[string]any{"changed": "after publication"}
	if err := c.store.Apply(ctx, []kvmodel.Op{kvmodel.PutOp(req)}); err != nil {
		t.Fatal(err)
	}
	msg := queue.Message{JobClass: "map", WorkflowName: "wf", RequestID: req.ID, InvocationID: root.ID, StepName: "chunk",
		Fresh: queue.NewFresh(kvmodel.PutOp(root).Value, published, stale, args)}
	prod, _ := nsq.NewProducer(c.nsqd, nsq.NewConfig())
	defer prod.Stop()
	if err := prod.Publish(kvmodel.MapTopic("wf", "general"), msg.Encode()); err != nil {
		t.Fatal(err)
	}
	got := &kvmodel.Request{WorkflowName: "wf", ID: req.ID}
	waitFor(t, "the request to end", 30*time.Second, func() bool {
		c.store.Get(ctx, got)
		return got.IsDone
	})
	if got.State != kvmodel.StateDone || got.Context["changed"] != "after publication" {
		t.Fatalf("request ended %s with context %v", got.State, got.Context)
	}
	result, err := c.store.ReadDataset(ctx, "wf", root.ID, kvmodel.PostReduce)
	if err != nil {
		t.Fatal(err)
	}
	pairs, err := kvmodel.DecodePairItems(result)
	if err != nil {
		t.Fatal(err)
	}
	gotPairs := map[string]string{}
	for _, p := range pairs {
		gotPairs[strings.Trim(string(p.Key), `"`)] = string(p.Value)
	}
	assertPairs(t, gotPairs, sumsOf(5))
}

func TestMessageThatKeepsFailingEndsItsRequest(t *testing.T) {
	c := basic(t)
	// A reduce message whose map invocation is missing fails for
	// "infrastructure" reasons on every delivery.
	req := &kvmodel.Request{ID: kvmodel.NewID(), WorkflowName: "wf", JobName: "leaf", InvocationID: kvmodel.NewID(), State: kvmodel.StatePending}
	red := &kvmodel.Invocation{ID: kvmodel.NewID(), WorkflowName: "wf", RequestID: req.ID, Direction: "reduce", StepName: "chunk",
		ParentInvocationID: kvmodel.StrPtr(kvmodel.NewID()), State: kvmodel.StatePending}
	if err := c.store.Apply(context.Background(), []kvmodel.Op{kvmodel.PutOp(req), kvmodel.PutOp(red)}); err != nil {
		t.Fatal(err)
	}
	prod, _ := nsq.NewProducer(c.nsqd, nsq.NewConfig())
	defer prod.Stop()
	msg := queue.Message{JobClass: "reduce", WorkflowName: "wf", RequestID: req.ID, InvocationID: red.ID, StepName: "chunk"}
	if err := prod.Publish(kvmodel.ReduceTopic("wf", "general"), msg.Encode()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the request to fail", 30*time.Second, func() bool {
		got := &kvmodel.Request{WorkflowName: "wf", ID: req.ID}
		c.store.Get(context.Background(), got)
		return got.IsDone && got.Error != nil && got.Error.Kind == "infrastructure" && got.Error.Attempts == 5
	})
}

var _ = runner.NewOptions
