package runner

import (
	"context"
	"errors"
	"testing"

	"github.com/jobx/jobx/internal/testenv"
	"github.com/jobx/jobx/kvmodel"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Leaves committed in one batch with their parent's decrement: a leaf whose
// own condition fails is left out (its siblings, and a child committed
// elsewhere, still commit and count), a leaf counted before is not counted
// again, and the batch that brings the parent to zero creates its reduce
// invocation and reports it.
func TestLeafBatchCommitsWithTheParentsDecrement(t *testing.T) {
	_, cli := testenv.Etcd(t)
	store := kvmodel.NewStore(cli)
	ctx := context.Background()
	const wf = "wf"
	parent := &kvmodel.Invocation{ID: kvmodel.NewID(), WorkflowName: wf, RequestID: "r", Direction: kvmodel.DirectionMap,
		StepName: "split", State: kvmodel.StateDone, MappedCount: kvmodel.IntPtr(5), MappedWaiting: kvmodel.IntPtr(5)}
	if err := store.Apply(ctx, []kvmodel.Op{kvmodel.PutOp(parent)}); err != nil {
		t.Fatal(err)
	}
	c := &counters{store: store, parents: map[string]*counterState{}}
	req := &kvmodel.Request{ID: kvmodel.NewID(), WorkflowName: wf, InvocationID: parent.ID, State: kvmodel.StatePending}
	if err := store.Create(ctx, req); err != nil {
		t.Fatal(err)
	}
	// leaf i is child i's fused leaf commit, decided on child i as stored
	// (holds) or as at a revision it is no longer at.
	leaf := func(i int, holds bool) *leafCommit {
		id := kvmodel.ChildID(parent.ID, i)
		m := &kvmodel.Invocation{ID: id, WorkflowName: wf, RequestID: req.ID, ParentInvocationID: kvmodel.StrPtr(parent.ID),
			StepName: "chunk", Direction: kvmodel.DirectionMap, State: kvmodel.StatePending}
		if err := store.Create(ctx, m); err != nil && !errors.Is(err, kvmodel.ErrExists) {
			t.Fatal(err)
		}
		if err := store.Get(ctx, m); err != nil {
			t.Fatal(err)
		}
		seen := kvmodel.Seen{Invocation: m, Request: req}
		if !holds {
			stale := *m
			stale.SetRevision(m.Revision() - 1)
			seen.Invocation = &stale
		}
		done := *m
		done.State = kvmodel.StateDone
		red := kvmodel.NewReduceInvocation(&done)
		red.State = kvmodel.StateDone
		return &leafCommit{child: id, tr: kvmodel.FusedLeaf(seen, &done, nil, red, []byte(`["k",1]`+"\n"), 0)}
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

	// One batch: 0 and 2 hold, 1 does not, a duplicate of 0, and child 4
	// whose reduction was committed elsewhere (a decrement only).
	l0, l1, l2 := leaf(0, true), leaf(1, false), leaf(2, true)
	dup := leaf(0, true)
	plain := kvmodel.ChildID(parent.ID, 4)
	st := &counterState{}
	b := &counterBatch{children: []string{l0.child, l1.child, l2.child, dup.child, plain}, leaves: []*leafCommit{l0, l1, l2, dup}}
	zero, err := c.commitBatch(ctx, wf, parent.ID, st, b)
	if err != nil || zero != nil {
		t.Fatalf("first batch: zero %v, err %v", zero, err)
	}
	if !l0.committed || l1.committed || !l2.committed || dup.committed {
		t.Fatalf("committed: %v %v %v, duplicate %v; want true false true, false", l0.committed, l1.committed, l2.committed, dup.committed)
	}
	if resp, err := cli.Get(ctx, kvmodel.CountedKey(wf, plain), clientv3.WithCountOnly()); err != nil || resp.Count != 1 {
		t.Fatalf("child 4 not counted: %v", err)
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
