package recovery

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jobx/jobx/internal/notifications"
	"github.com/jobx/jobx/kvmodel"
)

// The stall rule (see recovery) and the request deadline.

// stallMark is when a pending request's tree was first seen as it is.
type stallMark struct {
	fingerprint [2]int64 // highest mod revision, invocations seen
	since       time.Time
}

// sweep looks at every pending request once.
func (rc *recovery) sweep(ctx context.Context) error {
	reqs, err := kvmodel.List[kvmodel.Request](ctx, rc.o.Store)
	if err != nil {
		return err
	}
	now := rc.now()
	live := map[string]bool{}
	for _, req := range reqs {
		if req.IsDone {
			continue
		}
		created, err := time.Parse(kvmodel.TimestampFormat, req.CreatedTimestamp)
		if err != nil {
			continue
		}
		age := now.Sub(created)
		if rc.o.RequestDeadline > 0 && age > rc.o.RequestDeadline {
			if err := rc.expire(ctx, req); err != nil {
				rc.log.Warn("recovery: fail a request past its deadline", "workflow", req.WorkflowName, "request_id", req.ID, "err", err)
			}
			continue
		}
		if rc.o.StallAfter == 0 || age < rc.o.StallAfter {
			continue
		}
		key := req.WorkflowName + "/" + req.ID
		live[key] = true
		if err := rc.check(ctx, key, req, now); err != nil {
			rc.log.Warn("recovery: check a request", "workflow", req.WorkflowName, "request_id", req.ID, "err", err)
		}
	}
	for k := range rc.seen {
		if !live[k] {
			delete(rc.seen, k)
		}
	}
	return nil
}

// check walks one request's tree; when it has not changed for StallAfter it
// publishes the frontier again.
func (rc *recovery) check(ctx context.Context, key string, req *kvmodel.Request, now time.Time) error {
	var fp [2]int64
	var front frontier
	err := rc.o.Store.WalkTree(ctx, req.WorkflowName, req.InvocationID, func(n kvmodel.Node) error {
		for _, inv := range []*kvmodel.Invocation{n.Map, n.Reduce} {
			if inv != nil {
				fp[0] = max(fp[0], inv.Revision())
				fp[1]++
			}
		}
		front.add(n)
		return nil
	})
	if err != nil {
		return err
	}
	mark, ok := rc.seen[key]
	if !ok || mark.fingerprint != fp {
		rc.seen[key] = stallMark{fingerprint: fp, since: now}
		return nil
	}
	if now.Sub(mark.since) < rc.o.StallAfter {
		return nil
	}
	rc.seen[key] = stallMark{fingerprint: fp, since: now} // at most once per StallAfter
	n := len(front.maps) + len(front.reduces)
	rc.log.Warn("request stalled: publishing its pending invocations again", "workflow", req.WorkflowName, "request_id", req.ID,
		"unchanged_for", now.Sub(mark.since).Round(time.Millisecond), "messages", n)
	rc.o.Recovered(n)
	return front.publish(ctx, rc, req)
}

// frontier is what a stalled tree waits for: pending map invocations whose
// parent branched, pending reductions that are due, and finished child
// reductions their parent has not counted (runners re-drive the count).
type frontier struct {
	maps    []*kvmodel.Invocation
	reduces [][2]*kvmodel.Invocation // map invocation, its reduce invocation
}

func (f *frontier) add(n kvmodel.Node) {
	switch {
	case n.Map.State == kvmodel.StatePending:
		f.maps = append(f.maps, n.Map)
	case n.Reduce == nil:
		// a branch waiting for its children (or a failed map)
	case n.Reduce.State == kvmodel.StatePending,
		n.Reduce.State == kvmodel.StateDone && n.Map.Parent() != "" && !n.Counted:
		f.reduces = append(f.reduces, [2]*kvmodel.Invocation{n.Map, n.Reduce})
	}
}

func (f *frontier) publish(ctx context.Context, rc *recovery, req *kvmodel.Request) error {
	var errs []error
	for _, m := range f.maps {
		step, err := rc.o.Catalog.Step(ctx, req.WorkflowName, m.StepName)
		if err == nil {
			err = rc.o.Publish.PublishMaps(ctx, req.ID, req.WorkflowName, step, []string{m.ID})
		}
		errs = append(errs, err)
	}
	for _, p := range f.reduces {
		errs = append(errs, rc.o.Publish.PublishReduce(ctx, p[0], p[1]))
	}
	return errors.Join(errs...)
}

// expire fails a request that outlived RequestDeadline.
func (rc *recovery) expire(ctx context.Context, req *kvmodel.Request) error {
	f := &kvmodel.Failure{Kind: kvmodel.FailureDeadline,
		Message: fmt.Sprintf("the request did not finish within %s (jobx runner --request-deadline)", rc.o.RequestDeadline)}
	err := rc.o.Store.FailRequest(ctx, req, f, rc.o.Retention)
	if errors.Is(err, kvmodel.ErrConflict) {
		return nil // it ended, or moved on, since it was read
	}
	if err != nil {
		return err
	}
	rc.log.Warn("request failed: past its deadline", "workflow", req.WorkflowName, "request_id", req.ID, "deadline", rc.o.RequestDeadline)
	rc.o.Notify(ctx, req.WorkflowName, notifications.Event{Kind: notifications.RequestFailed, Name: "jobx.request", Level: "error",
		Message: fmt.Sprintf("request [%s] failed: %s", req.ID, f.Message), RequestID: req.ID})
	return nil
}
