package runner

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/jobx/jobx/kvmodel"
)

// counters decrements parents' mapped_waiting counters with group commit:
// every child reduction of one parent that finishes while a decrement of
// that parent is in flight joins the next transaction, so the children a
// runner completes concurrently cost one transaction instead of racing
// each other's compare-and-swap. A marker per counted child makes the
// decrement idempotent: a redelivered reduction never counts twice.
//
// A fused leaf (fused.go) brings its own commit along (commitLeaf): the
// leaves of a batch commit in the same transaction as their parent's
// decrement, each under its own conditions, so a leaf waits on one
// fsync'd write instead of two.
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
	children []string // every caller's, in order
	leaves   []*leafCommit
	done     chan struct{}
	zero     *kvmodel.Invocation // the parent, when this batch brought it to 0
	err      error
}

// leafCommit is a leaf's own commit (nil: none), made with its parent's
// decrement.
type leafCommit struct {
	child     string
	tr        *kvmodel.Transition
	committed bool // set when the batch is done
}

// maxCounterAttempts bounds the compare-and-swap retries of one batch
// (contention from other runners); the message is then retried.
const maxCounterAttempts = 100

// decrement counts child as done for parent. It returns the parent
// invocation when this decrement (or the batch it joined) brought its
// counter to zero, so the caller queues the parent's reduction.
func (c *counters) decrement(ctx context.Context, wf, parent, child string) (*kvmodel.Invocation, error) {
	return c.join(ctx, wf, parent, child, nil)
}

// commitLeaf commits leaf child's transition tr and counts it done in
// parent, in one transaction with the other leaves of its batch (or, when
// that fails, on its own and then counted). committed is false when tr's
// conditions did not hold. zero is as for decrement.
func (c *counters) commitLeaf(ctx context.Context, wf, parent, child string, tr *kvmodel.Transition) (committed bool, zero *kvmodel.Invocation, err error) {
	l := &leafCommit{child: child, tr: tr}
	if zero, err = c.join(ctx, wf, parent, child, l); err != nil {
		return false, nil, err // l.committed is the committer's until its batch is done
	}
	return l.committed, zero, nil
}

// leafFits reports whether a leaf's commit can ride in a batch: alone in
// a transaction, with its marker and the parent's writes, within etcd's
// limits.
func leafFits(tr *kvmodel.Transition) bool {
	return tr.Conds()+2 <= kvmodel.MaxTxnOps && tr.Ops()+3 <= kvmodel.MaxTxnOps && tr.Size() <= maxBatchBytes
}

// maxBatchBytes leaves room under etcd's request limit for the parent's
// writes and the transaction's framing.
const maxBatchBytes = kvmodel.MaxTxnBytes - 128<<10

func (c *counters) join(ctx context.Context, wf, parent, child string, leaf *leafCommit) (*kvmodel.Invocation, error) {
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
	if leaf != nil {
		b.leaves = append(b.leaves, leaf)
	}
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
		b.zero, b.err = c.commitBatch(ctx, wf, parent, st, b)
		close(b.done)
	}
}

// commitBatch commits a batch: its leaves' own commits and every child's
// decrement, in as few transactions as etcd's limits allow.
func (c *counters) commitBatch(ctx context.Context, wf, parent string, st *counterState, b *counterBatch) (*kvmodel.Invocation, error) {
	seen := map[string]bool{}
	var all []*leafCommit
	for _, l := range b.leaves {
		if !seen[l.child] { // a duplicate delivery's second copy stays uncommitted
			seen[l.child] = true
			all = append(all, l)
		}
	}
	for _, ch := range b.children {
		if !seen[ch] { // a child committed elsewhere: only its decrement
			seen[ch] = true
			all = append(all, &leafCommit{child: ch})
		}
	}
	var zero *kvmodel.Invocation
	for len(all) > 0 {
		n, ops, cmps, size := 0, 3, 1, 0
		for n < len(all) {
			l := all[n]
			ops, cmps, size = ops+l.tr.Ops()+1, cmps+l.tr.Conds()+1, size+l.tr.Size()
			if n > 0 && (ops > kvmodel.MaxTxnOps || cmps > kvmodel.MaxTxnOps || size > maxBatchBytes) {
				break
			}
			n++
		}
		z, err := c.commitLeaves(ctx, wf, parent, st, all[:n])
		if err != nil {
			return zero, err
		}
		if z != nil {
			zero = z
		}
		all = all[n:]
	}
	return zero, nil
}

// commitLeaves applies one transaction's worth of a batch: each leaf's
// own commit (if it has one) and its count in parent
// (kvmodel.Store.CountChildren); the count that reaches zero also creates
// the parent's reduce invocation. A transaction that fails because the
// parent changed (another runner's decrement) is retried on a fresh read.
// One that fails otherwise (a leaf's own conditions) is split: each leaf
// commits alone, and those that did are counted.
func (c *counters) commitLeaves(ctx context.Context, wf, parent string, st *counterState, leaves []*leafCommit) (*kvmodel.Invocation, error) {
	own := false // whether any leaf brings its own commit
	for _, l := range leaves {
		own = own || l.tr != nil
	}
	counted := map[string]bool{}
	if st.parent == nil {
		if err := c.readParent(ctx, wf, parent, st, leaves, counted); err != nil {
			return nil, err
		}
	}
	var todo []*leafCommit
	for attempt := 0; attempt < maxCounterAttempts; attempt++ {
		todo = todo[:0]
		for _, l := range leaves {
			if !counted[l.child] { // counted: committed before, by a duplicate
				todo = append(todo, l)
			}
		}
		if len(todo) == 0 {
			return nil, nil
		}
		counts := make([]kvmodel.Count, len(todo))
		for i, l := range todo {
			counts[i] = kvmodel.Count{Child: l.child, Leaf: l.tr}
		}
		p, err := c.store.CountChildren(ctx, st.parent, counts)
		if err == nil {
			st.parent = p
			for _, l := range todo {
				l.committed = true
			}
			if *p.MappedWaiting == 0 {
				return p, nil
			}
			return nil, nil
		}
		if !errors.Is(err, kvmodel.ErrConflict) {
			return nil, fmt.Errorf("decrement parent counter: %w", err)
		}
		revBefore, uncountedBefore := st.parent.Revision(), len(todo)
		if err := c.readParent(ctx, wf, parent, st, leaves, counted); err != nil {
			return nil, err
		}
		if own && st.parent.Revision() == revBefore && uncounted(leaves, counted) == uncountedBefore {
			break // neither the parent nor a marker explains it: a leaf's own conditions failed
		}
	}
	if !own {
		return nil, fmt.Errorf("parent counter of %s: %w after %d attempts", parent, kvmodel.ErrConflict, maxCounterAttempts)
	}
	// Each leaf alone, then the committed ones counted.
	var done []*leafCommit
	for _, l := range todo {
		if counted[l.child] {
			continue
		}
		var err error
		if l.tr != nil { // else a decrement only: nothing of its own to fail
			_, err = c.store.Do(ctx, l.tr)
		}
		if err != nil && !errors.Is(err, kvmodel.ErrConflict) {
			return nil, fmt.Errorf("commit leaf %s: %w", l.child, err)
		}
		if l.committed = err == nil; l.committed {
			done = append(done, &leafCommit{child: l.child})
		}
	}
	if len(done) == 0 {
		return nil, nil
	}
	return c.commitLeaves(ctx, wf, parent, st, done)
}

func uncounted(leaves []*leafCommit, counted map[string]bool) int {
	n := 0
	for _, l := range leaves {
		if !counted[l.child] {
			n++
		}
	}
	return n
}

// readParent reads parent into st, and into counted which of leaves are
// counted already.
func (c *counters) readParent(ctx context.Context, wf, parent string, st *counterState, leaves []*leafCommit, counted map[string]bool) error {
	children := make([]string, len(leaves))
	for i, l := range leaves {
		children[i] = l.child
	}
	p, done, err := c.store.ReadCount(ctx, wf, parent, children)
	if err != nil {
		return err
	}
	st.parent = p
	for i, l := range leaves {
		counted[l.child] = done[i]
	}
	return nil
}
