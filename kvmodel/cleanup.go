package kvmodel

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

const cleanupRoot = JobxRoot + "cleanup/"

// CleanupOp schedules request id of workflow wf for cleanup at due. The
// queue lives in etcd, ordered by due time, so it survives restarts and any
// runner may work it. A request may be scheduled more than once; cleanup is
// idempotent.
func CleanupOp(wf, id string, due time.Time) Op {
	return Op{Key: fmt.Sprintf("%s%016d/%s/%s", cleanupRoot, due.UnixMilli(), wf, id), Value: []byte("{}")}
}

// endOps returns the ops that end request req, done when f is nil and
// failed with f otherwise, and, unless the request is kept, schedule its
// cleanup after retention. req itself is left as it is.
func endOps(req *Request, f *Failure, retention time.Duration) []Op {
	return endedOps(ended(req, f), retention)
}

// doneOps is endOps for a request done with result, its root's reduction
// as stored, which the request also carries when it is small enough
// (MaxInlineResult).
func doneOps(req *Request, result []byte, retention time.Duration) []Op {
	d := ended(req, nil)
	d.Result = inlineResult(result)
	return endedOps(d, retention)
}

// ended is a copy of req ended now, done when f is nil and failed with f
// otherwise.
func ended(req *Request, f *Failure) *Request {
	d := *req
	d.IsDone, d.State, d.DoneTimestamp = true, StateDone, Now()
	if f != nil {
		d.State, d.Error = StateFailed, f
	}
	return &d
}

// endedOps writes ended request d and, unless it is kept, schedules its
// cleanup after retention.
func endedOps(d *Request, retention time.Duration) []Op {
	ops := []Op{PutOp(d)}
	if !d.Keep {
		ops = append(ops, CleanupOp(d.WorkflowName, d.ID, time.Now().Add(retention)))
	}
	return ops
}

// DueCleanup is one scheduled cleanup.
type DueCleanup struct {
	Key      string
	Workflow string
	Request  string
}

// DueCleanups returns up to limit cleanups due at now, oldest first.
func (s *Store) DueCleanups(ctx context.Context, now time.Time, limit int64) ([]DueCleanup, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	end := fmt.Sprintf("%s%016d0", cleanupRoot, now.UnixMilli())
	resp, err := s.cli.Get(ctx, cleanupRoot, clientv3.WithRange(end), clientv3.WithLimit(limit), clientv3.WithKeysOnly())
	if err != nil {
		return nil, fmt.Errorf("read cleanup queue: %w", err)
	}
	var out []DueCleanup
	for _, kv := range resp.Kvs {
		parts := strings.Split(strings.TrimPrefix(string(kv.Key), cleanupRoot), "/")
		if len(parts) != 3 {
			continue
		}
		out = append(out, DueCleanup{Key: string(kv.Key), Workflow: parts[1], Request: parts[2]})
	}
	return out, nil
}

// CompleteCleanup removes a cleanup from the queue.
func (s *Store) CompleteCleanup(ctx context.Context, c DueCleanup) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	_, err := s.cli.Delete(ctx, c.Key)
	return err
}

// PruneRequest deletes a request and everything it made: every invocation
// reachable from its root (map and reduce), their datasets, relationships
// and sessions; the request's summary goes into the workflow's history
// when etcd takes it. A request that is already gone is not an error. A request
// marked Keep is left alone unless force is set.
func (s *Store) PruneRequest(ctx context.Context, wf, id string, force bool) (invocations int, err error) {
	invocations, summarized, err := s.prune(ctx, wf, id, force, "")
	if summarized {
		s.TrimHistory(ctx, wf)
	}
	return invocations, err
}

// Clean carries out cleanup c: it prunes c's request as PruneRequest does
// (a kept request is left alone) and removes c from the queue, in the
// prune's last transaction with the request's summary. summarized reports
// whether the summary went into the workflow's history, whose bound the
// caller then keeps with TrimHistory, once for a batch of cleanups.
func (s *Store) Clean(ctx context.Context, c DueCleanup) (invocations int, summarized bool, err error) {
	return s.prune(ctx, c.Workflow, c.Request, false, c.Key)
}

// prune deletes request id of workflow wf and what it made (see
// PruneRequest), and the cleanup key done when it is not "". The last
// transaction also writes the request's summary; when etcd refuses that
// (out of space, NOSPACE, where only deletes work, and a cleanup must work
// then above all) it deletes without it.
func (s *Store) prune(ctx context.Context, wf, id string, force bool, done string) (invocations int, summarized bool, err error) {
	var last []Op
	if done != "" {
		last = append(last, Op{Key: done, Delete: true})
	}
	req := &Request{WorkflowName: wf, ID: id}
	if err := s.Get(ctx, req); errors.Is(err, ErrNotFound) || (err == nil && req.Keep && !force) {
		return 0, false, s.Apply(ctx, last)
	} else if err != nil {
		return 0, false, err
	}
	var ops []Op
	queue := []string{req.InvocationID}
	for len(queue) > 0 {
		m := queue[0]
		queue = queue[1:]
		children, err := s.Children(ctx, wf, m)
		if err != nil {
			return invocations, false, err
		}
		queue = append(queue, children...)
		invocations++
		ops = append(ops,
			Op{Key: Key(&Invocation{WorkflowName: wf, ID: m}), Delete: true},
			Op{Key: Key(&Invocation{WorkflowName: wf, ID: ReduceID(m)}), Delete: true},
			DeletePrefixOp(QueueRoot+"dataset/"+wf+"/"+m+"/"),
			DeletePrefixOp(RelationshipsPrefix(wf, m)),
			DeletePrefixOp(SessionPrefix(wf, m)),
		)
		if len(ops) >= 4*MaxTxnOps {
			if err := s.Apply(ctx, ops); err != nil {
				return invocations, false, err
			}
			ops = ops[:0]
		}
	}
	ops = append(ops, Op{Key: Key(req), Delete: true})
	ops = append(ops, last...)
	if sum, err := recentOp(req); err == nil && s.Apply(ctx, append(ops, sum)) == nil {
		return invocations, true, nil
	}
	return invocations, false, s.Apply(ctx, ops)
}
