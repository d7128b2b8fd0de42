package runner

import (
	"context"
	"testing"
	"time"

	"github.com/jobx/jobx/internal/testenv"
	"github.com/jobx/jobx/kvmodel"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// createEnded creates n requests of workflow wf and schedules each one's
// cleanup at due; it returns their ids.
func createEnded(t *testing.T, st *kvmodel.Store, wf string, n int, due time.Time) []string {
	t.Helper()
	var ids []string
	for range n {
		root := &kvmodel.Invocation{ID: kvmodel.NewID(), WorkflowName: wf, StepName: "s", Direction: kvmodel.DirectionMap, State: kvmodel.StateDone}
		req := &kvmodel.Request{ID: kvmodel.NewID(), WorkflowName: wf, JobName: "j", InvocationID: root.ID, State: kvmodel.StateDone, IsDone: true}
		root.RequestID = req.ID
		if err := st.CreateRequest(t.Context(), req, root, kvmodel.AppendPairItem(nil, kvmodel.Pair{Key: []byte(`"k"`), Value: []byte(`1`)})); err != nil {
			t.Fatal(err)
		}
		if err := st.Apply(t.Context(), []kvmodel.Op{kvmodel.CleanupOp(wf, req.ID, due)}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, req.ID)
	}
	return ids
}

func countPrefix(t *testing.T, cli *clientv3.Client, prefix string) int64 {
	t.Helper()
	r, err := cli.Get(t.Context(), prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return r.Count
}

// One pass carries out every cleanup that is due, however many pages they
// fill, and leaves those not yet due; the history stays within its bound.
func TestCleanerPassCarriesOutEveryDueCleanup(t *testing.T) {
	_, cli := testenv.Etcd(t)
	st := kvmodel.NewStore(cli)
	due := createEnded(t, st, "wf", kvmodel.MaxRecent+30, time.Now().Add(-time.Second))
	later := createEnded(t, st, "wf", 1, time.Now().Add(time.Hour))

	c := &cleaner{store: st, log: testenv.Logger(t), page: 20, workers: 4}
	c.pass(t.Context())

	if left, err := st.DueCleanups(t.Context(), time.Now(), 1000); err != nil || len(left) != 0 {
		t.Fatalf("due cleanups left after one pass over %d: %d (%v)", len(due), len(left), err)
	}
	for _, id := range due {
		if err := st.Get(t.Context(), &kvmodel.Request{WorkflowName: "wf", ID: id}); err == nil {
			t.Fatalf("request %s, due for cleanup, is still there", id)
		}
	}
	if err := st.Get(t.Context(), &kvmodel.Request{WorkflowName: "wf", ID: later[0]}); err != nil {
		t.Fatalf("request %s, whose cleanup is not due, is gone: %v", later[0], err)
	}
	if n := countPrefix(t, cli, kvmodel.RecentPrefix("wf")); n == 0 || n > kvmodel.MaxRecent {
		t.Fatalf("the history holds %d summaries, want 1 to %d", n, kvmodel.MaxRecent)
	}
	if n := countPrefix(t, cli, kvmodel.EntityRoot+(&kvmodel.Invocation{}).Class()+"/"); n != 1 {
		t.Fatalf("%d invocations left, want the one of the request not yet due", n)
	}
}

// A cleanup that fails every time neither stops the others nor keeps a
// pass going: a page that cleans nothing ends the pass, and the next pass
// tries again.
func TestCleanerPassEndsOnAPageThatCleansNothing(t *testing.T) {
	_, cli := testenv.Etcd(t)
	st := kvmodel.NewStore(cli)
	past := time.Now().Add(-time.Second)
	poison := func(n int) []string {
		ids := createEnded(t, st, "wf", n, past)
		for _, id := range ids {
			if _, err := cli.Put(t.Context(), kvmodel.Key(&kvmodel.Request{WorkflowName: "wf", ID: id}), "not json"); err != nil {
				t.Fatal(err)
			}
		}
		return ids
	}
	bad := poison(1)
	good := createEnded(t, st, "wf", 12, past)

	c := &cleaner{store: st, log: testenv.Logger(t), page: 5, workers: 2}
	c.pass(t.Context())
	for _, id := range good {
		if err := st.Get(t.Context(), &kvmodel.Request{WorkflowName: "wf", ID: id}); err == nil {
			t.Fatalf("request %s is still there beside a cleanup that fails", id)
		}
	}
	left, err := st.DueCleanups(t.Context(), time.Now(), 100)
	if err != nil || len(left) != 1 || left[0].Request != bad[0] {
		t.Fatalf("due cleanups left: %v (%v), want only the failing one's", left, err)
	}

	// A whole page of failing cleanups: the pass returns.
	poison(5)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan struct{})
	go func() { c.pass(ctx); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("a pass over a page of failing cleanups did not return")
	}
}
