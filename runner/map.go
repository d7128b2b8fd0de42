package runner

import (
	"context"
	"errors"
	"fmt"

	"github.com/jobx/jobx/internal/queue"
	"github.com/jobx/jobx/kvmodel"
)

// runMap runs a map invocation's mapper (and combiner) and commits.
func (r *Runner) runMap(ctx context.Context, t *task) error {
	wf := t.inv.WorkflowName
	step, f, err := r.stepFor(ctx, wf, t.inv.StepName)
	if f != nil || err != nil {
		return r.failOr(ctx, t, f, err)
	}
	h, f, err := r.handlerFor(ctx, wf, step.MapHandlerName, "map")
	if f != nil || err != nil {
		return r.failOr(ctx, t, f, err)
	}
	args, err := kvmodel.DecodePairItems(t.data)
	if err != nil {
		return r.fail(ctx, t, &kvmodel.Failure{Kind: kvmodel.FailureData, Message: "arguments dataset: " + err.Error()})
	}
	out := &mapperOutput{}
	if f, err := r.invoke(ctx, t, h, pairLines(args), out); f != nil || err != nil {
		return r.failOr(ctx, t, f, err)
	}
	if out.directive == nil {
		return r.fail(ctx, t, &kvmodel.Failure{Kind: kvmodel.FailureProtocol, Handler: h.Name, Message: `the mapper wrote no directive: its first stdout line must be {"jobx":"return"} or {"jobx":"map","step":"<step>"}`})
	}
	if out.directive.Jobx == "map" {
		return r.commitBranch(ctx, t, h, out.directive.Step, out.pairs)
	}
	if f, err := r.checkOffered(ctx, wf, step.ReduceHandlerName); f != nil || err != nil {
		return r.failOr(ctx, t, f, err)
	}
	groups := kvmodel.GroupByKey(out.pairs)
	if step.CombineHandlerName != "" {
		c, f, err := r.handlerFor(ctx, wf, step.CombineHandlerName, "combine")
		if f != nil || err != nil {
			return r.failOr(ctx, t, f, err)
		}
		combined := &groupsOutput{}
		if f, err := r.invoke(ctx, t, c, groupLines(groups), combined); f != nil || err != nil {
			return r.failOr(ctx, t, f, err)
		}
		groups = combined.groups
	}
	var data []byte
	for _, g := range groups {
		data = kvmodel.AppendGroupItem(data, g)
	}
	if r.fusable(ctx, wf, step) {
		return r.mapAndReduce(ctx, t, h, step, data, groups)
	}
	return r.commitLeaf(ctx, t, h, step, data)
}

func (r *Runner) done(t *task, handler string) *kvmodel.Invocation {
	d := *t.inv
	d.State = kvmodel.StateDone
	d.HandlerName = handler
	d.FinishedTimestamp = kvmodel.Now()
	if t.logs != nil {
		d.Log = t.logs.String()
	}
	return &d
}

// commitLeaf records a leaf mapper's combined output and creates its reduce
// invocation, then queues the reduction.
func (r *Runner) commitLeaf(ctx context.Context, t *task, h *kvmodel.Handler, step *kvmodel.Step, data []byte) error {
	red := kvmodel.NewReduceInvocation(t.inv)
	if ok, err := r.recordLeaf(ctx, t, h, data, red); !ok || err != nil {
		return err
	}
	return r.publishReduce(ctx, t.inv, red)
}

// recordLeaf commits leaf map invocation t as done, with its combined
// output and its pending reduce invocation red (whose revision it sets).
// ok is false when the invocation or its request changed meanwhile.
func (r *Runner) recordLeaf(ctx context.Context, t *task, h *kvmodel.Handler, data []byte, red *kvmodel.Invocation) (ok bool, err error) {
	err = r.store.RecordLeaf(ctx, t.seen(), r.done(t, h.Name), data, red)
	if errors.Is(err, kvmodel.ErrConflict) {
		return false, t.changed()
	}
	if err != nil {
		return false, err
	}
	r.count(t, h, "done")
	return true, nil
}

// commitBranch creates one child map invocation per pair, records the
// parent as branched, and queues the children.
func (r *Runner) commitBranch(ctx context.Context, t *task, h *kvmodel.Handler, next string, pairs []kvmodel.Pair) error {
	wf := t.inv.WorkflowName
	nextStep, f, err := r.stepFor(ctx, wf, next)
	if f != nil {
		f.Handler = h.Name
		f.Message = fmt.Sprintf("mapper %s directed its output to step %q, which does not exist in workflow %q", h.Name, next, wf)
		return r.fail(ctx, t, f)
	}
	if err != nil {
		return err
	}
	if f, err := r.checkOffered(ctx, wf, nextStep.MapHandlerName); f != nil || err != nil {
		return r.failOr(ctx, t, f, err)
	}
	ids := make([]string, len(pairs))
	children := make([]*kvmodel.Invocation, len(pairs))
	args := make([][]byte, len(pairs))
	now := kvmodel.Now()
	for i, p := range pairs {
		ids[i] = kvmodel.ChildID(t.inv.ID, i)
		children[i] = &kvmodel.Invocation{
			ID: ids[i], WorkflowName: wf, RequestID: t.inv.RequestID, ParentInvocationID: kvmodel.StrPtr(t.inv.ID),
			StepName: next, Direction: kvmodel.DirectionMap, State: kvmodel.StatePending, CreatedTimestamp: now,
		}
		args[i] = kvmodel.AppendPairItem(nil, p)
	}
	red, stored, err := r.store.RecordBranch(ctx, t.seen(), r.done(t, h.Name), next, children, args)
	if errors.Is(err, kvmodel.ErrConflict) {
		return t.changed()
	}
	if err != nil {
		return err
	}
	// Each child's fresh copy: the child as stored, its request as stored
	// at t.req's revision (nil: no copies), its arguments.
	reqJSON, _ := kvmodel.Encode(t.req)
	fresh := make([]*queue.Fresh, len(pairs))
	for i := range pairs {
		fresh[i] = queue.NewFresh(stored[i], reqJSON, t.req.Revision(), args[i])
	}
	r.count(t, h, "done")
	t.log.Debug("branched", "to_step", next, "children", len(ids))
	if red != nil {
		return r.publishReduce(ctx, t.inv, red)
	}
	return r.publishMaps(ctx, t.inv.RequestID, wf, nextStep, ids, fresh...)
}

// publishMaps queues map invocations ids of step; fresh, when given, holds
// each one's Fresh copy (a nil one is sent without).
func (r *Runner) publishMaps(ctx context.Context, requestID, wf string, step *kvmodel.Step, ids []string, fresh ...*queue.Fresh) error {
	h, err := r.catalog.Handler(ctx, wf, step.MapHandlerName)
	if err != nil {
		return fmt.Errorf("route map of step %s: %w", step.Name, err)
	}
	bodies := make([][]byte, len(ids))
	for i, id := range ids {
		msg := queue.Message{JobClass: kvmodel.DirectionMap, WorkflowName: wf, RequestID: requestID, InvocationID: id, StepName: step.Name}
		if i < len(fresh) {
			msg.Fresh = fresh[i]
		}
		bodies[i] = msg.Encode()
	}
	return r.pub.Publish(kvmodel.MapTopic(wf, kvmodel.TopicCapability(h.RequiredCapability)), bodies...)
}
