package kvmodel_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jobx/jobx/kvmodel"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// A due cleanup leaves only the request's summary in its workflow's
// history: the request, its invocations and the queue entry go; a kept
// request stays and so does nothing of the entry; a request already gone
// takes its entry with it.
func TestCleanCarriesOutADueCleanup(t *testing.T) {
	st, cli := newStore(t)
	ctx := context.Background()
	due := func(t *testing.T, req *kvmodel.Request) kvmodel.DueCleanup {
		t.Helper()
		if err := st.Apply(ctx, []kvmodel.Op{kvmodel.CleanupOp(req.WorkflowName, req.ID, time.Now().Add(-time.Second))}); err != nil {
			t.Fatal(err)
		}
		cs, err := st.DueCleanups(ctx, time.Now(), 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			if c.Request == req.ID {
				return c
			}
		}
		t.Fatalf("request %s is not due", req.ID)
		return kvmodel.DueCleanup{}
	}
	queued := func(c kvmodel.DueCleanup) bool {
		resp, err := cli.Get(ctx, c.Key, clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		return resp.Count > 0
	}

	t.Run("a finished request goes with its queue entry and leaves its summary", func(t *testing.T) {
		req, _ := started(t, st)
		c := due(t, req)
		n, summarized, err := st.Clean(ctx, c)
		if err != nil || n != 1 || !summarized {
			t.Fatalf("cleaned %d invocations, summarized %v: %v", n, summarized, err)
		}
		resp, _ := cli.Get(ctx, "/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
		for _, kv := range resp.Kvs {
			if strings.Contains(string(kv.Key), req.ID) && !strings.HasPrefix(string(kv.Key), kvmodel.RecentPrefix("wf")) {
				t.Errorf("left behind: %s", kv.Key)
			}
		}
		if queued(c) {
			t.Error("the cleanup is still queued")
		}
	})

	t.Run("a kept request stays and its queue entry goes", func(t *testing.T) {
		req, _ := started(t, st)
		req.Keep = true
		if err := st.Update(ctx, req); err != nil {
			t.Fatal(err)
		}
		c := due(t, req)
		if n, summarized, err := st.Clean(ctx, c); err != nil || n != 0 || summarized {
			t.Fatalf("cleaned %d invocations, summarized %v: %v", n, summarized, err)
		}
		if err := st.Get(ctx, &kvmodel.Request{WorkflowName: "wf", ID: req.ID}); err != nil {
			t.Fatalf("the kept request: %v", err)
		}
		if queued(c) {
			t.Error("the cleanup is still queued")
		}
	})

	t.Run("a request already gone takes its queue entry with it", func(t *testing.T) {
		c := due(t, &kvmodel.Request{WorkflowName: "wf", ID: kvmodel.NewID()})
		if n, summarized, err := st.Clean(ctx, c); err != nil || n != 0 || summarized {
			t.Fatalf("cleaned %d invocations, summarized %v: %v", n, summarized, err)
		}
		if queued(c) {
			t.Error("the cleanup is still queued")
		}
	})
}

// CleanMany carries out a batch of cleanups as Clean carries out each: a
// finished request goes with its whole tree and leaves its summary; a
// request too large to share a transaction is cleaned alone; a kept
// request stays and a request already gone takes its queue entry with it;
// one that cannot be read is reported and stays queued, without stopping
// the others.
func TestCleanManyCarriesOutEachCleanupAsCleanWould(t *testing.T) {
	st, cli := newStore(t)
	ctx := context.Background()

	leaf, _ := started(t, st)
	root, children := branched(t, st, 3)
	// A second level under the first child.
	req := get(t, st, &kvmodel.Request{WorkflowName: "wf", ID: root.RequestID})
	child := get(t, st, &kvmodel.Invocation{WorkflowName: "wf", ID: children[0]})
	grand := []*kvmodel.Invocation{{ID: kvmodel.ChildID(child.ID, 0), WorkflowName: "wf", RequestID: req.ID,
		ParentInvocationID: kvmodel.StrPtr(child.ID), StepName: "chunk", Direction: kvmodel.DirectionMap, State: kvmodel.StatePending}}
	if _, _, err := st.RecordBranch(ctx, kvmodel.Seen{Invocation: child, Request: req}, done(child), "chunk", grand, make([][]byte, 1)); err != nil {
		t.Fatal(err)
	}
	big, bigChildren := branched(t, st, kvmodel.MaxTxnOps/5+1) // more deletes than one transaction takes
	kept, _ := started(t, st)
	kept.Keep = true
	if err := st.Update(ctx, kept); err != nil {
		t.Fatal(err)
	}
	bad, _ := started(t, st)
	if _, err := cli.Put(ctx, kvmodel.Key(bad), "not json"); err != nil {
		t.Fatal(err)
	}
	gone := kvmodel.NewID()

	past := time.Now().Add(-time.Second)
	for _, id := range []string{leaf.ID, req.ID, big.RequestID, kept.ID, bad.ID, gone} {
		if err := st.Apply(ctx, []kvmodel.Op{kvmodel.CleanupOp("wf", id, past)}); err != nil {
			t.Fatal(err)
		}
	}
	due, err := st.DueCleanups(ctx, time.Now(), 100)
	if err != nil || len(due) != 6 {
		t.Fatalf("due: %d (%v), want 6", len(due), err)
	}
	cleaned, summarized, errs := st.CleanMany(ctx, due)
	if cleaned != 5 || !summarized["wf"] || len(errs) != 1 || !strings.Contains(errs[0].Error(), bad.ID) {
		t.Fatalf("cleaned %d, summarized %v, errors %v; want 5, wf, one naming request %s", cleaned, summarized, errs, bad.ID)
	}

	resp, err := cli.Get(ctx, "/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	var summaries int
	ids := append([]string{leaf.ID, leaf.InvocationID, req.ID, root.ID, grand[0].ID, big.RequestID, big.ID, gone}, children...)
	for _, kv := range resp.Kvs {
		key := string(kv.Key)
		for _, id := range append(ids, bigChildren...) {
			if !strings.Contains(key, id) {
				continue
			}
			if strings.HasPrefix(key, kvmodel.RecentPrefix("wf")) {
				summaries++
			} else {
				t.Errorf("left behind: %s", key)
			}
		}
	}
	if summaries != 3 {
		t.Errorf("%d summaries in the history, want those of the 3 requests removed", summaries)
	}
	if err := st.Get(ctx, &kvmodel.Request{WorkflowName: "wf", ID: kept.ID}); err != nil {
		t.Errorf("the kept request: %v", err)
	}
	left, err := st.DueCleanups(ctx, time.Now(), 100)
	if err != nil || len(left) != 1 || left[0].Request != bad.ID {
		t.Fatalf("still queued: %v (%v), want only request %s's", left, err, bad.ID)
	}
}
