package runner

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jobx/jobx/internal/notifications"
	"github.com/jobx/jobx/kvmodel"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// recovery finds the requests whose work stopped moving and drives them on.
//
// Messages carry ids only and every commit is conditional, so a message
// published twice changes nothing; but a message that is never delivered
// leaves its request pending for ever. That happens when nsqd dies with
// SIGKILL (the messages it had in flight or in memory are gone) or when a
// gateway dies between recording a request and queueing it. One runner of
// the cluster (elected in etcd) walks, every StallAfter/4, the trees of the
// pending requests older than StallAfter; a request whose tree has not
// changed for StallAfter gets the messages of its frontier published again.
// A request older than RequestDeadline fails with kind "deadline".
type recovery struct {
	r *Runner
	// seen remembers, per pending request, the tree's fingerprint and when
	// it was first seen with it.
	seen map[string]stallMark
	now  func() time.Time
}

type stallMark struct {
	fingerprint [2]int64 // highest mod revision, invocations seen
	since       time.Time
}

// recoverLoop campaigns for the recovery role and sweeps while it holds it.
func (r *Runner) recoverLoop(ctx context.Context) {
	rc := &recovery{r: r, seen: map[string]stallMark{}, now: time.Now}
	for ctx.Err() == nil {
		if err := rc.lead(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("recovery: lost or could not take the role; retrying", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

// lead becomes the cluster's recovery runner, then sweeps until its etcd
// session ends.
func (rc *recovery) lead(ctx context.Context) error {
	r := rc.r
	sess, err := concurrency.NewSession(r.store.Client(), concurrency.WithTTL(int(max(r.opts.LeaseTTL/time.Second, 2))), concurrency.WithContext(ctx))
	if err != nil {
		return err
	}
	defer sess.Close()
	el := concurrency.NewElection(sess, kvmodel.JobxRoot+"recovery/")
	if err := el.Campaign(ctx, r.opts.ID); err != nil {
		return err
	}
	r.log.Debug("recovery: this runner sweeps for stalled requests")
	clear(rc.seen) // what another runner saw is unknown here: start afresh
	t := time.NewTicker(rc.every())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sess.Done():
			return errors.New("recovery: etcd session ended")
		case <-t.C:
		}
		if err := rc.sweep(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("recovery sweep", "err", err)
		}
	}
}

// every is the sweep period: a quarter of StallAfter, or with recovery off
// a tenth of RequestDeadline (at most a minute).
func (rc *recovery) every() time.Duration {
	o := rc.r.opts
	d := o.StallAfter / 4
	if o.StallAfter == 0 {
		d = min(o.RequestDeadline/10, time.Minute)
	}
	return max(d, 100*time.Millisecond)
}

// sweep looks at every pending request once.
func (rc *recovery) sweep(ctx context.Context) error {
	r := rc.r
	reqs, err := kvmodel.List[kvmodel.Request](ctx, r.store)
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
		if r.opts.RequestDeadline > 0 && age > r.opts.RequestDeadline {
			if err := rc.expire(ctx, req); err != nil {
				r.log.Warn("recovery: fail a request past its deadline", "workflow", req.WorkflowName, "request_id", req.ID, "err", err)
			}
			continue
		}
		if r.opts.StallAfter == 0 || age < r.opts.StallAfter {
			continue
		}
		key := req.WorkflowName + "/" + req.ID
		live[key] = true
		if err := rc.check(ctx, key, req, now); err != nil {
			r.log.Warn("recovery: check a request", "workflow", req.WorkflowName, "request_id", req.ID, "err", err)
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
	r := rc.r
	var fp [2]int64
	var front frontier
	err := r.store.WalkTree(ctx, req.WorkflowName, req.InvocationID, func(n kvmodel.Node) error {
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
	if now.Sub(mark.since) < r.opts.StallAfter {
		return nil
	}
	rc.seen[key] = stallMark{fingerprint: fp, since: now} // at most once per StallAfter
	n := len(front.maps) + len(front.reduces)
	r.log.Warn("request stalled: publishing its pending invocations again", "workflow", req.WorkflowName, "request_id", req.ID,
		"unchanged_for", now.Sub(mark.since).Round(time.Millisecond), "messages", n)
	r.metrics.recovered.Add(float64(n))
	return front.publish(ctx, r, req)
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

func (f *frontier) publish(ctx context.Context, r *Runner, req *kvmodel.Request) error {
	var errs []error
	for _, m := range f.maps {
		step, err := r.catalog.Step(ctx, req.WorkflowName, m.StepName)
		if err == nil {
			err = r.publishMaps(ctx, req.ID, req.WorkflowName, step, []string{m.ID})
		}
		errs = append(errs, err)
	}
	for _, p := range f.reduces {
		errs = append(errs, r.publishReduce(ctx, p[0], p[1]))
	}
	return errors.Join(errs...)
}

// expire fails a request that outlived RequestDeadline.
func (rc *recovery) expire(ctx context.Context, req *kvmodel.Request) error {
	r := rc.r
	f := &kvmodel.Failure{Kind: "deadline",
		Message: fmt.Sprintf("the request did not finish within %s (jobx runner --request-deadline)", r.opts.RequestDeadline)}
	ops := kvmodel.EndOps(req, f, r.opts.Retention)
	resp, err := r.store.Commit(ctx, []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(kvmodel.Key(req)), "=", req.Revision())}, nil, ops)
	if err != nil || !resp.Succeeded {
		return err
	}
	r.log.Warn("request failed: past its deadline", "workflow", req.WorkflowName, "request_id", req.ID, "deadline", r.opts.RequestDeadline)
	r.notify(ctx, req.WorkflowName, notifications.Event{Kind: notifications.RequestFailed, Name: "jobx.request", Level: "error",
		Message: fmt.Sprintf("request [%s] failed: %s", req.ID, f.Message), RequestID: req.ID})
	return nil
}
