package runner

import (
	"context"
	"fmt"
	"sync"

	"github.com/jobx/jobx/kvmodel"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// counters decrements parents' mapped_waiting counters with group commit:
// every child reduction of one parent that finishes while a decrement of
// that parent is in flight joins the next transaction, so the children a
// runner completes concurrently cost one transaction instead of racing
// each other's compare-and-swap. A marker per counted child makes the
// decrement idempotent: a redelivered reduction never counts twice.
type counters struct {
	store *kvmodel.Store
	mu    sync.Mutex // guards parents
	// parents maps workflow/parent to the batch being collected for it; an
	// entry exists while a committer works on that parent.
	parents map[string]*counterState
}

type counterState struct {
	next   *counterBatch
	parent *kvmodel.Invocation // last read or written value
}

type counterBatch struct {
	children []string
	done     chan struct{}
	zero     *kvmodel.Invocation // the parent, when this batch brought it to 0
	err      error
}

// maxCounterAttempts bounds the compare-and-swap retries of one batch
// (contention from other runners); the message is then retried.
const maxCounterAttempts = 100

func countedKey(wf, child string) string {
	return kvmodel.CountedKey(wf, child)
}

// decrement counts child as done for parent. It returns the parent
// invocation when this decrement (or the batch it joined) brought its
// counter to zero, so the caller queues the parent's reduction.
func (c *counters) decrement(ctx context.Context, wf, parent, child string) (*kvmodel.Invocation, error) {
	key := wf + "/" + parent
	c.mu.Lock()
	st, running := c.parents[key]
	if !running {
		st = &counterState{}
		c.parents[key] = st
	}
	if st.next == nil {
		st.next = &counterBatch{done: make(chan struct{})}
	}
	b := st.next
	b.children = append(b.children, child)
	c.mu.Unlock()
	if !running {
		go c.commitLoop(context.WithoutCancel(ctx), wf, parent, key, st)
	}
	select {
	case <-b.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if b.err != nil {
		return nil, b.err
	}
	if b.zero != nil && b.children[0] == child {
		return b.zero, nil // one caller per batch queues the reduction
	}
	return nil, nil
}

// commitLoop commits batches for one parent until none is waiting.
func (c *counters) commitLoop(ctx context.Context, wf, parent, key string, st *counterState) {
	for {
		c.mu.Lock()
		b := st.next
		if b == nil {
			delete(c.parents, key)
			c.mu.Unlock()
			return
		}
		st.next = nil
		c.mu.Unlock()
		b.zero, b.err = c.commit(ctx, wf, parent, st, dedupe(b.children))
		close(b.done)
	}
}

func dedupe(ids []string) []string {
	seen := make(map[string]bool, len(ids))
	out := ids[:0:0]
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// commit applies one batch: parent.mapped_waiting -= len(children not yet
// counted), with their markers, in one transaction; the decrement that
// reaches zero also creates the parent's reduce invocation.
func (c *counters) commit(ctx context.Context, wf, parent string, st *counterState, children []string) (*kvmodel.Invocation, error) {
	pkey := kvmodel.Key(&kvmodel.Invocation{WorkflowName: wf, ID: parent})
	counted := map[string]bool{}
	for attempt := 0; attempt < maxCounterAttempts; attempt++ {
		if st.parent == nil || attempt > 0 {
			// Read the parent and which children are already counted.
			ops := []clientv3.Op{clientv3.OpGet(pkey)}
			for _, ch := range children {
				ops = append(ops, clientv3.OpGet(countedKey(wf, ch), clientv3.WithCountOnly()))
			}
			resp, err := c.store.Client().Txn(ctx).Then(ops...).Commit()
			if err != nil {
				return nil, fmt.Errorf("read parent counter: %w", err)
			}
			kvs := kvsOf(resp.Responses[0])
			if len(kvs) == 0 {
				return nil, fmt.Errorf("parent invocation %s: %w", parent, kvmodel.ErrNotFound)
			}
			p := &kvmodel.Invocation{}
			if err := kvmodel.Decode(p, string(kvs[0].Key), kvs[0].Value, kvs[0].ModRevision); err != nil {
				return nil, err
			}
			st.parent = p
			for i, ch := range children {
				counted[ch] = resp.Responses[i+1].GetResponseRange().Count > 0
			}
		}
		var todo []string
		for _, ch := range children {
			if !counted[ch] {
				todo = append(todo, ch)
			}
		}
		if len(todo) == 0 {
			return nil, nil
		}
		p := *st.parent
		if p.MappedWaiting == nil || *p.MappedWaiting < len(todo) {
			return nil, fmt.Errorf("parent invocation %s: %d children to count but mapped_waiting is %v", parent, len(todo), p.MappedWaiting)
		}
		p.MappedWaiting = kvmodel.IntPtr(*p.MappedWaiting - len(todo))
		cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(pkey), "=", st.parent.Revision())}
		then := []clientv3.Op{clientv3.OpPut(pkey, string(mustEncode(&p)))}
		for _, ch := range todo {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(countedKey(wf, ch)), "=", 0))
			then = append(then, clientv3.OpPut(countedKey(wf, ch), "{}"))
		}
		if *p.MappedWaiting == 0 {
			red := newReduceInvocation(&p)
			then = append(then, clientv3.OpPut(kvmodel.Key(red), string(mustEncode(red))))
		}
		resp, err := c.store.Client().Txn(ctx).If(cmps...).Then(then...).Commit()
		if err != nil {
			return nil, fmt.Errorf("decrement parent counter: %w", err)
		}
		if resp.Succeeded {
			p.SetRevision(resp.Header.Revision)
			st.parent = &p
			if *p.MappedWaiting == 0 {
				return &p, nil
			}
			return nil, nil
		}
	}
	return nil, fmt.Errorf("parent counter of %s: %w after %d attempts", parent, kvmodel.ErrConflict, maxCounterAttempts)
}

func mustEncode(e kvmodel.Entity) []byte {
	b, err := kvmodel.Encode(e)
	if err != nil {
		panic(err)
	}
	return b
}
