package runner

import (
	"context"
	"errors"

	"github.com/jobx/jobx/kvmodel"
)

// ensureFollowUps re-publishes what a done invocation should have queued,
// for the case where a runner died between its commit and its publish.
// Everything it publishes is idempotent to process.
func (r *Runner) ensureFollowUps(ctx context.Context, t *task) error {
	wf := t.inv.WorkflowName
	if t.inv.Direction == kvmodel.DirectionMap {
		if t.inv.IsBranch() && *t.inv.MappedCount > 0 {
			step, err := r.catalog.Step(ctx, wf, t.inv.MappedStep)
			if err != nil {
				return err
			}
			children, err := r.store.Children(ctx, wf, t.inv.ID)
			if err != nil {
				return err
			}
			var todo []string
			for _, c := range children {
				_, ok, err := r.pending(ctx, wf, c)
				if err != nil {
					return err
				}
				if ok {
					todo = append(todo, c)
				}
			}
			return r.publishMaps(ctx, t.inv.RequestID, wf, step, todo)
		}
		red, ok, err := r.pending(ctx, wf, kvmodel.ReduceID(t.inv.ID))
		if err != nil {
			return err
		}
		if ok {
			return r.publishReduce(ctx, t.inv, red)
		}
		if red != nil && red.State == kvmodel.StateDone {
			// Reduced by the same runner in the map's commit (fused.go).
			return r.reducedFollowUps(ctx, t.inv)
		}
		return nil
	}
	m := &kvmodel.Invocation{WorkflowName: wf, ID: t.inv.Parent()}
	if err := r.store.Get(ctx, m); err != nil {
		return err
	}
	return r.reducedFollowUps(ctx, m)
}

// pending reads invocation id: nil when it does not exist, and whether it
// is pending.
func (r *Runner) pending(ctx context.Context, wf, id string) (*kvmodel.Invocation, bool, error) {
	inv := &kvmodel.Invocation{WorkflowName: wf, ID: id}
	err := r.store.Get(ctx, inv)
	if errors.Is(err, kvmodel.ErrNotFound) {
		return nil, false, nil
	}
	return inv, err == nil && inv.State == kvmodel.StatePending, err
}

// reducedFollowUps re-drives what the reduction of map invocation m should
// have queued: its parent's counter and, when that reached 0, the parent's
// reduction.
func (r *Runner) reducedFollowUps(ctx context.Context, m *kvmodel.Invocation) error {
	wf := m.WorkflowName
	if m.Parent() == "" {
		return nil
	}
	// The counter may not have been decremented (a runner died after the
	// reduction's commit); countDone is idempotent.
	if err := r.countDone(ctx, wf, m.Parent(), m.ID); err != nil {
		return err
	}
	p := &kvmodel.Invocation{WorkflowName: wf, ID: m.Parent()}
	if err := r.store.Get(ctx, p); err != nil {
		return err
	}
	if p.MappedWaiting == nil || *p.MappedWaiting != 0 {
		return nil
	}
	red, ok, err := r.pending(ctx, wf, kvmodel.ReduceID(p.ID))
	if err != nil || !ok {
		return err
	}
	return r.publishReduce(ctx, p, red)
}
