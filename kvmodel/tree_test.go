package kvmodel_test

import (
	"context"
	"testing"

	"github.com/jobx/jobx/kvmodel"
)

// TestWalkTreeVisitsEveryMapWithItsReduction builds a root that branched to
// 300 children (more than one transaction's worth) of which some are done
// and reduced, and checks what the walk reports for each.
func TestWalkTreeVisitsEveryMapWithItsReduction(t *testing.T) {
	st, _ := newStore(t)
	ctx := context.Background()
	const wf, n = "wf", 300
	root := &kvmodel.Invocation{ID: kvmodel.NewID(), WorkflowName: wf, Direction: kvmodel.DirectionMap, State: kvmodel.StateDone,
		MappedCount: kvmodel.IntPtr(n), MappedWaiting: kvmodel.IntPtr(n / 2), MappedStep: "leaf"}
	ops := []kvmodel.Op{kvmodel.PutOp(root)}
	var ids []string
	for i := range n {
		c := &kvmodel.Invocation{ID: kvmodel.ChildID(root.ID, i), WorkflowName: wf, ParentInvocationID: kvmodel.StrPtr(root.ID),
			Direction: kvmodel.DirectionMap, State: kvmodel.StatePending}
		ids = append(ids, c.ID)
		if i%2 == 0 {
			c.State = kvmodel.StateDone
			red := &kvmodel.Invocation{ID: kvmodel.ReduceID(c.ID), WorkflowName: wf, ParentInvocationID: kvmodel.StrPtr(c.ID),
				Direction: kvmodel.DirectionReduce, State: kvmodel.StateDone}
			ops = append(ops, kvmodel.PutOp(red), kvmodel.Op{Key: kvmodel.CountedKey(wf, c.ID), Value: []byte("{}")})
		}
		ops = append(ops, kvmodel.PutOp(c))
	}
	ops = append(ops, kvmodel.MappedOps(wf, root.ID, ids)...)
	if err := st.Apply(ctx, ops); err != nil {
		t.Fatal(err)
	}
	seen := map[string]kvmodel.Node{}
	if err := st.WalkTree(ctx, wf, root.ID, func(nd kvmodel.Node) error { seen[nd.Map.ID] = nd; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(seen) != n+1 {
		t.Fatalf("visited %d map invocations, want %d", len(seen), n+1)
	}
	if got := seen[root.ID]; len(got.Children) != n || got.Reduce != nil {
		t.Fatalf("root: %d children, reduce %v", len(got.Children), got.Reduce)
	}
	for i, id := range ids {
		nd := seen[id]
		done := i%2 == 0
		if (nd.Reduce != nil) != done || nd.Counted != done || (nd.Map.State == kvmodel.StateDone) != done {
			t.Fatalf("child %d: reduce %v, counted %v, state %s", i, nd.Reduce, nd.Counted, nd.Map.State)
		}
	}
}
