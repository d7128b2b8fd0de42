package kvmodel

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// The verbs below are the state transitions of a request and its
// invocations. Each is one etcd transaction under the conditions it names
// (bulk data that does not fit goes ahead in earlier transactions, visible
// only through the final commit); a condition that does not hold is
// returned as ErrExists or ErrConflict, wrapped, and nothing of the final
// commit is written.

// Seen is what a transition of an invocation was decided on: the
// invocation and its request as the caller read them. The transition
// commits only if neither changed since (ErrConflict otherwise): a
// duplicate delivery finished the invocation meanwhile, or the request
// ended.
type Seen struct {
	Invocation *Invocation
	Request    *Request
	// Fresh means Invocation is a message's copy of it as created, not a
	// read: it must not have been written since its creation (ids are
	// never reused, so a delete and re-creation cannot pass for it).
	Fresh bool
}

func (s Seen) conds() []clientv3.Cmp {
	ik := Key(s.Invocation)
	inv := clientv3.Compare(clientv3.ModRevision(ik), "=", s.Invocation.Revision())
	if s.Fresh {
		inv = clientv3.Compare(clientv3.Version(ik), "=", 1)
	}
	return []clientv3.Cmp{inv, unchanged(s.Request)}
}

// unchanged holds while e is at the revision it was read or written at.
func unchanged(e Entity) clientv3.Cmp {
	return clientv3.Compare(clientv3.ModRevision(Key(e)), "=", e.Revision())
}

// absent holds while key does not exist.
func absent(key string) clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
}

// Transition is a state change made ready but not committed: the
// conditions it commits under and its writes. Store.Do commits one alone;
// CountChildren commits children's transitions with their parent's count.
// FusedLeaf builds one; the Store verbs build and commit theirs.
type Transition struct {
	what   string // for errors: "record leaf <id>"
	conds  []clientv3.Cmp
	bulk   []Op // may go ahead in earlier transactions when it does not fit with final
	final  []Op
	failed error // what a condition that does not hold means
}

// Conds is the number of conditions t adds to a transaction (0 for nil).
func (t *Transition) Conds() int {
	if t == nil {
		return 0
	}
	return len(t.conds)
}

// Ops is the number of writes t adds to a transaction (0 for nil).
func (t *Transition) Ops() int {
	if t == nil {
		return 0
	}
	return len(t.bulk) + len(t.final)
}

// Size is about the bytes t adds to a transaction (0 for nil); see
// MaxTxnBytes.
func (t *Transition) Size() int {
	if t == nil {
		return 0
	}
	n := 0
	for _, o := range t.bulk {
		n += o.Size()
	}
	for _, o := range t.final {
		n += o.Size()
	}
	return n
}

// Do commits t on its own and returns the revision it committed at; a
// condition of t that does not hold is ErrConflict (or ErrExists), wrapped.
func (s *Store) Do(ctx context.Context, t *Transition) (int64, error) {
	resp, err := s.Commit(ctx, t.conds, t.bulk, t.final)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", t.what, err)
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("%s: %w", t.what, t.failed)
	}
	return resp.Header.Revision, nil
}

// CreateRequest creates request req, pending, with its root map
// invocation root (pending) and root's arguments args; ErrExists when
// req's id is taken. Both get the creation's revision.
func (s *Store) CreateRequest(ctx context.Context, req *Request, root *Invocation, args []byte) error {
	return s.createRequest(ctx, req, root, args, []Op{PutOp(root), PutOp(req)})
}

// CreateFailedRequest creates request req already ended as failed with f
// (one that could never run, e.g. for want of a runner), with its root map
// invocation root, failed with f too, and root's arguments args, so that
// the request can be looked up like any other; ErrExists when req's id is
// taken. Unless req is kept, its cleanup is scheduled after retention.
// Both get the creation's revision.
func (s *Store) CreateFailedRequest(ctx context.Context, req *Request, root *Invocation, args []byte, f *Failure, retention time.Duration) error {
	root.State, root.Failure = StateFailed, f
	return s.createRequest(ctx, req, root, args, append([]Op{PutOp(root)}, endOps(req, f, retention)...))
}

func (s *Store) createRequest(ctx context.Context, req *Request, root *Invocation, args []byte, final []Op) error {
	rev, err := s.Do(ctx, &Transition{
		what:  "create request " + req.ID,
		conds: []clientv3.Cmp{absent(Key(req))},
		bulk:  DatasetOps(req.WorkflowName, root.ID, Arguments, args),
		final: final, failed: ErrExists,
	})
	if err != nil {
		return err
	}
	req.SetRevision(rev)
	root.SetRevision(rev)
	return nil
}

// FailRequest ends request req as failed with f, unless req changed since
// it was read (ErrConflict): it ended, or an invocation moved it on.
// Unless req is kept, its cleanup is scheduled after retention.
func (s *Store) FailRequest(ctx context.Context, req *Request, f *Failure, retention time.Duration) error {
	_, err := s.Do(ctx, &Transition{
		what:  "fail request " + req.ID,
		conds: []clientv3.Cmp{unchanged(req)},
		final: endOps(req, f, retention), failed: ErrConflict,
	})
	return err
}

// FailInvocation records invocation seen.Invocation as failed with f and
// ends its request as failed with f, naming the invocation. f is completed
// with the invocation's id, direction and (unless set) step. Unless the
// request is kept, its cleanup is scheduled after retention.
func (s *Store) FailInvocation(ctx context.Context, seen Seen, f *Failure, retention time.Duration) error {
	t := seen.Invocation
	f.InvocationID, f.Direction = t.ID, t.Direction
	if f.Step == "" {
		f.Step = t.StepName
	}
	inv := *t
	inv.State, inv.Failure, inv.FinishedTimestamp = StateFailed, f, Now()
	text := f.Message
	if f.StderrTail != "" {
		text += "\n--- stderr (tail) ---\n" + f.StderrTail
	}
	inv.Error = &text
	inv.HandlerName = f.Handler
	req := *seen.Request
	req.FailedInvocationID = StrPtr(t.ID)
	_, err := s.Do(ctx, &Transition{
		what:  "fail invocation " + t.ID,
		conds: seen.conds(),
		final: append([]Op{PutOp(&inv)}, endOps(&req, f, retention)...), failed: ErrConflict,
	})
	return err
}

// NewReduceInvocation returns the pending reduce invocation of map
// invocation m.
func NewReduceInvocation(m *Invocation) *Invocation {
	return &Invocation{
		ID: ReduceID(m.ID), WorkflowName: m.WorkflowName, RequestID: m.RequestID,
		ParentInvocationID: StrPtr(m.ID), StepName: m.StepName,
		Direction: DirectionReduce, State: StatePending, CreatedTimestamp: Now(),
	}
}

// RecordLeaf records leaf map invocation seen.Invocation as done (done is
// it, done), with its combined output combined and its pending reduce
// invocation red, which gets the commit's revision.
func (s *Store) RecordLeaf(ctx context.Context, seen Seen, done *Invocation, combined []byte, red *Invocation) error {
	rev, err := s.Do(ctx, &Transition{
		what:  "record leaf " + done.ID,
		conds: seen.conds(),
		bulk:  DatasetOps(done.WorkflowName, done.ID, PostCombine, combined),
		final: []Op{PutOp(done), PutOp(red)}, failed: ErrConflict,
	})
	if err != nil {
		return err
	}
	red.SetRevision(rev)
	return nil
}

// RecordBranch records map invocation seen.Invocation as done (done is it,
// done) and branched to children, map invocations of step, pending, each
// with its arguments args[i]: their list, in order, on the parent, and its
// mapped_count and mapped_waiting at len(children). With no children,
// nothing would count the parent down: its reduce invocation is created at
// once and returned (nil otherwise). stored holds each child's value as
// written, for the copies a queue message carries.
func (s *Store) RecordBranch(ctx context.Context, seen Seen, done *Invocation, step string, children []*Invocation, args [][]byte) (red *Invocation, stored [][]byte, err error) {
	wf := done.WorkflowName
	ids := make([]string, len(children))
	stored = make([][]byte, len(children))
	var bulk []Op
	for i, c := range children {
		ids[i] = c.ID
		put := PutOp(c)
		stored[i] = put.Value
		bulk = append(bulk, put)
		bulk = append(bulk, DatasetOps(wf, c.ID, Arguments, args[i])...)
	}
	bulk = append(bulk, MappedOps(wf, done.ID, ids)...)
	d := *done
	d.MappedCount, d.MappedWaiting, d.MappedStep = IntPtr(len(ids)), IntPtr(len(ids)), step
	final := []Op{PutOp(&d)}
	if len(ids) == 0 {
		red = NewReduceInvocation(done)
		final = append(final, PutOp(red))
	}
	rev, err := s.Do(ctx, &Transition{what: "record branch " + done.ID, conds: seen.conds(), bulk: bulk, final: final, failed: ErrConflict})
	if err != nil {
		return nil, nil, err
	}
	if red != nil {
		red.SetRevision(rev)
	}
	return red, stored, nil
}

// RecordReduction records reduce invocation seen.Invocation as done (done
// is it, done), having reduced map invocation m to reduced; at the root (m
// has no parent) it also ends the request as done, scheduling its cleanup
// after retention unless it is kept. Counting m in its parent is
// CountChildren's.
func (s *Store) RecordReduction(ctx context.Context, seen Seen, done, m *Invocation, reduced []byte, retention time.Duration) error {
	_, err := s.Do(ctx, &Transition{
		what:  "record reduction of " + m.ID,
		conds: seen.conds(),
		bulk:  DatasetOps(m.WorkflowName, m.ID, PostReduce, reduced),
		final: reductionOps(seen.Request, done, m, reduced, retention), failed: ErrConflict,
	})
	return err
}

func reductionOps(req *Request, done, m *Invocation, reduced []byte, retention time.Duration) []Op {
	ops := []Op{PutOp(done), ReducedOp(m.WorkflowName, m.ID, done.ID)}
	if m.Parent() == "" {
		ops = append(ops, doneOps(req, reduced, retention)...)
	}
	return ops
}

// FusedLeaf is leaf map invocation seen.Invocation recorded as done (m is
// it, done) with its combined output combined and, in the same commit, its
// reduction: its reduce invocation red, done, and m's reduced output
// reduced, as RecordLeaf then RecordReduction would. Commit it with Do, or
// with the count of m in its parent (CountChildren).
func FusedLeaf(seen Seen, m *Invocation, combined []byte, red *Invocation, reduced []byte, retention time.Duration) *Transition {
	wf := m.WorkflowName
	return &Transition{
		what:  "record leaf " + m.ID + " and its reduction",
		conds: seen.conds(),
		bulk:  append(DatasetOps(wf, m.ID, PostCombine, combined), DatasetOps(wf, m.ID, PostReduce, reduced)...),
		final: append([]Op{PutOp(m)}, reductionOps(seen.Request, red, m, reduced, retention)...), failed: ErrConflict,
	}
}

// Count is one child counted into its parent by CountChildren. Leaf, when
// set, is the child's own transition, committed with the count.
type Count struct {
	Child string
	Leaf  *Transition
}

// CountChildren counts children of map invocation parent (as read, with
// its revision) as reduced: it lowers parent's mapped_waiting by
// len(counts), marks each child counted and commits each count's Leaf, in
// one transaction. The count that reaches zero also creates parent's
// reduce invocation. It returns parent as written, with its revision.
//
// It fails with ErrConflict, wrapped, when parent changed since it was
// read, a child was counted before, or a Leaf's conditions do not hold:
// then nothing is written. Counting more children than parent waits for
// is ErrInvalid. A batch must fit etcd's limits (MaxTxnOps, MaxTxnBytes):
// 3 writes and 1 condition, plus 1 of each and the Leaf's for each count.
func (s *Store) CountChildren(ctx context.Context, parent *Invocation, counts []Count) (*Invocation, error) {
	if parent.MappedWaiting == nil || *parent.MappedWaiting < len(counts) {
		return nil, fmt.Errorf("parent invocation %s: %d children to count but mapped_waiting is %v: %w", parent.ID, len(counts), parent.MappedWaiting, ErrInvalid)
	}
	p := *parent
	p.MappedWaiting = IntPtr(*p.MappedWaiting - len(counts))
	wf := p.WorkflowName
	cmps := []clientv3.Cmp{unchanged(parent)}
	then := []clientv3.Op{PutOp(&p).etcd()}
	for _, c := range counts {
		key := CountedKey(wf, c.Child)
		then = append(then, clientv3.OpPut(key, "{}"))
		if c.Leaf != nil {
			cmps = append(cmps, c.Leaf.conds...)
			then = append(append(then, etcdOps(c.Leaf.bulk)...), etcdOps(c.Leaf.final)...)
		}
		cmps = append(cmps, absent(key))
	}
	if *p.MappedWaiting == 0 {
		then = append(then, PutOp(NewReduceInvocation(&p)).etcd())
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	resp, err := s.cli.Txn(ctx).If(cmps...).Then(then...).Commit()
	if err != nil {
		return nil, fmt.Errorf("count %d children of %s: %w", len(counts), parent.ID, err)
	}
	if !resp.Succeeded {
		return nil, fmt.Errorf("count %d children of %s: %w", len(counts), parent.ID, ErrConflict)
	}
	p.SetRevision(resp.Header.Revision)
	return &p, nil
}

// ReadCount reads map invocation parent of workflow wf and, in the same
// revision, which of children are counted in it (CountChildren).
func (s *Store) ReadCount(ctx context.Context, wf, parent string, children []string) (*Invocation, []bool, error) {
	ops := []clientv3.Op{clientv3.OpGet(Key(&Invocation{WorkflowName: wf, ID: parent}))}
	for _, c := range children {
		ops = append(ops, clientv3.OpGet(CountedKey(wf, c), clientv3.WithCountOnly()))
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	resp, err := s.cli.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return nil, nil, fmt.Errorf("read the count of %s: %w", parent, err)
	}
	p, err := decodeInvocation(resp.Responses[0])
	if err != nil {
		return nil, nil, err
	}
	if p == nil {
		return nil, nil, fmt.Errorf("parent invocation %s: %w", parent, ErrNotFound)
	}
	counted := make([]bool, len(children))
	for i := range children {
		counted[i] = resp.Responses[i+1].GetResponseRange().Count > 0
	}
	return p, counted, nil
}
