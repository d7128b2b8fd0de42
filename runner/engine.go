package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/jobx/jobx/internal/etcdmaint"
	"github.com/jobx/jobx/internal/notifications"
	"github.com/jobx/jobx/internal/queue"
	"github.com/jobx/jobx/kvmodel"
	"github.com/jobx/jobx/processors"
	"github.com/jobx/jobx/runner/scope"
	"github.com/jobx/jobx/runner/services"
	"github.com/jobx/jobx/sandbox"
	"github.com/nsqio/go-nsq"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// task is one message being processed: what it names, as read from etcd.
type task struct {
	msg  queue.Message
	inv  *kvmodel.Invocation
	req  *kvmodel.Request
	log  *slog.Logger
	data []byte              // map: arguments; reduce of a leaf: the map invocation's post_combine
	m    *kvmodel.Invocation // reduce: the map invocation being reduced
	// fresh: built from the message's Fresh copy, not read from etcd.
	fresh bool
	// logs is the tail of the handler's log of its last attempt, kept for
	// a kept request (Invocation.Log); nil otherwise.
	logs *logTail
}

// errStale means a first delivery's Fresh copy no longer matched etcd at
// commit; the message is requeued at once and read from etcd.
var errStale = errors.New("the invocation or its request changed since the message was published")

// changed is what a commit that found t's invocation or request changed
// means: nothing left to do for a task read from etcd (a duplicate
// finished it, or the request ended), a second look for a fresh one.
func (t *task) changed() error {
	if t.fresh {
		return errStale
	}
	t.log.Debug("invocation or request changed meanwhile; leaving it")
	return nil
}

// handleMessage is the NSQ handler. A message is finished only after its
// outcome is recorded; infrastructure failures are requeued until
// MaxAttempts, then fail the request. etcd out of space (NOSPACE) is
// waited out however long it lasts, not counted against MaxAttempts.
//
// A message for an invocation that this runner already processes (a
// duplicate, e.g. one published again by the recovery) is finished at
// once: the one held commits, or requeues itself.
func (r *Runner) handleMessage(topic string, m *nsq.Message) error {
	m.DisableAutoResponse()
	msg, err := queue.Decode(m.Body)
	if err != nil {
		r.log.Error("dropping undecodable message", "err", err, "body", string(m.Body))
		m.Finish()
		return nil
	}
	log := r.log.With("workflow", msg.WorkflowName, "request_id", msg.RequestID, "invocation_id", msg.InvocationID, "direction", msg.JobClass)
	// Keep the message alive while it waits and runs.
	touchDone := make(chan struct{})
	go func() {
		t := time.NewTicker(r.opts.MsgTimeout / 3)
		defer t.Stop()
		for {
			select {
			case <-touchDone:
				return
			case <-t.C:
				m.Touch()
			}
		}
	}()
	defer close(touchDone)

	if r.runCtx.Err() != nil {
		m.Requeue(0)
		return nil
	}
	if !r.held.hold(topic, msg.InvocationID) {
		log.Debug("duplicate of a message this runner processes; dropped")
		m.Finish()
		return nil
	}
	r.inFlight.Add(1)
	defer r.inFlight.Add(-1)

	err = r.process(r.runCtx, msg, log, m.Attempts == 1)
	// Released before the answer to nsqd: a requeued message may come
	// straight back here.
	r.held.release(topic, msg.InvocationID)
	switch {
	case err == nil:
		m.Finish()
	case errors.Is(err, errStale):
		log.Debug("message requeued to be read from etcd", "err", err)
		m.RequeueWithoutBackoff(0)
	case r.runCtx.Err() != nil:
		log.Warn("shutting down; message requeued", "err", err)
		m.RequeueWithoutBackoff(0)
	case etcdmaint.IsNoSpace(err):
		// etcd refuses writes until space is reclaimed: nothing is wrong
		// with the work, so it waits, not counted against MaxAttempts.
		delay := r.requeueDelay(m.Attempts)
		log.Warn("etcd is out of space (NOSPACE); message requeued until space is reclaimed (jobx etcd compact, defrag, disarm)",
			"attempt", m.Attempts, "delay", delay, "err", err)
		m.RequeueWithoutBackoff(delay)
	case m.Attempts >= r.opts.MaxAttempts:
		log.Error("giving up after repeated infrastructure failures", "attempts", m.Attempts, "err", err)
		if ferr := r.failForInfra(r.runCtx, msg, int(m.Attempts), err); ferr != nil {
			log.Error("could not record the failure; message requeued", "err", ferr)
			m.RequeueWithoutBackoff(r.opts.RequeueDelay)
			return nil
		}
		m.Finish()
	default:
		delay := r.requeueDelay(m.Attempts)
		log.Warn("infrastructure failure; message requeued", "attempt", m.Attempts, "delay", delay, "err", err)
		m.RequeueWithoutBackoff(delay)
	}
	return nil
}

// requeueDelay doubles RequeueDelay with each attempt (at most a minute),
// so a dependency that is away for a while (an etcd restarting) is waited
// for, not raced through MaxAttempts.
func (r *Runner) requeueDelay(attempts uint16) time.Duration {
	d := r.opts.RequeueDelay
	for i := uint16(1); i < attempts && d < time.Minute; i++ {
		d *= 2
	}
	return min(d, time.Minute)
}

// process handles one message. A nil error means the message is done with
// (processed, a duplicate, or moot because its request ended).
func (r *Runner) process(ctx context.Context, msg queue.Message, log *slog.Logger, first bool) error {
	var t *task
	if first && msg.Fresh != nil && msg.JobClass == kvmodel.DirectionMap {
		var err error
		if t, err = freshTask(msg, log); err != nil {
			log.Warn("message's fresh copy unusable; reading etcd", "err", err)
		}
	}
	if t == nil {
		var err error
		if t, err = r.load(ctx, msg, log); err != nil || t == nil {
			return err
		}
	}
	switch {
	case t.req.IsDone:
		log.Debug("request already ended; skipping")
		return nil
	case t.inv.State == kvmodel.StateFailed:
		return nil
	case t.inv.State == kvmodel.StateDone:
		log.Debug("invocation already done (duplicate delivery); re-driving follow-ups")
		return r.ensureFollowUps(ctx, t)
	case t.inv.Direction == kvmodel.DirectionMap:
		return r.runMap(ctx, t)
	default:
		return r.runReduce(ctx, t)
	}
}

// freshTask builds a map task from a first delivery's Fresh copy, with no
// read (see queue.Fresh).
func freshTask(msg queue.Message, log *slog.Logger) (*task, error) {
	f := msg.Fresh
	inv := &kvmodel.Invocation{WorkflowName: msg.WorkflowName, ID: msg.InvocationID}
	req := &kvmodel.Request{WorkflowName: msg.WorkflowName, ID: msg.RequestID}
	if err := kvmodel.Decode(inv, kvmodel.Key(inv), f.Invocation, 0); err != nil {
		return nil, err
	}
	if err := kvmodel.Decode(req, kvmodel.Key(req), f.Request, f.RequestRevision); err != nil {
		return nil, err
	}
	if inv.ID != msg.InvocationID || req.ID != msg.RequestID || inv.State != kvmodel.StatePending || inv.Direction != kvmodel.DirectionMap {
		return nil, fmt.Errorf("fresh copy of invocation %s does not describe it", msg.InvocationID)
	}
	return &task{msg: msg, inv: inv, req: req, log: log.With("step", inv.StepName), data: []byte(f.Arguments), fresh: true}, nil
}

// load reads the invocation, its request and (in the same transaction) the
// data the invocation consumes first.
func (r *Runner) load(ctx context.Context, msg queue.Message, log *slog.Logger) (*task, error) {
	wf := msg.WorkflowName
	inv := &kvmodel.Invocation{WorkflowName: wf, ID: msg.InvocationID}
	req := &kvmodel.Request{WorkflowName: wf, ID: msg.RequestID}
	ops := []clientv3.Op{clientv3.OpGet(kvmodel.Key(inv)), clientv3.OpGet(kvmodel.Key(req))}
	sorted := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)}
	var m *kvmodel.Invocation
	switch {
	case msg.JobClass == kvmodel.DirectionMap:
		ops = append(ops, clientv3.OpGet(kvmodel.DatasetPrefix(wf, inv.ID, kvmodel.Arguments), sorted...))
	case msg.MapInvocationID != "":
		m = &kvmodel.Invocation{WorkflowName: wf, ID: msg.MapInvocationID}
		ops = append(ops, clientv3.OpGet(kvmodel.DatasetPrefix(wf, m.ID, kvmodel.PostCombine), sorted...), clientv3.OpGet(kvmodel.Key(m)))
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	resp, err := r.store.Client().Txn(rctx).Then(ops...).Commit()
	cancel()
	if err != nil {
		return nil, fmt.Errorf("load invocation: %w", err)
	}
	get := func(i int) []*mvccKV { return kvsOf(resp.Responses[i]) }
	reqKV := get(1)
	if len(reqKV) == 0 {
		log.Info("request no longer exists (cleaned up); dropping message")
		return nil, nil
	}
	if err := kvmodel.Decode(req, string(reqKV[0].Key), reqKV[0].Value, reqKV[0].ModRevision); err != nil {
		return nil, err
	}
	invKV := get(0)
	if len(invKV) == 0 {
		if req.IsDone {
			return nil, nil
		}
		return nil, fmt.Errorf("invocation %s of a live request is missing", inv.ID)
	}
	if err := kvmodel.Decode(inv, string(invKV[0].Key), invKV[0].Value, invKV[0].ModRevision); err != nil {
		return nil, err
	}
	t := &task{msg: msg, inv: inv, req: req, log: log.With("step", inv.StepName)}
	if len(resp.Responses) > 2 {
		t.data = joinValues(get(2))
	}
	if m != nil {
		if mKV := get(3); len(mKV) > 0 {
			if err := kvmodel.Decode(m, string(mKV[0].Key), mKV[0].Value, mKV[0].ModRevision); err != nil {
				return nil, err
			}
			t.m = m
		}
	}
	return t, nil
}

// handlerFor resolves a step's handler, as a definition failure of the
// invocation when it is missing.
func (r *Runner) handlerFor(ctx context.Context, wf, name, role string) (*kvmodel.Handler, *kvmodel.Failure, error) {
	h, err := r.catalog.Handler(ctx, wf, name)
	if errors.Is(err, kvmodel.ErrNotFound) {
		return nil, &kvmodel.Failure{Kind: kvmodel.FailureDefinition, Message: fmt.Sprintf("the %s handler %q does not exist in workflow %q", role, name, wf), Handler: name}, nil
	}
	return h, nil, err
}

func (r *Runner) stepFor(ctx context.Context, wf, name string) (*kvmodel.Step, *kvmodel.Failure, error) {
	s, err := r.catalog.Step(ctx, wf, name)
	if errors.Is(err, kvmodel.ErrNotFound) {
		return nil, &kvmodel.Failure{Kind: kvmodel.FailureDefinition, Message: fmt.Sprintf("step %q does not exist in workflow %q", name, wf), Step: name}, nil
	}
	return s, nil, err
}

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

// seen is what t's transitions were decided on: they commit only if
// neither its invocation nor its request changed since.
func (t *task) seen() kvmodel.Seen {
	return kvmodel.Seen{Invocation: t.inv, Request: t.req, Fresh: t.fresh}
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
	fresh := make([]*queue.Fresh, len(pairs))
	reqJSON, _ := kvmodel.Encode(t.req) // as stored at t.req's revision; nil: no copies
	now := kvmodel.Now()
	for i, p := range pairs {
		ids[i] = kvmodel.ChildID(t.inv.ID, i)
		children[i] = &kvmodel.Invocation{
			ID: ids[i], WorkflowName: wf, RequestID: t.inv.RequestID, ParentInvocationID: kvmodel.StrPtr(t.inv.ID),
			StepName: next, Direction: kvmodel.DirectionMap, State: kvmodel.StatePending, CreatedTimestamp: now,
		}
		args[i] = kvmodel.AppendPairItem(nil, p)
		fresh[i] = queue.NewFresh(kvmodel.PutOp(children[i]).Value, reqJSON, t.req.Revision(), args[i])
	}
	red, err := r.store.RecordBranch(ctx, t.seen(), r.done(t, h.Name), next, children, args)
	if errors.Is(err, kvmodel.ErrConflict) {
		return t.changed()
	}
	if err != nil {
		return err
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

// checkOffered fails with a no_capability Failure when no live runner
// offers the capability that handler requires, so work is never parked on
// a topic nobody consumes.
func (r *Runner) checkOffered(ctx context.Context, wf, handler string) (*kvmodel.Failure, error) {
	h, f, err := r.handlerFor(ctx, wf, handler, "next")
	if f != nil || err != nil {
		return f, err
	}
	c := kvmodel.TopicCapability(h.RequiredCapability)
	if (r.serves(wf) && slices.Contains(r.opts.Capabilities, c)) || r.registry.Offers(ctx, wf, c) {
		return nil, nil
	}
	return &kvmodel.Failure{Kind: kvmodel.FailureNoCapability, Handler: h.Name,
		Message: fmt.Sprintf("no live runner offers capability %q, which handler %s requires", c, h.Name)}, nil
}

// failOr fails the invocation with f, or returns the infrastructure error.
func (r *Runner) failOr(ctx context.Context, t *task, f *kvmodel.Failure, err error) error {
	if err != nil {
		return err
	}
	return r.fail(ctx, t, f)
}

// fail records an invocation's failure and fails its request, once.
func (r *Runner) fail(ctx context.Context, t *task, f *kvmodel.Failure) error {
	t.log.Warn("invocation failed", "kind", f.Kind, "handler", f.Handler, "err", f.Message)
	err := r.store.FailInvocation(ctx, t.seen(), f, r.opts.Retention)
	if errors.Is(err, kvmodel.ErrConflict) {
		return t.changed()
	}
	if err == nil {
		r.metrics.invocations.WithLabelValues(t.inv.WorkflowName, t.inv.StepName, f.Handler, t.inv.Direction, "failed_"+string(f.Kind)).Inc()
		r.notify(ctx, t.inv.WorkflowName, notifications.Event{Kind: notifications.RequestFailed, Name: "jobx.request", Level: "error",
			Message:   fmt.Sprintf("%s invocation [%s] under request [%s] failed. HANDLER=[%s]: %s", t.inv.Direction, t.inv.ID, t.req.ID, f.Handler, f.Message),
			RequestID: t.req.ID, InvocationID: t.inv.ID, Handler: f.Handler})
	}
	return err
}

// count records a committed invocation outcome.
func (r *Runner) count(t *task, h *kvmodel.Handler, outcome string) {
	r.metrics.invocations.WithLabelValues(t.inv.WorkflowName, t.inv.StepName, h.Name, t.inv.Direction, outcome).Inc()
}

// failForInfra fails a request whose message kept failing.
func (r *Runner) failForInfra(ctx context.Context, msg queue.Message, attempts int, cause error) error {
	t, err := r.load(ctx, msg, r.log)
	if err != nil || t == nil || t.req.IsDone || t.inv.State != kvmodel.StatePending {
		return err
	}
	return r.fail(ctx, t, &kvmodel.Failure{
		Kind: kvmodel.FailureInfrastructure, Attempts: attempts,
		Message: fmt.Sprintf("gave up after %d attempts: %v", attempts, cause),
	})
}

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

// invoke runs handler h on stdin, feeding stdout lines to line. It retries
// the handler's own failures as its header asks. A Failure means the
// handler failed; an error means the sandbox did.
func (r *Runner) invoke(ctx context.Context, t *task, h *kvmodel.Handler, stdin []byte, out collector) (*kvmodel.Failure, error) {
	prog, err := r.progs.get(h)
	if err != nil {
		return &kvmodel.Failure{Kind: kvmodel.FailureDefinition, Handler: h.Name, Message: err.Error()}, nil
	}
	limits, err := r.limits(ctx, h)
	if err != nil {
		return &kvmodel.Failure{Kind: kvmodel.FailureDefinition, Handler: h.Name, Message: err.Error()}, nil
	}
	vars, err := r.scopes.Vars(ctx, h)
	if err != nil {
		return &kvmodel.Failure{Kind: kvmodel.FailureScope, Handler: h.Name, Message: err.Error()}, nil
	}
	session := t.inv.ID
	if t.inv.Direction == kvmodel.DirectionReduce {
		session = t.inv.Parent()
	}
	senv, err := scope.Env(vars)
	if err != nil {
		return &kvmodel.Failure{Kind: kvmodel.FailureScope, Handler: h.Name, Message: err.Error()}, nil
	}
	token, revoke := r.svc.Issue(&services.Grant{Workflow: h.WorkflowName, Session: session, Writable: t.inv.Direction == kvmodel.DirectionMap,
		Request: t.req.ID, Handler: h.Name, Invocation: t.inv.ID})
	defer revoke()
	env := append(r.env(t, h), senv...)
	env = append(env, "JOBX_SERVICES=unix:"+r.svc.Socket(), "JOBX_SESSION_URL=unix:"+r.svc.Socket(), "JOBX_TOKEN="+token)
	fsys, err := r.fss.Open(h.WorkflowName)
	if err != nil {
		return &kvmodel.Failure{Kind: kvmodel.FailureFilesystem, Handler: h.Name, Message: err.Error()}, nil
	}
	if fsys != nil {
		env = append(env, "JOBX_FS=1")
	}
	shared := r.fss.HostDir(h.WorkflowName)
	if shared != "" {
		env = append(env, "JOBX_FS_ROOT="+shared)
	}
	backoff, _ := time.ParseDuration(h.Options.RetryBackoff)
	reuse := ""
	switch h.Options.Reuse {
	case processors.ReuseRequest:
		reuse = "request " + t.req.ID
	case processors.ReuseHandler:
		// The zygote's key also holds the installed program's path, which
		// names the handler's version.
		reuse = "handler " + h.WorkflowName + "/" + h.Name
	}
	log := t.log.With("handler", h.Name)
	for attempt := 0; ; attempt++ {
		out.reset()
		if t.req.Keep {
			t.logs = &logTail{}
		}
		lw := &lineWriter{fn: out.line, max: kvmodel.MaxItemBytes}
		spec := &sandbox.RunSpec{
			Workflow: h.WorkflowName, Handler: h.Name, HandlerType: h.HandlerType, Invocation: t.inv.ID,
			Processor: h.SourceType, Program: prog, Env: env, Stdin: strings.NewReader(string(stdin)), Stdout: lw,
			Stderr: &logWriter{log: log, tail: t.logs, special: func(line string) bool { return r.handlerNotify(t, h, line) }}, Limits: limits, ServicesSocket: r.svc.Socket(), SharedDir: shared,
			Reuse: reuse,
		}
		outcome, err := r.run(ctx, spec)
		if err != nil {
			return nil, err
		}
		r.metrics.observe(h.WorkflowName, t.inv.StepName, h.Name, r.sandbox.Kind(), outcome.Warm, outcome.Duration)
		f := failureOf(h, outcome, lw.Close(), limits)
		if f == nil {
			return nil, nil
		}
		if attempt >= h.Options.Retries {
			f.Attempts = attempt + 1
			return f, nil
		}
		log.Info("handler failed; retrying as its header asks", "attempt", attempt+1, "of", h.Options.Retries+1, "err", f.Message)
		select {
		case <-time.After(backoff << attempt):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// run runs one handler on the sandbox, at most Concurrency at a time:
// the messages in flight beyond that are loading their data or recording
// their results meanwhile.
func (r *Runner) run(ctx context.Context, spec *sandbox.RunSpec) (*sandbox.Outcome, error) {
	select {
	case r.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-r.sem }()
	return r.sandbox.Run(ctx, spec)
}

func failureOf(h *kvmodel.Handler, out *sandbox.Outcome, protoErr error, l sandbox.Limits) *kvmodel.Failure {
	f := &kvmodel.Failure{Handler: h.Name, StderrTail: out.StderrTail}
	code := out.ExitCode
	switch {
	case out.TimedOut:
		f.Kind, f.Message = kvmodel.FailureTimeout, fmt.Sprintf("handler %s timed out after %s and was killed", h.Name, l.Timeout)
	case out.OOMKilled:
		f.Kind, f.Message = kvmodel.FailureOOM, fmt.Sprintf("handler %s exceeded its memory limit (%d bytes) and was killed", h.Name, l.Memory)
	case out.OutputExceeded:
		f.Kind, f.Message = kvmodel.FailureOutputLimit, fmt.Sprintf("handler %s wrote more than %d bytes of output and was killed", h.Name, l.MaxOutput)
	case errors.As(protoErr, new(*kvmodel.LimitError)):
		f.Kind, f.Message = kvmodel.FailureItemLimit, fmt.Sprintf("handler %s wrote a dataset item over its limit: %v", h.Name, protoErr)
	case out.Signal != "":
		f.Kind, f.Message, f.Signal = kvmodel.FailureCrashed, fmt.Sprintf("handler %s was killed by signal %s", h.Name, out.Signal), out.Signal
		f.ExitCode = &code
	case out.ExitCode != 0:
		f.Kind, f.Message = kvmodel.FailureHandlerFailed, fmt.Sprintf("handler %s exited with status %d", h.Name, out.ExitCode)
		f.ExitCode = &code
	case protoErr != nil:
		f.Kind, f.Message = kvmodel.FailureProtocol, fmt.Sprintf("handler %s broke the output protocol: %v", h.Name, protoErr)
	default:
		return nil
	}
	return f
}

// limits merges a handler's header limits over the runner's defaults.
// The handler's header wins, then the workflow's defaults, then the
// runner's.
func (r *Runner) limits(ctx context.Context, h *kvmodel.Handler) (sandbox.Limits, error) {
	l := sandbox.Limits{Timeout: r.opts.Timeout, MaxOutput: r.opts.MaxOutput, Scratch: r.opts.Scratch}
	layers := []*kvmodel.HandlerOptions{nil, &h.Options}
	if wf, err := r.catalog.Workflow(ctx, h.WorkflowName); err == nil {
		layers[0] = wf.Defaults
	}
	for _, o := range layers {
		if o == nil {
			continue
		}
		if o.Timeout != "" {
			d, err := time.ParseDuration(o.Timeout)
			if err != nil {
				return l, fmt.Errorf("handler %s: timeout %q: %w", h.Name, o.Timeout, err)
			}
			l.Timeout = d
		}
		if o.MaxOutput > 0 {
			l.MaxOutput = o.MaxOutput
		}
		if o.Memory > 0 {
			l.Memory = o.Memory
		}
		if o.Scratch > 0 {
			l.Scratch = o.Scratch
		}
		if o.CPU > 0 {
			l.CPU = o.CPU
		}
		if o.Pids > 0 {
			l.Pids = o.Pids
		}
		if o.Network != "" {
			l.Network = o.Network
		}
	}
	return l, nil
}

// env is a handler's environment: a minimal base plus its context.
func (r *Runner) env(t *task, h *kvmodel.Handler) []string {
	return []string{
		"PATH=/usr/local/bin:/usr/bin:/bin",
		"LANG=C.UTF-8",
		"PYTHONDONTWRITEBYTECODE=1",
		"JOBX_WORKFLOW=" + h.WorkflowName,
		"JOBX_JOB=" + t.req.JobName,
		"JOBX_REQUEST_ID=" + t.req.ID,
		"JOBX_INVOCATION_ID=" + t.inv.ID,
		"JOBX_DIRECTION=" + t.inv.Direction,
		"JOBX_STEP=" + t.inv.StepName,
		"JOBX_HANDLER=" + h.Name,
		"JOBX_HANDLER_TYPE=" + h.HandlerType,
	}
}

// logWriter logs each stderr line of a handler, tagged with its
// invocation; special may consume a line (a NOTIFY) instead.
// logWriter logs a handler's stderr, a line at a time, at the line's own
// level: that of a line JobX's LOG (Python's logging) formatted, info for
// any other (PRINT, print, other languages, a traceback). The logger
// carries the request and invocation ids.
type logWriter struct {
	log     *slog.Logger
	tail    *logTail // nil: none kept
	special func(line string) bool
	partial []byte
}

// logTail keeps the last lines of a handler's log, at most
// kvmodel.MaxInvocationLog bytes.
type logTail struct {
	lines []string
	size  int
}

func (l *logTail) add(line string) {
	if len(line) > kvmodel.MaxInvocationLog {
		line = strings.ToValidUTF8(line[len(line)-kvmodel.MaxInvocationLog+1:], "")
	}
	l.lines = append(l.lines, line)
	l.size += len(line) + 1
	for l.size > kvmodel.MaxInvocationLog && len(l.lines) > 1 {
		l.size -= len(l.lines[0]) + 1
		l.lines = l.lines[1:]
	}
}

func (l *logTail) String() string { return strings.Join(l.lines, "\n") }

// pyLogLine matches the start of a line formatted by the Python runtime's
// LOG: "%(asctime)s %(levelname)s %(name)s: %(message)s".
var pyLogLine = regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) `)

// lineLevel is the level of a handler's stderr line.
func lineLevel(line string) slog.Level {
	m := pyLogLine.FindStringSubmatch(line)
	if m == nil {
		return slog.LevelInfo
	}
	switch m[1] {
	case "DEBUG":
		return slog.LevelDebug
	case "WARNING":
		return slog.LevelWarn
	case "ERROR", "CRITICAL":
		return slog.LevelError
	}
	return slog.LevelInfo
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.partial = append(w.partial, p...)
	for {
		i := strings.IndexByte(string(w.partial), '\n')
		if i < 0 {
			break
		}
		if line := string(w.partial[:i]); w.special == nil || !w.special(line) {
			w.log.Log(context.Background(), lineLevel(line), "handler log", "line", line)
			if w.tail != nil {
				w.tail.add(line)
			}
		}
		w.partial = w.partial[i+1:]
	}
	return len(p), nil
}
