package kvmodel_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jobx/jobx/kvmodel"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// started creates a pending request with its root map invocation and
// returns both as stored.
func started(t testing.TB, st *kvmodel.Store) (*kvmodel.Request, *kvmodel.Invocation) {
	t.Helper()
	root := &kvmodel.Invocation{ID: kvmodel.NewID(), WorkflowName: "wf", StepName: "split",
		Direction: kvmodel.DirectionMap, State: kvmodel.StatePending, CreatedTimestamp: kvmodel.Now()}
	req := &kvmodel.Request{ID: kvmodel.NewID(), WorkflowName: "wf", JobName: "job", InvocationID: root.ID,
		State: kvmodel.StatePending, CreatedTimestamp: kvmodel.Now()}
	root.RequestID = req.ID
	if err := st.CreateRequest(context.Background(), req, root, []byte(`["k",1]`+"\n")); err != nil {
		t.Fatal(err)
	}
	return req, root
}

func done(inv *kvmodel.Invocation) *kvmodel.Invocation {
	d := *inv
	d.State, d.FinishedTimestamp = kvmodel.StateDone, kvmodel.Now()
	return &d
}

func get[T any, P interface {
	*T
	kvmodel.Entity
}](t testing.TB, st *kvmodel.Store, e P) P {
	t.Helper()
	if err := st.Get(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	return e
}

func TestCreateRequest(t *testing.T) {
	st, cli := newStore(t)
	ctx := context.Background()
	tests := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"a new request is stored with its root and arguments at one revision", func(t *testing.T) {
			req, root := started(t, st)
			if req.Revision() == 0 || req.Revision() != root.Revision() {
				t.Fatalf("revisions: request %d, root %d", req.Revision(), root.Revision())
			}
			got := get(t, st, &kvmodel.Invocation{WorkflowName: "wf", ID: root.ID})
			if got.State != kvmodel.StatePending || got.Revision() != req.Revision() {
				t.Fatalf("root: %+v", got)
			}
			if data, err := st.ReadDataset(ctx, "wf", root.ID, kvmodel.Arguments); err != nil || string(data) != `["k",1]`+"\n" {
				t.Fatalf("arguments: %q, %v", data, err)
			}
		}},
		{"a request id taken already is ErrExists and changes nothing", func(t *testing.T) {
			req, root := started(t, st)
			again := *req
			again.JobName = "other"
			if err := st.CreateRequest(ctx, &again, root, nil); !errors.Is(err, kvmodel.ErrExists) {
				t.Fatalf("want ErrExists, got %v", err)
			}
			if got := get(t, st, &kvmodel.Request{WorkflowName: "wf", ID: req.ID}); got.JobName != "job" {
				t.Fatalf("request overwritten: %+v", got)
			}
		}},
		{"a request that cannot run is stored ended, its root failed, and scheduled for cleanup", func(t *testing.T) {
			root := &kvmodel.Invocation{ID: kvmodel.NewID(), WorkflowName: "wf", StepName: "split",
				Direction: kvmodel.DirectionMap, State: kvmodel.StatePending}
			req := &kvmodel.Request{ID: kvmodel.NewID(), WorkflowName: "wf", InvocationID: root.ID, State: kvmodel.StatePending}
			f := &kvmodel.Failure{Kind: kvmodel.FailureNoCapability, Message: "no runner"}
			if err := st.CreateFailedRequest(ctx, req, root, nil, f, 0); err != nil {
				t.Fatal(err)
			}
			got := get(t, st, &kvmodel.Request{WorkflowName: "wf", ID: req.ID})
			if !got.IsDone || got.State != kvmodel.StateFailed || got.Error == nil || got.Error.Kind != kvmodel.FailureNoCapability {
				t.Fatalf("request: %+v", got)
			}
			if r := get(t, st, &kvmodel.Invocation{WorkflowName: "wf", ID: root.ID}); r.State != kvmodel.StateFailed {
				t.Fatalf("root: %+v", r)
			}
			if resp, err := cli.Get(ctx, "/jobx/cleanup/", clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil || resp.Count == 0 {
				t.Fatalf("no cleanup scheduled: %v", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.run)
	}
}

func TestRecordingAnInvocation(t *testing.T) {
	st, _ := newStore(t)
	ctx := context.Background()
	tests := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"a leaf is recorded done with its combined output and a pending reduce invocation", func(t *testing.T) {
			req, root := started(t, st)
			red := kvmodel.NewReduceInvocation(root)
			if err := st.RecordLeaf(ctx, kvmodel.Seen{Invocation: root, Request: req}, done(root), []byte("c\n"), red); err != nil {
				t.Fatal(err)
			}
			if got := get(t, st, &kvmodel.Invocation{WorkflowName: "wf", ID: red.ID}); got.State != kvmodel.StatePending || got.Revision() != red.Revision() {
				t.Fatalf("reduce invocation: %+v (revision %d, want %d)", got, got.Revision(), red.Revision())
			}
			if data, err := st.ReadDataset(ctx, "wf", root.ID, kvmodel.PostCombine); err != nil || string(data) != "c\n" {
				t.Fatalf("post_combine: %q, %v", data, err)
			}
		}},
		{"a leaf recorded twice is ErrConflict the second time", func(t *testing.T) {
			req, root := started(t, st)
			seen := kvmodel.Seen{Invocation: root, Request: req}
			if err := st.RecordLeaf(ctx, seen, done(root), nil, kvmodel.NewReduceInvocation(root)); err != nil {
				t.Fatal(err)
			}
			if err := st.RecordLeaf(ctx, seen, done(root), nil, kvmodel.NewReduceInvocation(root)); !errors.Is(err, kvmodel.ErrConflict) {
				t.Fatalf("want ErrConflict, got %v", err)
			}
		}},
		{"a fresh copy holds until the invocation is first written", func(t *testing.T) {
			req, root := started(t, st)
			copied := *root
			copied.SetRevision(0)
			seen := kvmodel.Seen{Invocation: &copied, Request: req, Fresh: true}
			if err := st.RecordLeaf(ctx, seen, done(root), nil, kvmodel.NewReduceInvocation(root)); err != nil {
				t.Fatal(err)
			}
			if err := st.RecordLeaf(ctx, seen, done(root), nil, kvmodel.NewReduceInvocation(root)); !errors.Is(err, kvmodel.ErrConflict) {
				t.Fatalf("want ErrConflict, got %v", err)
			}
		}},
		{"a leaf of a request that moved on is ErrConflict", func(t *testing.T) {
			req, root := started(t, st)
			stale := *req
			if err := st.FailRequest(ctx, req, &kvmodel.Failure{Kind: kvmodel.FailureDeadline}, 0); err != nil {
				t.Fatal(err)
			}
			if err := st.RecordLeaf(ctx, kvmodel.Seen{Invocation: root, Request: &stale}, done(root), nil, kvmodel.NewReduceInvocation(root)); !errors.Is(err, kvmodel.ErrConflict) {
				t.Fatalf("want ErrConflict, got %v", err)
			}
		}},
		{"a branch records its children, their arguments and its counter", func(t *testing.T) {
			req, root := started(t, st)
			var children []*kvmodel.Invocation
			var args [][]byte
			for i := range 3 {
				children = append(children, &kvmodel.Invocation{ID: kvmodel.ChildID(root.ID, i), WorkflowName: "wf", RequestID: req.ID,
					ParentInvocationID: kvmodel.StrPtr(root.ID), StepName: "chunk", Direction: kvmodel.DirectionMap, State: kvmodel.StatePending})
				args = append(args, []byte(`["k",1]`+"\n"))
			}
			red, stored, err := st.RecordBranch(ctx, kvmodel.Seen{Invocation: root, Request: req}, done(root), "chunk", children, args)
			if err != nil || red != nil {
				t.Fatalf("reduce invocation %v, err %v; want none", red, err)
			}
			got := get(t, st, &kvmodel.Invocation{WorkflowName: "wf", ID: root.ID})
			if *got.MappedCount != 3 || *got.MappedWaiting != 3 || got.MappedStep != "chunk" || got.State != kvmodel.StateDone {
				t.Fatalf("parent: %+v", got)
			}
			if ids, err := st.Children(ctx, "wf", root.ID); err != nil || len(ids) != 3 || ids[2] != children[2].ID {
				t.Fatalf("children: %v, %v", ids, err)
			}
			for i, c := range children { // what it returns is what it wrote
				if v, _ := kvmodel.Encode(get(t, st, &kvmodel.Invocation{WorkflowName: "wf", ID: c.ID})); string(v) != string(stored[i]) {
					t.Fatalf("child %d: returned %s, stored %s", i, stored[i], v)
				}
			}
		}},
		{"a branch to no children creates its reduce invocation at once", func(t *testing.T) {
			req, root := started(t, st)
			red, _, err := st.RecordBranch(ctx, kvmodel.Seen{Invocation: root, Request: req}, done(root), "chunk", nil, nil)
			if err != nil || red == nil || red.Revision() == 0 {
				t.Fatalf("reduce invocation %v, err %v", red, err)
			}
			get(t, st, &kvmodel.Invocation{WorkflowName: "wf", ID: red.ID})
		}},
		{"the root's reduction ends its request as done", func(t *testing.T) {
			req, root := started(t, st)
			red := kvmodel.NewReduceInvocation(root)
			if err := st.RecordLeaf(ctx, kvmodel.Seen{Invocation: root, Request: req}, done(root), nil, red); err != nil {
				t.Fatal(err)
			}
			if err := st.RecordReduction(ctx, kvmodel.Seen{Invocation: red, Request: req}, done(red), root, []byte("r\n"), 0); err != nil {
				t.Fatal(err)
			}
			if got := get(t, st, &kvmodel.Request{WorkflowName: "wf", ID: req.ID}); !got.IsDone || got.State != kvmodel.StateDone {
				t.Fatalf("request: %+v", got)
			}
			if data, err := st.ReadDataset(ctx, "wf", root.ID, kvmodel.PostReduce); err != nil || string(data) != "r\n" {
				t.Fatalf("post_reduce: %q, %v", data, err)
			}
		}},
		{"the root's reduction puts a small result on its request, not a large one", func(t *testing.T) {
			small := kvmodel.AppendPairItem(kvmodel.AppendPairItem(nil, kvmodel.Pair{Key: []byte(`"a"`), Value: []byte(`1`)}),
				kvmodel.Pair{Key: []byte(`"b"`), Value: []byte(`{"n":[2]}`)})
			var large []byte
			for i := 0; len(large) <= kvmodel.MaxInlineResult; i++ {
				large = kvmodel.AppendPairItem(large, kvmodel.Pair{Key: fmt.Appendf(nil, `"key-%d"`, i), Value: []byte(`"some value"`)})
			}
			for _, tc := range []struct {
				name string
				data []byte
				want string // "": no result on the request
			}{
				{"small", small, `[["a",1],["b",{"n":[2]}]]`},
				{"empty", nil, `[]`},
				{"large", large, ""},
			} {
				for _, fused := range []bool{false, true} {
					req, root := started(t, st)
					red := kvmodel.NewReduceInvocation(root)
					if fused {
						if _, err := st.Do(ctx, kvmodel.FusedLeaf(kvmodel.Seen{Invocation: root, Request: req}, done(root), nil, done(red), tc.data, 0)); err != nil {
							t.Fatal(err)
						}
					} else {
						if err := st.RecordLeaf(ctx, kvmodel.Seen{Invocation: root, Request: req}, done(root), nil, red); err != nil {
							t.Fatal(err)
						}
						if err := st.RecordReduction(ctx, kvmodel.Seen{Invocation: red, Request: req}, done(red), root, tc.data, 0); err != nil {
							t.Fatal(err)
						}
					}
					got := get(t, st, &kvmodel.Request{WorkflowName: "wf", ID: req.ID})
					if string(got.Result) != tc.want {
						t.Errorf("%s result, fused %v: request carries %q, want %q", tc.name, fused, got.Result, tc.want)
					}
					if data, err := st.ReadDataset(ctx, "wf", root.ID, kvmodel.PostReduce); err != nil || string(data) != string(tc.data) {
						t.Errorf("%s result, fused %v: post_reduce %d bytes, %v; want the %d bytes written", tc.name, fused, len(data), err, len(tc.data))
					}
				}
			}
		}},
		{"a reduction recorded twice is ErrConflict the second time", func(t *testing.T) {
			req, root := started(t, st)
			red := kvmodel.NewReduceInvocation(root)
			if err := st.RecordLeaf(ctx, kvmodel.Seen{Invocation: root, Request: req}, done(root), nil, red); err != nil {
				t.Fatal(err)
			}
			seen := kvmodel.Seen{Invocation: red, Request: req}
			if err := st.RecordReduction(ctx, seen, done(red), root, nil, 0); err != nil {
				t.Fatal(err)
			}
			if err := st.RecordReduction(ctx, seen, done(red), root, nil, 0); !errors.Is(err, kvmodel.ErrConflict) {
				t.Fatalf("want ErrConflict, got %v", err)
			}
		}},
		{"a fused leaf records the map invocation and its reduction at once", func(t *testing.T) {
			req, root := started(t, st)
			red := done(kvmodel.NewReduceInvocation(root))
			tr := kvmodel.FusedLeaf(kvmodel.Seen{Invocation: root, Request: req}, done(root), []byte("c\n"), red, []byte("r\n"), 0)
			if _, err := st.Do(ctx, tr); err != nil {
				t.Fatal(err)
			}
			if got := get(t, st, &kvmodel.Invocation{WorkflowName: "wf", ID: red.ID}); got.State != kvmodel.StateDone {
				t.Fatalf("reduce invocation: %+v", got)
			}
			if got := get(t, st, &kvmodel.Request{WorkflowName: "wf", ID: req.ID}); !got.IsDone {
				t.Fatalf("request not ended: %+v", got)
			}
			if _, err := st.Do(ctx, tr); !errors.Is(err, kvmodel.ErrConflict) {
				t.Fatalf("again: want ErrConflict, got %v", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.run)
	}
}

func TestFailing(t *testing.T) {
	st, _ := newStore(t)
	ctx := context.Background()
	tests := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"a failed invocation fails its request, which names it", func(t *testing.T) {
			req, root := started(t, st)
			f := &kvmodel.Failure{Kind: kvmodel.FailureHandlerFailed, Message: "exit 1", Handler: "h", StderrTail: "boom"}
			if err := st.FailInvocation(ctx, kvmodel.Seen{Invocation: root, Request: req}, f, 0); err != nil {
				t.Fatal(err)
			}
			inv := get(t, st, &kvmodel.Invocation{WorkflowName: "wf", ID: root.ID})
			if inv.State != kvmodel.StateFailed || inv.HandlerName != "h" || inv.Error == nil || *inv.Error != "exit 1\n--- stderr (tail) ---\nboom" {
				t.Fatalf("invocation: %+v", inv)
			}
			got := get(t, st, &kvmodel.Request{WorkflowName: "wf", ID: req.ID})
			if got.State != kvmodel.StateFailed || got.FailedInvocationID == nil || *got.FailedInvocationID != root.ID ||
				got.Error.InvocationID != root.ID || got.Error.Step != "split" || got.Error.Direction != kvmodel.DirectionMap {
				t.Fatalf("request: %+v, error %+v", got, got.Error)
			}
		}},
		{"failing an invocation already finished is ErrConflict", func(t *testing.T) {
			req, root := started(t, st)
			seen := kvmodel.Seen{Invocation: root, Request: req}
			if err := st.RecordLeaf(ctx, seen, done(root), nil, kvmodel.NewReduceInvocation(root)); err != nil {
				t.Fatal(err)
			}
			if err := st.FailInvocation(ctx, seen, &kvmodel.Failure{Kind: kvmodel.FailureTimeout}, 0); !errors.Is(err, kvmodel.ErrConflict) {
				t.Fatalf("want ErrConflict, got %v", err)
			}
		}},
		{"failing a request already ended is ErrConflict", func(t *testing.T) {
			req, _ := started(t, st)
			stale := *req
			if err := st.FailRequest(ctx, req, &kvmodel.Failure{Kind: kvmodel.FailureInfrastructure}, 0); err != nil {
				t.Fatal(err)
			}
			if err := st.FailRequest(ctx, &stale, &kvmodel.Failure{Kind: kvmodel.FailureDeadline}, 0); !errors.Is(err, kvmodel.ErrConflict) {
				t.Fatalf("want ErrConflict, got %v", err)
			}
			if got := get(t, st, &kvmodel.Request{WorkflowName: "wf", ID: req.ID}); got.Error.Kind != kvmodel.FailureInfrastructure {
				t.Fatalf("first failure overwritten: %+v", got.Error)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.run)
	}
}

// branched stores a request whose root branched to n children and
// returns the root as stored and the children's ids.
func branched(t *testing.T, st *kvmodel.Store, n int) (*kvmodel.Invocation, []string) {
	t.Helper()
	req, root := started(t, st)
	var children []*kvmodel.Invocation
	var ids []string
	for i := range n {
		ids = append(ids, kvmodel.ChildID(root.ID, i))
		children = append(children, &kvmodel.Invocation{ID: ids[i], WorkflowName: "wf", RequestID: req.ID,
			ParentInvocationID: kvmodel.StrPtr(root.ID), StepName: "chunk", Direction: kvmodel.DirectionMap, State: kvmodel.StatePending})
	}
	if _, _, err := st.RecordBranch(context.Background(), kvmodel.Seen{Invocation: root, Request: req}, done(root), "chunk", children, make([][]byte, n)); err != nil {
		t.Fatal(err)
	}
	return get(t, st, &kvmodel.Invocation{WorkflowName: "wf", ID: root.ID}), ids
}

func TestCountChildren(t *testing.T) {
	st, _ := newStore(t)
	ctx := context.Background()
	tests := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"counting lowers the counter and marks the children counted", func(t *testing.T) {
			p, ids := branched(t, st, 3)
			got, err := st.CountChildren(ctx, p, []kvmodel.Count{{Child: ids[0]}, {Child: ids[1]}})
			if err != nil || *got.MappedWaiting != 1 {
				t.Fatalf("parent %+v, err %v", got, err)
			}
			read, counted, err := st.ReadCount(ctx, "wf", p.ID, ids)
			if err != nil || read.Revision() != got.Revision() || !counted[0] || !counted[1] || counted[2] {
				t.Fatalf("read back: revision %d (want %d), counted %v, err %v", read.Revision(), got.Revision(), counted, err)
			}
		}},
		{"the count that reaches zero creates the parent's reduce invocation", func(t *testing.T) {
			p, ids := branched(t, st, 1)
			if _, err := st.CountChildren(ctx, p, []kvmodel.Count{{Child: ids[0]}}); err != nil {
				t.Fatal(err)
			}
			if red := get(t, st, &kvmodel.Invocation{WorkflowName: "wf", ID: kvmodel.ReduceID(p.ID)}); red.State != kvmodel.StatePending {
				t.Fatalf("reduce invocation: %+v", red)
			}
		}},
		{"counting a child twice is ErrConflict", func(t *testing.T) {
			p, ids := branched(t, st, 2)
			p, err := st.CountChildren(ctx, p, []kvmodel.Count{{Child: ids[0]}})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.CountChildren(ctx, p, []kvmodel.Count{{Child: ids[0]}}); !errors.Is(err, kvmodel.ErrConflict) {
				t.Fatalf("want ErrConflict, got %v", err)
			}
		}},
		{"counting on a stale parent is ErrConflict", func(t *testing.T) {
			p, ids := branched(t, st, 2)
			if _, err := st.CountChildren(ctx, p, []kvmodel.Count{{Child: ids[0]}}); err != nil {
				t.Fatal(err)
			}
			if _, err := st.CountChildren(ctx, p, []kvmodel.Count{{Child: ids[1]}}); !errors.Is(err, kvmodel.ErrConflict) {
				t.Fatalf("want ErrConflict, got %v", err)
			}
		}},
		{"counting past zero is ErrInvalid and writes nothing", func(t *testing.T) {
			p, ids := branched(t, st, 1)
			_, err := st.CountChildren(ctx, p, []kvmodel.Count{{Child: ids[0]}, {Child: ids[0] + "x"}})
			if !errors.Is(err, kvmodel.ErrInvalid) {
				t.Fatalf("want ErrInvalid, got %v", err)
			}
			if got := get(t, st, &kvmodel.Invocation{WorkflowName: "wf", ID: p.ID}); *got.MappedWaiting != 1 {
				t.Fatalf("counter moved: %d", *got.MappedWaiting)
			}
		}},
		{"a leaf whose conditions fail keeps the whole count from committing", func(t *testing.T) {
			p, ids := branched(t, st, 2)
			req := get(t, st, &kvmodel.Request{WorkflowName: "wf", ID: p.RequestID})
			m := get(t, st, &kvmodel.Invocation{WorkflowName: "wf", ID: ids[0]})
			stale := *m
			stale.SetRevision(m.Revision() - 1)
			red := done(kvmodel.NewReduceInvocation(m))
			leaf := kvmodel.FusedLeaf(kvmodel.Seen{Invocation: &stale, Request: req}, done(m), nil, red, nil, 0)
			if _, err := st.CountChildren(ctx, p, []kvmodel.Count{{Child: ids[0], Leaf: leaf}, {Child: ids[1]}}); !errors.Is(err, kvmodel.ErrConflict) {
				t.Fatalf("want ErrConflict, got %v", err)
			}
			if _, counted, _ := st.ReadCount(ctx, "wf", p.ID, ids); counted[0] || counted[1] {
				t.Fatalf("counted anyway: %v", counted)
			}
			leaf = kvmodel.FusedLeaf(kvmodel.Seen{Invocation: m, Request: req}, done(m), nil, red, nil, 0)
			if _, err := st.CountChildren(ctx, p, []kvmodel.Count{{Child: ids[0], Leaf: leaf}}); err != nil {
				t.Fatal(err)
			}
			if got := get(t, st, &kvmodel.Invocation{WorkflowName: "wf", ID: red.ID}); got.State != kvmodel.StateDone {
				t.Fatalf("leaf's reduction: %+v", got)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.run)
	}
}

func TestFailureKindsAreStoredAsTheirStrings(t *testing.T) {
	tests := []struct {
		kind kvmodel.FailureKind
		want string
	}{
		{kvmodel.FailureHandlerFailed, "handler_failed"}, {kvmodel.FailureCrashed, "crashed"}, {kvmodel.FailureTimeout, "timeout"},
		{kvmodel.FailureOOM, "oom"}, {kvmodel.FailureOutputLimit, "output_limit"}, {kvmodel.FailureItemLimit, "item_limit"},
		{kvmodel.FailureProtocol, "protocol"}, {kvmodel.FailureDefinition, "definition"}, {kvmodel.FailureData, "data"},
		{kvmodel.FailureScope, "scope"}, {kvmodel.FailureFilesystem, "filesystem"}, {kvmodel.FailureNoCapability, "no_capability"},
		{kvmodel.FailureInfrastructure, "infrastructure"}, {kvmodel.FailureDeadline, "deadline"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			b, err := json.Marshal(kvmodel.Failure{Kind: tt.kind})
			if err != nil || !strings.HasPrefix(string(b), `{"kind":"`+tt.want+`"`) {
				t.Fatalf("stored as %s, %v", b, err)
			}
		})
	}
}
