package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jobx/jobx/internal/handlersync"
	"github.com/jobx/jobx/internal/queue"
	"github.com/jobx/jobx/internal/testenv"
	"github.com/jobx/jobx/kvmodel"
	"github.com/jobx/jobx/processors"
	_ "github.com/jobx/jobx/processors/shell"
	"github.com/jobx/jobx/sandbox/none"
)

// The engine on its own: one runner on a real etcd and a real nsqd, no
// gateway. Requests are created with kvmodel's verb and their messages
// published as the gateway does; the runner's work is read back from etcd.

// engineEnv is a runner with workflow "wf" of shell handlers:
//
//	leaf:   map_echo (returns its arguments as pairs), reduce_cat
//	split:  map_split (branches every argument to step leaf), reduce_cat
//	broken: map_fail (exits 3), reduce_cat
type engineEnv struct {
	t     *testing.T
	store *kvmodel.Store
	pub   *queue.Publisher
	nsqd  string // HTTP address
	runs  string // a file each mapper run appends a line to
}

func startEngine(t *testing.T) *engineEnv {
	t.Helper()
	_, cli := testenv.Etcd(t)
	tcp, httpAddr := testenv.NSQDWithHTTP(t)
	e := &engineEnv{t: t, store: kvmodel.NewStore(cli), nsqd: httpAddr, runs: filepath.Join(t.TempDir(), "runs")}
	ctx := t.Context()
	if err := e.store.Create(ctx, &kvmodel.Workflow{Name: "wf", Description: "engine test"}); err != nil {
		t.Fatal(err)
	}
	count := "echo run >> " + e.runs + "\n"
	e.handler("map_echo", "map/echo.sh", "mapper", count+`echo '{"jobx":"return"}'; cat`)
	e.handler("map_split", "map/split.sh", "mapper", count+`echo '{"jobx":"map","step":"leaf"}'; cat`)
	e.handler("map_fail", "map/fail.sh", "mapper", count+"echo 'no good' >&2; exit 3")
	e.handler("reduce_cat", "reduce/cat.sh", "reducer", "cat")
	for step, mapper := range map[string]string{"leaf": "map_echo", "split": "map_split", "broken": "map_fail"} {
		if err := e.store.Create(ctx, &kvmodel.Step{Name: step, WorkflowName: "wf", MapHandlerName: mapper, ReduceHandlerName: "reduce_cat"}); err != nil {
			t.Fatal(err)
		}
		if err := e.store.Create(ctx, &kvmodel.Job{Name: step, WorkflowName: "wf", InitialStepName: step}); err != nil {
			t.Fatal(err)
		}
	}

	box, err := none.New(none.Options{Dir: t.TempDir(), Log: testenv.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { box.Close() })
	o := NewOptions()
	o.ID, o.Etcd, o.NSQDs, o.NSQDHTTP, o.Dir, o.Sandbox, o.Log = "engine-test", cli, []string{tcp}, []string{httpAddr}, t.TempDir(), box, testenv.Logger(t)
	r, err := New(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- r.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("runner: %v", err)
		}
		if err := r.Close(); err != nil {
			t.Errorf("close the runner: %v", err)
		}
	})
	select {
	case <-r.Ready():
	case err := <-ran:
		t.Fatalf("runner stopped before it was ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the runner was not ready within 30s")
	}
	if e.pub, err = queue.NewPublisher([]string{tcp}, nil, testenv.Logger(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.pub.Close)
	return e
}

// handler stores a shell handler of type typ whose body is script.
func (e *engineEnv) handler(name, file, typ, script string) {
	e.t.Helper()
	src := "#!/bin/sh\n# Engine test handler.\n#\n# **\n# handler_type: " + typ + "\n" + script + "\n"
	proc, ok := processors.ForFile(file, []byte(src))
	if !ok {
		e.t.Fatalf("no processor for %s", file)
	}
	meta, err := processors.ParseHeader(file, []byte(src))
	if err != nil {
		e.t.Fatal(err)
	}
	h := &kvmodel.Handler{Name: name, WorkflowName: "wf", SourceType: proc.Name(), SourceCode: src, Version: processors.Version([]byte(src)),
		HandlerType: meta.HandlerType, RequiredCapability: meta.RequiredCapability, Options: handlersync.HandlerOptions(file, meta)}
	if err := e.store.Create(e.t.Context(), h); err != nil {
		e.t.Fatal(err)
	}
}

// submit creates a request of job with args and queues its root map
// message, with the fresh copy a gateway sends when fresh is set.
func (e *engineEnv) submit(job string, fresh bool, args ...kvmodel.Pair) (*kvmodel.Request, queue.Message) {
	e.t.Helper()
	root := &kvmodel.Invocation{ID: kvmodel.NewID(), WorkflowName: "wf", StepName: job, Direction: kvmodel.DirectionMap,
		State: kvmodel.StatePending, CreatedTimestamp: kvmodel.Now()}
	req := &kvmodel.Request{ID: kvmodel.NewID(), WorkflowName: "wf", JobName: job, InvocationID: root.ID,
		State: kvmodel.StatePending, CreatedTimestamp: kvmodel.Now(), Keep: true}
	root.RequestID = req.ID
	var data []byte
	for _, p := range args {
		data = kvmodel.AppendPairItem(data, p)
	}
	if err := e.store.CreateRequest(e.t.Context(), req, root, data); err != nil {
		e.t.Fatal(err)
	}
	msg := queue.Message{JobClass: kvmodel.DirectionMap, WorkflowName: "wf", RequestID: req.ID, InvocationID: root.ID, StepName: job}
	if fresh {
		msg.Fresh = queue.NewFresh(kvmodel.PutOp(root).Value, kvmodel.PutOp(req).Value, req.Revision(), data)
	}
	e.publish(msg)
	return req, msg
}

func (e *engineEnv) publish(msg queue.Message) {
	e.t.Helper()
	if err := e.pub.Publish(kvmodel.MapTopic("wf", kvmodel.TopicCapability("")), msg.Encode()); err != nil {
		e.t.Fatal(err)
	}
}

// ended waits for req to end and returns it as stored.
func (e *engineEnv) ended(req *kvmodel.Request) *kvmodel.Request {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := &kvmodel.Request{WorkflowName: "wf", ID: req.ID}
		if err := e.store.Get(e.t.Context(), got); err != nil {
			e.t.Fatal(err)
		}
		if got.State != kvmodel.StatePending {
			return got
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("request %s (job %s) still pending after 60s", req.ID, req.JobName)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// result returns the pairs of req's root reduction, one JSON line each.
func (e *engineEnv) result(req *kvmodel.Request) string {
	e.t.Helper()
	data, err := e.store.ReadDataset(e.t.Context(), "wf", req.InvocationID, kvmodel.PostReduce)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for line := range strings.SplitSeq(strings.TrimSpace(string(data)), "\n") {
		var item struct {
			P json.RawMessage `json:"p"`
		}
		if err := json.Unmarshal([]byte(line), &item); err != nil {
			e.t.Fatalf("post_reduce item %q: %v", line, err)
		}
		out = append(out, string(item.P))
	}
	return strings.Join(out, " ")
}

// noKeepAlive reads nsqd's stats without leaving connections (and their
// goroutines, which goleak would report) behind.
var noKeepAlive = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// mapperRuns counts the mapper runs so far.
func (e *engineEnv) mapperRuns() int {
	b, _ := os.ReadFile(e.runs)
	return strings.Count(string(b), "run\n")
}

// settled waits until nsqd has handed out at least n messages on the
// runner's channel and none is waiting, deferred or in flight.
func (e *engineEnv) settled(n uint64) {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	topic := kvmodel.MapTopic("wf", kvmodel.TopicCapability(""))
	for {
		st, err := queue.FetchStats(e.t.Context(), noKeepAlive, e.nsqd)
		if err != nil {
			e.t.Fatal(err)
		}
		for _, tp := range st.Topics {
			if tp.Name != topic || len(tp.Channels) != 1 {
				continue
			}
			if ch := tp.Channels[0]; tp.Depth == 0 && ch.Depth == 0 && ch.InFlight == 0 && ch.Deferred == 0 && ch.MessageCount >= n {
				return
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("nsqd's map topic did not settle after %d messages within 30s: %+v", n, st.Topics)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestEngine(t *testing.T) {
	e := startEngine(t)
	pair := func(k string, v int) kvmodel.Pair {
		kj, _ := json.Marshal(k)
		return kvmodel.Pair{Key: kj, Value: json.RawMessage(fmt.Sprint(v))}
	}

	t.Run("each consumer holds twice as many messages as handler runs, once announced too", func(t *testing.T) {
		// The registry announcement resumes the consumers (as after a lost
		// lease); a resume once set Concurrency, half of what consume sets.
		want := 2 * NewOptions().Concurrency
		deadline := time.Now().Add(10 * time.Second)
		for {
			resp, err := noKeepAlive.Get("http://" + e.nsqd + "/stats?format=json&topic=" + kvmodel.MapTopic("wf", kvmodel.TopicCapability("")))
			if err != nil {
				t.Fatal(err)
			}
			var st struct {
				Topics []struct {
					Channels []struct {
						Clients []struct {
							Ready int `json:"ready_count"`
						} `json:"clients"`
					} `json:"channels"`
				} `json:"topics"`
			}
			err = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			got := -1
			if len(st.Topics) == 1 && len(st.Topics[0].Channels) == 1 && len(st.Topics[0].Channels[0].Clients) == 1 {
				got = st.Topics[0].Channels[0].Clients[0].Ready
			}
			if got == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the map topic's consumer is ready for %d messages, want %d", got, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	t.Run("a leaf request is mapped and reduced, and ends done with the reducer's pairs", func(t *testing.T) {
		for _, fresh := range []bool{false, true} {
			req, _ := e.submit("leaf", fresh, pair("a", 1), pair("b", 2), pair("a", 3))
			got := e.ended(req)
			if got.State != kvmodel.StateDone || !got.IsDone || got.FailedInvocationID != nil {
				t.Fatalf("fresh=%v: request %+v, want done", fresh, got)
			}
			if res := e.result(req); res != `["a",[1,3]] ["b",[2]]` {
				t.Fatalf("fresh=%v: result %s", fresh, res)
			}
		}
	})

	t.Run("a branch's children are reduced and counted into it, and its reduction ends the request", func(t *testing.T) {
		before := e.mapperRuns()
		req, _ := e.submit("split", true, pair("a", 1), pair("b", 2), pair("a", 3))
		if got := e.ended(req); got.State != kvmodel.StateDone {
			t.Fatalf("request %+v, want done", got)
		}
		// Each child returns its one argument; each reduces to [k,[v]]; the
		// root's reducer gets each key's child reductions in child order.
		if res := e.result(req); res != `["a",[[1],[3]]] ["b",[[2]]]` {
			t.Fatalf("result %s", res)
		}
		if runs := e.mapperRuns() - before; runs != 4 {
			t.Fatalf("%d mapper runs, want 4 (the branch and its three children)", runs)
		}
		root := &kvmodel.Invocation{WorkflowName: "wf", ID: req.InvocationID}
		if err := e.store.Get(t.Context(), root); err != nil {
			t.Fatal(err)
		}
		if root.MappedCount == nil || *root.MappedCount != 3 || root.MappedWaiting == nil || *root.MappedWaiting != 0 {
			t.Fatalf("root counters %v/%v, want 3 mapped, 0 waiting", root.MappedCount, root.MappedWaiting)
		}
	})

	t.Run("a failing mapper fails its invocation and its request, naming the handler", func(t *testing.T) {
		req, _ := e.submit("broken", true, pair("a", 1))
		got := e.ended(req)
		if got.State != kvmodel.StateFailed || got.FailedInvocationID == nil || *got.FailedInvocationID != req.InvocationID {
			t.Fatalf("request %+v, want failed by its root", got)
		}
		root := &kvmodel.Invocation{WorkflowName: "wf", ID: req.InvocationID}
		if err := e.store.Get(t.Context(), root); err != nil {
			t.Fatal(err)
		}
		f := root.Failure
		if root.State != kvmodel.StateFailed || f == nil || f.Kind != kvmodel.FailureHandlerFailed || f.Handler != "map_fail" ||
			f.ExitCode == nil || *f.ExitCode != 3 || !strings.Contains(f.StderrTail, "no good") {
			t.Fatalf("root invocation %s with failure %+v, want a handler failure of map_fail, exit 3, its stderr", root.State, f)
		}
	})

	t.Run("messages delivered again after their request ended run nothing and write nothing", func(t *testing.T) {
		req, msg := e.submit("split", false, pair("a", 1), pair("b", 2))
		done := e.ended(req)
		e.settled(0)
		runs := e.mapperRuns()
		stats := func() (uint64, error) {
			st, err := queue.FetchStats(t.Context(), noKeepAlive, e.nsqd)
			if err != nil {
				return 0, err
			}
			for _, tp := range st.Topics {
				if tp.Name == kvmodel.MapTopic("wf", kvmodel.TopicCapability("")) && len(tp.Channels) == 1 {
					return tp.Channels[0].MessageCount, nil
				}
			}
			return 0, fmt.Errorf("no map topic in nsqd's stats")
		}
		n, err := stats()
		if err != nil {
			t.Fatal(err)
		}
		e.publish(msg)
		msg.Fresh = nil
		e.publish(msg)
		e.settled(n + 2)
		if got := e.mapperRuns(); got != runs {
			t.Fatalf("%d mapper runs after the duplicates, want %d", got, runs)
		}
		again := &kvmodel.Request{WorkflowName: "wf", ID: req.ID}
		if err := e.store.Get(t.Context(), again); err != nil {
			t.Fatal(err)
		}
		if again.Revision() != done.Revision() {
			t.Fatalf("the request was written again (revision %d, was %d)", again.Revision(), done.Revision())
		}
	})
}
