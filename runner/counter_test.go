package runner

import (
	"context"
	"testing"
	"time"

	"github.com/jobx/jobx/internal/embedded"
	"github.com/jobx/jobx/kvmodel"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// etcdClient starts an embedded etcd (internal/testenv imports this
// package, so it cannot be used here).
func etcdClient(t *testing.T) *clientv3.Client {
	t.Helper()
	e, err := embedded.StartEtcd(context.Background(), embedded.EtcdOptions{
		Dir: t.TempDir(), ClientAddr: "127.0.0.1:0", PeerAddr: "127.0.0.1:0", Fast: true,
	})
	if err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	t.Cleanup(e.Close)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{e.Endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// Leaves committed in one batch with their parent's decrement: a leaf whose
// own condition fails is left out (its siblings still commit and count),
// a leaf counted before is not counted again, and the batch that brings
// the parent to zero creates its reduce invocation and reports it once.
func TestLeafBatchCommitsWithTheParentsDecrement(t *testing.T) {
	cli := etcdClient(t)
	store := kvmodel.NewStore(cli)
	ctx := context.Background()
	const wf = "wf"
	parent := &kvmodel.Invocation{ID: kvmodel.NewID(), WorkflowName: wf, RequestID: "r", Direction: kvmodel.DirectionMap,
		StepName: "split", State: kvmodel.StateDone, MappedCount: kvmodel.IntPtr(4), MappedWaiting: kvmodel.IntPtr(4)}
	if err := store.Apply(ctx, []kvmodel.Op{kvmodel.PutOp(parent)}); err != nil {
		t.Fatal(err)
	}
	c := &counters{store: store, parents: map[string]*counterState{}}
	leaf := func(i int, holds bool) *leafCommit {
		id := kvmodel.ChildID(parent.ID, i)
		cmp := clientv3.Compare(clientv3.CreateRevision("/test/guard"), "=", 0)
		if !holds {
			cmp = clientv3.Compare(clientv3.CreateRevision("/test/guard"), "!=", 0)
		}
		return &leafCommit{child: id, cmps: []clientv3.Cmp{cmp},
			ops: kvmodel.DatasetOps(wf, id, kvmodel.PostReduce, []byte(`["k",1]`+"\n"))}
	}
	committed := func(l *leafCommit) bool {
		resp, err := cli.Get(ctx, kvmodel.DatasetPrefix(wf, l.child, kvmodel.PostReduce), clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		return resp.Count > 0
	}
	waiting := func() int {
		p := &kvmodel.Invocation{WorkflowName: wf, ID: parent.ID}
		if err := store.Get(ctx, p); err != nil {
			t.Fatal(err)
		}
		return *p.MappedWaiting
	}

	// One batch: 0 and 2 hold, 1 does not, and a duplicate of 0.
	l0, l1, l2 := leaf(0, true), leaf(1, false), leaf(2, true)
	dup := leaf(0, true)
	st := &counterState{}
	b := &counterBatch{children: []string{l0.child, l1.child, l2.child, dup.child}, leaves: []*leafCommit{l0, l1, l2, dup}}
	zero, err := c.commitBatch(ctx, wf, parent.ID, st, b)
	if err != nil || zero != nil {
		t.Fatalf("first batch: zero %v, err %v", zero, err)
	}
	if !l0.committed || l1.committed || !l2.committed || dup.committed {
		t.Fatalf("committed: %v %v %v, duplicate %v; want true false true, false", l0.committed, l1.committed, l2.committed, dup.committed)
	}
	if !committed(l0) || committed(l1) || !committed(l2) || waiting() != 2 {
		t.Fatalf("stored: %v %v %v, waiting %d; want true false true, 2", committed(l0), committed(l1), committed(l2), waiting())
	}

	// A redelivered leaf 0 (counted already) and the last two: zero, once.
	again, l1, l3 := leaf(0, true), leaf(1, true), leaf(3, true)
	b = &counterBatch{children: []string{again.child, l1.child, l3.child}, leaves: []*leafCommit{again, l1, l3}}
	zero, err = c.commitBatch(ctx, wf, parent.ID, &counterState{}, b)
	if err != nil || zero == nil || zero.ID != parent.ID {
		t.Fatalf("last batch: zero %v, err %v; want the parent", zero, err)
	}
	if again.committed || !l1.committed || !l3.committed || waiting() != 0 {
		t.Fatalf("committed: again %v, 1 %v, 3 %v; waiting %d", again.committed, l1.committed, l3.committed, waiting())
	}
	red := &kvmodel.Invocation{WorkflowName: wf, ID: kvmodel.ReduceID(parent.ID)}
	if err := store.Get(ctx, red); err != nil || red.State != kvmodel.StatePending {
		t.Fatalf("parent's reduce invocation: %+v, %v", red, err)
	}
}
