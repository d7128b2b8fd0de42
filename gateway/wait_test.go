package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jobx/jobx/internal/testenv"
	"github.com/jobx/jobx/kvmodel"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// rereads counts the gateway's "reading the request again" log lines and
// passes every record on to next.
type rereads struct {
	slog.Handler
	n    *atomic.Int32
	seen chan struct{} // gets a value per re-read
}

func (h rereads) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "the requests' watch fell behind a compaction of etcd's history; reading the waited-for requests again" {
		h.n.Add(1)
		select {
		case h.seen <- struct{}{}:
		default:
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h rereads) WithAttrs(as []slog.Attr) slog.Handler {
	return rereads{h.Handler.WithAttrs(as), h.n, h.seen}
}

func (h rereads) WithGroup(name string) slog.Handler {
	return rereads{h.Handler.WithGroup(name), h.n, h.seen}
}

// compactAll writes a key twice and compacts etcd's history to the
// current revision, so every watch that resumes from before it gets
// ErrCompacted.
func compactAll(t *testing.T, cli *clientv3.Client) int64 {
	t.Helper()
	ctx := t.Context()
	var rev int64
	for range 2 {
		resp, err := cli.Put(ctx, "/test/filler", "x")
		if err != nil {
			t.Fatal(err)
		}
		rev = resp.Header.Revision
	}
	start := time.Now()
	if _, err := cli.Compact(ctx, rev, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	t.Logf("compacted etcd's history to revision %d in %s", rev, time.Since(start).Round(time.Microsecond))
	return rev
}

// A blocking wait whose watch resumes past a compaction of etcd's history
// (the gateway lost its etcd connection meanwhile) reads the request again
// and still gets its end: when the request ended before the compaction
// (the read finds it done) and when it ends after the read (the watch
// resumed from before the read sees it). A request nobody waits for, ended
// meanwhile, ends no wait.
func TestBlockingWaitSurvivesACompaction(t *testing.T) {
	for _, tc := range []struct {
		name       string
		endDuring  bool // the request ends while the gateway is cut off
		finalState string
	}{
		{"a request that ended before the compaction is read done", true, kvmodel.StateDone},
		{"a request that ends after the read is seen by the resumed watch", false, kvmodel.StateFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			endpoint, cli := testenv.Etcd(t)
			relay, gwCli := testenv.EtcdThrough(t, endpoint)
			n := &atomic.Int32{}
			seen := make(chan struct{}, 1)
			log := slog.New(rereads{testenv.Logger(t).Handler(), n, seen})
			st := kvmodel.NewStore(cli)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			ws, err := startWaiters(ctx, gwCli, log)
			if err != nil {
				t.Fatal(err)
			}
			defer ws.close()

			req := &kvmodel.Request{ID: kvmodel.NewID(), WorkflowName: "wf", InvocationID: kvmodel.NewID(), IsBlocking: true, State: kvmodel.StatePending}
			other := &kvmodel.Request{ID: kvmodel.NewID(), WorkflowName: "wf", InvocationID: kvmodel.NewID(), State: kvmodel.StatePending}
			wait, err := ws.add(req)
			if err != nil {
				t.Fatal(err)
			}
			defer ws.remove(req)
			for _, r := range []*kvmodel.Request{req, other} {
				if err := st.Create(ctx, r); err != nil {
					t.Fatal(err)
				}
			}
			type result struct {
				req *kvmodel.Request
				err error
			}
			res := make(chan result, 1)
			go func() {
				r, err := wait.wait(ctx)
				res <- result{r, err}
			}()

			relay.Cut()
			req.State = "running"
			if tc.endDuring {
				req.IsDone, req.State = true, tc.finalState
			}
			other.IsDone, other.State = true, kvmodel.StateDone
			for _, r := range []*kvmodel.Request{req, other} {
				if err := st.Update(ctx, r); err != nil {
					t.Fatal(err)
				}
			}
			compactAll(t, cli)
			relay.Heal()

			if !tc.endDuring {
				select {
				case <-seen:
				case r := <-res:
					t.Fatalf("the wait ended before the request did: %+v, %v", r.req, r.err)
				case <-ctx.Done():
					t.Fatal("the wait never read the request again")
				}
				time.Sleep(200 * time.Millisecond) // let the read and the new watch go first
				req.IsDone, req.State = true, tc.finalState
				if err := st.Update(ctx, req); err != nil {
					t.Fatal(err)
				}
			}
			r := <-res
			if r.err != nil {
				t.Fatalf("wait: %v", r.err)
			}
			if r.req.ID != req.ID || !r.req.IsDone || r.req.State != tc.finalState {
				t.Fatalf("wait returned request %s done=%v state=%q, want %s done in state %q", r.req.ID, r.req.IsDone, r.req.State, req.ID, tc.finalState)
			}
			if n.Load() != 1 {
				t.Errorf("the requests were read again %d times, want once", n.Load())
			}
		})
	}
}

// Many blocking waits share the gateway's one watch: each gets its own
// request's end, whatever order the requests end in; a deleted request ends
// its wait in an error; and closing the gateway's waits ends the ones left
// and refuses new ones.
func TestWaitsShareOneWatch(t *testing.T) {
	_, cli := testenv.Etcd(t)
	st := kvmodel.NewStore(cli)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws, err := startWaiters(ctx, cli, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	const n = 50
	reqs := make([]*kvmodel.Request, n)
	waits := make([]*waiter, n)
	for i := range reqs {
		reqs[i] = &kvmodel.Request{ID: kvmodel.NewID(), WorkflowName: "wf", InvocationID: kvmodel.NewID(), IsBlocking: true, State: kvmodel.StatePending}
		if waits[i], err = ws.add(reqs[i]); err != nil {
			t.Fatal(err)
		}
		if err := st.Create(ctx, reqs[i]); err != nil {
			t.Fatal(err)
		}
	}
	// End them last first, each in a state of its own; the last one is deleted.
	for i := n - 1; i >= 0; i-- {
		r := reqs[i]
		if i == n-1 {
			if _, err := cli.Delete(ctx, kvmodel.Key(r)); err != nil {
				t.Fatal(err)
			}
			continue
		}
		r.IsDone, r.State = true, fmt.Sprintf("state-%d", i)
		if err := st.Update(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for i, w := range waits {
		got, err := w.wait(ctx)
		if i == n-1 {
			if err == nil || !strings.Contains(err.Error(), "deleted") {
				t.Errorf("wait for the deleted request: %+v, %v; want a deletion error", got, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("wait %d: %v", i, err)
		}
		if got.ID != reqs[i].ID || got.State != fmt.Sprintf("state-%d", i) {
			t.Errorf("wait %d got request %s in state %q, want %s in state-%d", i, got.ID, got.State, reqs[i].ID, i)
		}
		ws.remove(reqs[i])
	}
	if len(ws.byKey) != 1 {
		t.Errorf("%d waits registered after removing all but one, want 1", len(ws.byKey))
	}

	ws.close()
	if _, err := waits[n-1].wait(ctx); err == nil {
		t.Error("a wait still registered at close did not end in an error")
	}
	if _, err := ws.add(&kvmodel.Request{ID: kvmodel.NewID(), WorkflowName: "wf"}); err == nil {
		t.Error("a closed gateway's waits took a new one")
	}
}

// A done request that carries its result is answered from it, without the
// dataset; one that does not (a large result) is answered from its dataset.
func TestResultFromTheRequestOrItsDataset(t *testing.T) {
	_, cli := testenv.Etcd(t)
	st := kvmodel.NewStore(cli)
	g := &Gateway{log: testenv.Logger(t), store: st}
	ctx := t.Context()

	carried := &kvmodel.Request{ID: kvmodel.NewID(), WorkflowName: "wf", InvocationID: kvmodel.NewID(), Result: []byte(`[["a",1],["b",[2]]]`)}
	got, err := g.result(ctx, carried) // no dataset was written: a read would fail
	if err != nil || len(got) != 2 || string(got[0]) != `["a",1]` || string(got[1]) != `["b",[2]]` {
		t.Fatalf("carried result: %s, %v", got, err)
	}

	stored := &kvmodel.Request{ID: kvmodel.NewID(), WorkflowName: "wf", InvocationID: kvmodel.NewID()}
	data := kvmodel.AppendPairItem(nil, kvmodel.Pair{Key: []byte(`"c"`), Value: []byte(`3`)})
	if err := st.Apply(ctx, kvmodel.DatasetOps("wf", stored.InvocationID, kvmodel.PostReduce, data)); err != nil {
		t.Fatal(err)
	}
	got, err = g.result(ctx, stored)
	if err != nil || len(got) != 1 || string(got[0]) != `["c",3]` {
		t.Fatalf("dataset result: %s, %v", got, err)
	}
}
