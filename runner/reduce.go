package runner

import (
	"context"
	"errors"
	"fmt"

	"github.com/jobx/jobx/internal/queue"
	"github.com/jobx/jobx/kvmodel"
)

// publishReduce queues reduce invocation red of map invocation m.
func (r *Runner) publishReduce(ctx context.Context, m, red *kvmodel.Invocation) error {
	wf := m.WorkflowName
	step, err := r.catalog.Step(ctx, wf, m.StepName)
	if err != nil {
		return fmt.Errorf("route reduce of step %s: %w", m.StepName, err)
	}
	h, err := r.catalog.Handler(ctx, wf, step.ReduceHandlerName)
	if err != nil {
		return fmt.Errorf("route reduce of step %s: %w", m.StepName, err)
	}
	body := queue.Message{JobClass: kvmodel.DirectionReduce, WorkflowName: wf, RequestID: m.RequestID, InvocationID: red.ID, StepName: m.StepName, MapInvocationID: m.ID}.Encode()
	return r.pub.Publish(kvmodel.ReduceTopic(wf, kvmodel.TopicCapability(h.RequiredCapability)), body)
}

// runReduce reduces one map invocation: its combined output (leaf) or its
// children's reductions merged by key (branch).
func (r *Runner) runReduce(ctx context.Context, t *task) error {
	wf := t.inv.WorkflowName
	if t.m == nil {
		m := &kvmodel.Invocation{WorkflowName: wf, ID: t.inv.Parent()}
		if err := r.store.Get(ctx, m); err != nil {
			return fmt.Errorf("reduced map invocation: %w", err)
		}
		t.m = m
		if !m.IsBranch() {
			data, err := r.store.ReadDataset(ctx, wf, m.ID, kvmodel.PostCombine)
			if err != nil {
				return err
			}
			t.data = data
		}
	}
	var groups []kvmodel.Group
	if t.m.IsBranch() {
		var err error
		if groups, err = r.childResults(ctx, t.m); err != nil {
			return err
		}
	} else {
		var err error
		if groups, err = kvmodel.DecodeGroupItems(t.data); err != nil {
			return r.fail(ctx, t, &kvmodel.Failure{Kind: kvmodel.FailureData, Message: "post_combine dataset: " + err.Error()})
		}
	}
	step, f, err := r.stepFor(ctx, wf, t.inv.StepName)
	if f != nil || err != nil {
		return r.failOr(ctx, t, f, err)
	}
	h, f, err := r.handlerFor(ctx, wf, step.ReduceHandlerName, "reduce")
	if f != nil || err != nil {
		return r.failOr(ctx, t, f, err)
	}
	out := &pairsOutput{}
	if f, err := r.invoke(ctx, t, h, groupLines(groups), out); f != nil || err != nil {
		return r.failOr(ctx, t, f, err)
	}
	var data []byte
	for _, p := range out.pairs {
		data = kvmodel.AppendPairItem(data, p)
	}
	return r.commitReduce(ctx, t, h, data)
}

// childResults merges the reductions of m's children by key, keys in order
// of first appearance, values in child order.
func (r *Runner) childResults(ctx context.Context, m *kvmodel.Invocation) ([]kvmodel.Group, error) {
	children, err := r.store.Children(ctx, m.WorkflowName, m.ID)
	if err != nil {
		return nil, err
	}
	data, err := r.store.ReadDatasets(ctx, m.WorkflowName, children, kvmodel.PostReduce)
	if err != nil {
		return nil, err
	}
	var pairs []kvmodel.Pair
	for _, c := range children {
		d, ok := data[c]
		if !ok {
			return nil, fmt.Errorf("child invocation %s of %s has no post_reduce dataset", c, m.ID)
		}
		ps, err := kvmodel.DecodePairItems(d)
		if err != nil {
			return nil, fmt.Errorf("post_reduce of %s: %w", c, err)
		}
		pairs = append(pairs, ps...)
	}
	return kvmodel.GroupByKey(pairs), nil
}

// commitReduce stores the reduction on the map invocation and marks the
// reduce invocation done in one transaction (the root's also completes the
// request); then the parent's counter is decremented through the runner's
// group commit (counter.go), and the decrement that reaches zero queues the
// parent's reduction.
func (r *Runner) commitReduce(ctx context.Context, t *task, h *kvmodel.Handler, data []byte) error {
	wf := t.inv.WorkflowName
	parent := t.m.Parent()
	if parent != "" {
		if f, err := r.checkParentReducer(ctx, wf, parent); f != nil || err != nil {
			return r.failOr(ctx, t, f, err)
		}
	}
	err := r.store.RecordReduction(ctx, t.seen(), r.done(t, h.Name), t.m, data, r.opts.Retention)
	if errors.Is(err, kvmodel.ErrConflict) {
		return nil // a duplicate finished it, or the request ended
	}
	if err != nil {
		return err
	}
	r.count(t, h, "done")
	return r.reduced(ctx, t)
}

// reduced follows a committed reduction of t.m: at the root it finishes
// the request, else it counts t.m done in its parent.
func (r *Runner) reduced(ctx context.Context, t *task) error {
	parent := t.m.Parent()
	if parent == "" {
		t.log.Info("request done")
		r.finishRequest(ctx, t)
		return nil
	}
	return r.countDone(ctx, t.inv.WorkflowName, parent, t.m.ID)
}

// countDone decrements parent's counter for its child m (once, however
// often it is called) and queues the parent's reduction when it reaches 0.
func (r *Runner) countDone(ctx context.Context, wf, parent, m string) error {
	zero, err := r.counters.decrement(ctx, wf, parent, m)
	if err != nil || zero == nil {
		return err
	}
	return r.publishReduce(ctx, zero, kvmodel.NewReduceInvocation(zero))
}
