package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/jobx/jobx/internal/queue"
	"github.com/jobx/jobx/kvmodel"
)

// The invocation engine, by phase: consumer.go takes a message from NSQ
// and hands it to process (here), which reads what it names (load, or the
// message's fresh copy) and runs it: map.go runs a mapper and records a
// leaf or a branch, fused.go runs a leaf's reducer at once, reduce.go
// reduces a map invocation and counts it into its parent (counter.go
// batches the counts), followups.go re-drives what a done invocation
// should have queued, failure.go records failures, and invoke.go runs a
// handler in the sandbox (handlerlog.go keeps its stderr). Every state
// transition is a kvmodel verb conditioned on what the task read.

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
	reduces := ""
	if msg.JobClass != kvmodel.DirectionMap {
		reduces = msg.MapInvocationID
	}
	w, err := r.store.ReadWork(ctx, msg.WorkflowName, msg.RequestID, msg.InvocationID, reduces)
	if err != nil {
		return nil, fmt.Errorf("load invocation: %w", err)
	}
	if w.Request == nil {
		log.Info("request no longer exists (cleaned up); dropping message")
		return nil, nil
	}
	if w.Invocation == nil {
		if w.Request.IsDone {
			return nil, nil
		}
		return nil, fmt.Errorf("invocation %s of a live request is missing", msg.InvocationID)
	}
	return &task{msg: msg, inv: w.Invocation, req: w.Request, log: log.With("step", w.Invocation.StepName), data: w.Data, m: w.Map}, nil
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

// seen is what t's transitions were decided on: they commit only if
// neither its invocation nor its request changed since.
func (t *task) seen() kvmodel.Seen {
	return kvmodel.Seen{Invocation: t.inv, Request: t.req, Fresh: t.fresh}
}

// checkOffered fails with a no_capability Failure when no live runner
// offers the capability that handler requires, so work is never parked on
// a topic nobody consumes.
func (r *Runner) checkOffered(ctx context.Context, wf, handler string) (*kvmodel.Failure, error) {
	h, f, err := r.handlerFor(ctx, wf, handler, "next")
	if f != nil || err != nil {
		return f, err
	}
	if r.serves(wf) && slices.Contains(r.opts.Capabilities, h.Capability()) {
		return nil, nil
	}
	return r.registry.Unoffered(ctx, wf, "", h), nil
}

// count records a committed invocation outcome.
func (r *Runner) count(t *task, h *kvmodel.Handler, outcome string) {
	r.metrics.invocations.WithLabelValues(t.inv.WorkflowName, t.inv.StepName, h.Name, t.inv.Direction, outcome).Inc()
}
