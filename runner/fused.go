package runner

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/jobx/jobx/kvmodel"
)

// A leaf map invocation's reduction needs nothing but the leaf's combined
// output, which the runner that ran the mapper holds. When that runner also
// serves the reducer's capability, it runs the reducer at once and commits
// the map invocation, its combined output, its reduce invocation (done) and
// the reduction in one transaction: no reduce message, no second load, one
// fsync'd write instead of two. A crash before that commit leaves the map
// message to be redelivered (nothing was written); a crash after it leaves
// the parent's counter to ensureFollowUps, as for any reduction. A leaf
// with a parent commits in the same transaction as its parent's decrement,
// batched with its siblings' (counters.commitLeaf).

// fusable reports whether this runner may run step's reducer right after
// its mapper.
func (r *Runner) fusable(ctx context.Context, wf string, step *kvmodel.Step) bool {
	h, err := r.catalog.Handler(ctx, wf, step.ReduceHandlerName)
	if err != nil {
		return false
	}
	return r.serves(wf) && slices.Contains(r.opts.Capabilities, kvmodel.TopicCapability(h.RequiredCapability))
}

// mapAndReduce runs leaf map invocation t's reducer on its combined output
// groups (data, as stored) and commits both invocations at once.
func (r *Runner) mapAndReduce(ctx context.Context, t *task, h *kvmodel.Handler, step *kvmodel.Step, data []byte, groups []kvmodel.Group) error {
	wf := t.inv.WorkflowName
	rh, f, err := r.handlerFor(ctx, wf, step.ReduceHandlerName, "reduce")
	if f != nil || err != nil {
		return r.commitLeaf(ctx, t, h, step, data) // the queued reduction reports it
	}
	m := r.done(t, h.Name)
	red := kvmodel.NewReduceInvocation(t.inv)
	// The reduction logs as its own run would: its direction and id, not
	// the map message's.
	log := r.log.With("workflow", wf, "request_id", t.msg.RequestID, "invocation_id", red.ID,
		"direction", kvmodel.DirectionReduce, "step", red.StepName, "map_invocation_id", t.inv.ID)
	rt := &task{msg: t.msg, inv: red, req: t.req, log: log, m: m}
	parent := m.Parent()
	if parent != "" {
		if f, err := r.checkParentReducer(ctx, wf, parent); f != nil || err != nil {
			return r.commitLeaf(ctx, t, h, step, data) // the queued reduction reports it
		}
	}
	out := &pairsOutput{}
	f, err = r.invoke(ctx, rt, rh, groupLines(groups), out)
	if err != nil {
		return err
	}
	if f != nil {
		// Record the leaf and its pending reduction, then fail the
		// reduction as its own run would have.
		if ok, err := r.recordLeaf(ctx, t, h, data, red); !ok || err != nil {
			return err
		}
		return r.fail(ctx, rt, f)
	}
	var reduced []byte
	for _, p := range out.pairs {
		reduced = kvmodel.AppendPairItem(reduced, p)
	}
	tr := kvmodel.FusedLeaf(t.seen(), m, data, r.done(rt, rh.Name), reduced, r.opts.Retention)
	if parent != "" && leafFits(tr) {
		// With its parent's decrement, batched with its siblings'
		// (counter.go).
		committed, zero, err := r.counters.commitLeaf(ctx, wf, parent, m.ID, tr)
		if err != nil {
			return err
		}
		if !committed {
			return t.changed()
		}
		r.count(t, h, "done")
		r.count(rt, rh, "done")
		if zero != nil {
			return r.publishReduce(ctx, zero, kvmodel.NewReduceInvocation(zero))
		}
		return nil
	}
	if _, err := r.store.Do(ctx, tr); errors.Is(err, kvmodel.ErrConflict) {
		return t.changed()
	} else if err != nil {
		return err
	}
	r.count(t, h, "done")
	r.count(rt, rh, "done")
	return r.reduced(ctx, rt)
}

// checkParentReducer fails with a Failure when no live runner offers the
// capability of the reducer of parent's step.
func (r *Runner) checkParentReducer(ctx context.Context, wf, parent string) (*kvmodel.Failure, error) {
	stepName, err := r.parentSteps.get(ctx, r.store, wf, parent)
	if err != nil {
		return nil, fmt.Errorf("parent of reduced invocation: %w", err)
	}
	pstep, f, err := r.stepFor(ctx, wf, stepName)
	if f != nil || err != nil {
		return f, err
	}
	return r.checkOffered(ctx, wf, pstep.ReduceHandlerName)
}

// stepNames caches the step names of branching invocations, which never
// change, so that each child's reduction need not read its parent.
type stepNames struct {
	mu    sync.Mutex // guards names
	names map[string]string
}

// maxStepNames bounds the cache; it is emptied when full.
const maxStepNames = 4096

func (c *stepNames) get(ctx context.Context, store *kvmodel.Store, wf, id string) (string, error) {
	key := wf + "/" + id
	c.mu.Lock()
	name, ok := c.names[key]
	c.mu.Unlock()
	if ok {
		return name, nil
	}
	p := &kvmodel.Invocation{WorkflowName: wf, ID: id}
	if err := store.Get(ctx, p); err != nil {
		return "", err
	}
	c.mu.Lock()
	if c.names == nil || len(c.names) >= maxStepNames {
		c.names = map[string]string{}
	}
	c.names[key] = p.StepName
	c.mu.Unlock()
	return p.StepName, nil
}
