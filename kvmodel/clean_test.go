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
