package main

import (
	"strings"
	"testing"

	"github.com/jobx/jobx/kvmodel"
)

func TestRequestAndInvocationCommands(t *testing.T) {
	c := newCLI(t)
	ctx := t.Context()
	root := &kvmodel.Invocation{ID: kvmodel.NewID(), WorkflowName: "dev", StepName: "s1", Direction: "map", State: "done", RequestID: "r"}
	req := &kvmodel.Request{ID: kvmodel.NewID(), WorkflowName: "dev", JobName: "j", InvocationID: root.ID, IsDone: true, State: "done", Keep: true,
		Context: map[string]any{"requester_ip": "127.0.0.1"}}
	child := &kvmodel.Invocation{ID: kvmodel.ChildID(root.ID, 0), WorkflowName: "dev", StepName: "s2", Direction: "map", State: "done"}
	if err := c.store.Apply(ctx, append(kvmodel.MappedOps("dev", root.ID, []string{child.ID}),
		kvmodel.PutOp(root), kvmodel.PutOp(req), kvmodel.PutOp(child))); err != nil {
		t.Fatal(err)
	}
	mustContain(t, "request get", c.ok("request", "get", "dev", req.ID), "request_id", req.ID, "requester_ip", "is_done", "true")
	mustContain(t, "invocation get", c.ok("invocation", "get", "dev", root.ID), "invocation_id", root.ID, "step_name", "s1")
	mustContain(t, "cleanup dry run", c.ok("request", "cleanup", "dev", req.ID, "--dry-run"), "would delete request", "and 2 map invocations")
	if err := c.store.Get(ctx, req); err != nil {
		t.Fatalf("dry run deleted the request: %v", err)
	}
	mustContain(t, "cleanup", c.ok("request", "cleanup", "dev", req.ID), "deleted request", "and 2 map invocations")
	mustContain(t, "gone", c.fails("request", "get", "dev", req.ID), "does not exist")
	mustContain(t, "child gone", c.fails("invocation", "get", "dev", child.ID), "does not exist")
}

func TestTraceSessionsDumpsEachMapInvocationsSession(t *testing.T) {
	c := newCLI(t)
	ctx := t.Context()
	root := &kvmodel.Invocation{ID: kvmodel.NewID(), WorkflowName: "dev", StepName: "s1", Direction: "map", State: "done"}
	child := &kvmodel.Invocation{ID: kvmodel.ChildID(root.ID, 0), WorkflowName: "dev", StepName: "s2", Direction: "map", State: "done"}
	req := &kvmodel.Request{ID: kvmodel.NewID(), WorkflowName: "dev", JobName: "j", InvocationID: root.ID, IsDone: true, State: "done"}
	ops := []kvmodel.Op{kvmodel.PutOp(root), kvmodel.PutOp(child), kvmodel.PutOp(req),
		{Key: kvmodel.SessionPrefix("dev", child.ID) + "seen", Value: []byte(`{"n":1}`)}}
	ops = append(ops, kvmodel.MappedOps("dev", root.ID, []string{child.ID})...)
	if err := c.store.Apply(ctx, ops); err != nil {
		t.Fatal(err)
	}
	out := c.ok("trace", "sessions", "dev", req.ID)
	if !strings.Contains(out, child.ID+" s2") || !strings.Contains(out, `seen = {"n":1}`) || strings.Contains(out, root.ID) {
		t.Fatalf("trace sessions output:\n%s", out)
	}
}
