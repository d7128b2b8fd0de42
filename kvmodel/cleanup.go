package kvmodel

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
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
		ops = append(ops, invocationOps(wf, m)...)
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

// invocationOps delete map invocation m of workflow wf and what belongs to
// it: its reduce invocation, datasets, relationships and session.
func invocationOps(wf, m string) []Op {
	return []Op{
		{Key: Key(&Invocation{WorkflowName: wf, ID: m}), Delete: true},
		{Key: Key(&Invocation{WorkflowName: wf, ID: ReduceID(m)}), Delete: true},
		DeletePrefixOp(QueueRoot + "dataset/" + wf + "/" + m + "/"),
		DeletePrefixOp(RelationshipsPrefix(wf, m)),
		DeletePrefixOp(SessionPrefix(wf, m)),
	}
}

// CleanMany carries out cleanups due as Clean carries out each, in fewer
// round trips: one read of their requests, one read per level of their
// invocation trees, and their deletes, each request's with its summary and
// queue entry, packed into as few transactions as etcd's limits allow. A
// request whose deletes would not fit one transaction, and those of a
// transaction etcd refuses (out of space: Clean then drops the summary),
// are cleaned one by one by Clean. It returns how many cleanups it
// carried out, the workflows whose histories grew (the caller keeps their
// bound with TrimHistory) and what failed.
func (s *Store) CleanMany(ctx context.Context, due []DueCleanup) (cleaned int, summarized map[string]bool, errs []error) {
	summarized = map[string]bool{}
	type cleanup struct {
		DueCleanup
		req  *Request // nil: gone or kept, only the queue entry goes
		ops  []Op
		sum  bool
		solo bool // too large to share a transaction
	}
	var (
		all  []*cleanup
		gets []clientv3.Op
	)
	for _, d := range due {
		all = append(all, &cleanup{DueCleanup: d})
		gets = append(gets, clientv3.OpGet(Key(&Request{WorkflowName: d.Workflow, ID: d.Request})))
	}
	resps, err := s.readMany(ctx, gets)
	if err != nil {
		return 0, summarized, []error{err}
	}
	type node struct {
		c *cleanup
		m string
	}
	var level []node
	live := all[:0]
	for i, c := range all {
		if kvs := resps[i].GetResponseRange().Kvs; len(kvs) > 0 {
			req := &Request{WorkflowName: c.Workflow, ID: c.Request}
			if err := decodeInto(req, kvs[0].Value, kvs[0].ModRevision); err != nil {
				errs = append(errs, fmt.Errorf("cleanup of request %s: %w", c.Request, err))
				continue
			}
			if !req.Keep {
				c.req = req
				level = append(level, node{c, req.InvocationID})
			}
		}
		live = append(live, c)
	}
	all = live
	// The trees, a level at a time; a request past one transaction's
	// worth of deletes is left to Clean, which splits them.
	for len(level) > 0 {
		gets = gets[:0]
		for _, n := range level {
			gets = append(gets, clientv3.OpGet(mappedPrefix(n.c.Workflow, n.m), clientv3.WithPrefix()))
		}
		if resps, err = s.readMany(ctx, gets); err != nil {
			return cleaned, summarized, append(errs, err)
		}
		var next []node
		for i, n := range level {
			if n.c.solo {
				continue
			}
			n.c.ops = append(n.c.ops, invocationOps(n.c.Workflow, n.m)...)
			if len(n.c.ops) > MaxTxnOps-3 {
				n.c.solo = true
				continue
			}
			children, err := decodeChildren(n.m, resps[i].GetResponseRange().Kvs)
			if err != nil {
				return cleaned, summarized, append(errs, err)
			}
			for _, id := range children {
				next = append(next, node{n.c, id})
			}
		}
		level = next
	}
	// Each request's deletes, then its queue entry and summary, packed.
	var (
		batch []*cleanup
		ops   []Op
		solo  []*cleanup
	)
	flush := func() {
		if len(batch) == 0 {
			return
		}
		if err := s.Apply(ctx, ops); err != nil {
			solo = append(solo, batch...)
		} else {
			for _, c := range batch {
				cleaned++
				if c.sum {
					summarized[c.Workflow] = true
				}
			}
		}
		batch, ops = batch[:0], ops[:0]
	}
	for _, c := range all {
		if c.solo {
			solo = append(solo, c)
			continue
		}
		if c.req != nil {
			c.ops = append(c.ops, Op{Key: Key(c.req), Delete: true})
			if sum, err := recentOp(c.req); err == nil {
				c.ops, c.sum = append(c.ops, sum), true
			}
		}
		c.ops = append(c.ops, Op{Key: c.Key, Delete: true})
		if !fits(append(ops[:len(ops):len(ops)], c.ops...), 0) {
			flush()
		}
		batch, ops = append(batch, c), append(ops, c.ops...)
	}
	flush()
	for _, c := range solo {
		if _, sum, err := s.Clean(ctx, c.DueCleanup); err != nil {
			errs = append(errs, fmt.Errorf("cleanup of request %s: %w", c.Request, err))
		} else {
			cleaned++
			if sum {
				summarized[c.Workflow] = true
			}
		}
	}
	return cleaned, summarized, errs
}

// readMany runs read ops in transactions of at most MaxTxnOps and returns
// their responses in order.
func (s *Store) readMany(ctx context.Context, ops []clientv3.Op) ([]*etcdserverpb.ResponseOp, error) {
	var out []*etcdserverpb.ResponseOp
	for len(ops) > 0 {
		n := min(len(ops), MaxTxnOps)
		tctx, cancel := s.ctx(ctx)
		resp, err := s.cli.Txn(tctx).Then(ops[:n]...).Commit()
		cancel()
		if err != nil {
			return nil, fmt.Errorf("read %d keys: %w", n, err)
		}
		out = append(out, resp.Responses...)
		ops = ops[n:]
	}
	return out, nil
}
