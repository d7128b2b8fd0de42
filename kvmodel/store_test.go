package kvmodel_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jobx/jobx/internal/testenv"
	"github.com/jobx/jobx/kvmodel"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func newStore(t *testing.T) (*kvmodel.Store, *clientv3.Client) {
	t.Helper()
	_, cli := testenv.Etcd(t)
	return kvmodel.NewStore(cli), cli
}

func TestEntitiesUseJobXKeysAndFieldNames(t *testing.T) {
	st, cli := newStore(t)
	ctx := context.Background()
	req := &kvmodel.Request{ID: kvmodel.NewID(), WorkflowName: "build", JobName: "obfuscate_for_clients",
		InvocationID: kvmodel.NewID(), Context: map[string]any{"requester_ip": "127.0.0.1"}, IsBlocking: true}
	if err := st.Create(ctx, req); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(ctx, "/entities/request/build/"+req.ID)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("request not at JobX's key: %v", err)
	}
	for _, field := range []string{`"context":{"requester_ip":"127.0.0.1"}`, `"is_done":false`, `"is_blocking":true`,
		`"failed_invocation_id":null`, `"invocation_id":"` + req.InvocationID, `"job_name":"obfuscate_for_clients"`, `"workflow_name":"build"`} {
		if !strings.Contains(string(resp.Kvs[0].Value), field) {
			t.Errorf("stored request lacks %s: %s", field, resp.Kvs[0].Value)
		}
	}
}

func TestCreateOnlyUpdateOnlyAndCompareAndSwap(t *testing.T) {
	st, _ := newStore(t)
	ctx := context.Background()
	wf := &kvmodel.Workflow{Name: "wf", Description: "one"}
	if err := st.Update(ctx, wf); !errors.Is(err, kvmodel.ErrNotFound) {
		t.Fatalf("update of a missing workflow: want ErrNotFound, got %v", err)
	}
	if err := st.Create(ctx, wf); err != nil {
		t.Fatal(err)
	}
	if err := st.Create(ctx, &kvmodel.Workflow{Name: "wf", Description: "two"}); !errors.Is(err, kvmodel.ErrExists) {
		t.Fatalf("second create: want ErrExists, got %v", err)
	}
	a, b := &kvmodel.Workflow{Name: "wf"}, &kvmodel.Workflow{Name: "wf"}
	if err := st.Get(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := st.Get(ctx, b); err != nil {
		t.Fatal(err)
	}
	a.Description = "a"
	if err := st.UpdateCAS(ctx, a); err != nil {
		t.Fatal(err)
	}
	b.Description = "b"
	if err := st.UpdateCAS(ctx, b); !errors.Is(err, kvmodel.ErrConflict) {
		t.Fatalf("stale CAS: want ErrConflict, got %v", err)
	}
	got := &kvmodel.Workflow{Name: "wf"}
	if err := st.Get(ctx, got); err != nil || got.Description != "a" {
		t.Fatalf("after CAS: %+v, %v", got, err)
	}
	if err := st.Delete(ctx, got); err != nil {
		t.Fatal(err)
	}
	if err := st.Get(ctx, got); !errors.Is(err, kvmodel.ErrNotFound) {
		t.Fatalf("get after delete: want ErrNotFound, got %v", err)
	}
}

func TestNameRules(t *testing.T) {
	for _, tc := range []struct {
		name, value string
		topic       bool
		wantErr     string
	}{
		{"a dash is refused", "a-b", false, "'-'"},
		{"a slash is refused", "a/b", false, "'/'"},
		{"a dot is refused in a workflow name", "a.b", true, "'.'"},
		{"a dot is allowed in a step name", "a.b", false, ""},
		{"an empty name is refused", "", false, "empty"},
		{"a NUL is refused", "a\x00b", false, "control"},
		{"dot-dot is refused", "a..b", false, "'..'"},
		{"unicode is allowed in a step name", "schritt_ü", false, ""},
		{"unicode is refused in a workflow name", "wf_ü", true, "ASCII"},
		{"a very long name is refused", strings.Repeat("x", 300), false, "longer than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.topic {
				err = kvmodel.ValidateTopicName("workflow name", tc.value)
			} else {
				err = kvmodel.ValidateName("step name", tc.value)
			}
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !errors.Is(err, kvmodel.ErrInvalid) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("want ErrInvalid mentioning %q, got %v", tc.wantErr, err)
			}
		})
	}
}

func TestLargeDatasetsAreChunkedUnderEtcdLimits(t *testing.T) {
	st, cli := newStore(t)
	ctx := context.Background()
	var data []byte
	for i := 0; i < 100000; i++ {
		data = kvmodel.AppendPairItem(data, kvmodel.Pair{Key: []byte(fmt.Sprint(i)), Value: []byte(`"` + strings.Repeat("v", 200) + `"`)})
	}
	if len(data) < 20<<20 {
		t.Fatalf("test data is only %d bytes", len(data))
	}
	inv := kvmodel.NewID()
	if err := st.Apply(ctx, kvmodel.DatasetOps("wf", inv, kvmodel.PostReduce, data)); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(ctx, kvmodel.DatasetPrefix("wf", inv, kvmodel.PostReduce), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(len(data)/kvmodel.ChunkSize + 1); resp.Count != want {
		t.Fatalf("want %d chunk keys, got %d", want, resp.Count)
	}
	got, err := st.ReadDataset(ctx, "wf", inv, kvmodel.PostReduce)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("dataset did not round-trip (%d vs %d bytes): %v", len(got), len(data), err)
	}
	pairs, err := kvmodel.DecodePairItems(got)
	if err != nil || len(pairs) != 100000 || string(pairs[99999].Key) != "99999" {
		t.Fatalf("decoded %d pairs: %v", len(pairs), err)
	}
	// Rewriting a smaller dataset leaves no stale chunks behind.
	if err := st.Apply(ctx, kvmodel.DatasetOps("wf", inv, kvmodel.PostReduce, []byte("{\"p\":[1,2]}\n"))); err != nil {
		t.Fatal(err)
	}
	got, err = st.ReadDataset(ctx, "wf", inv, kvmodel.PostReduce)
	if err != nil || string(got) != "{\"p\":[1,2]}\n" {
		t.Fatalf("after rewrite: %q, %v", got, err)
	}
}

func TestMappedChildrenKeepTheirOrderInFewKeys(t *testing.T) {
	st, cli := newStore(t)
	ctx := context.Background()
	parent := kvmodel.NewID()
	var ids []string
	for i := 0; i < 25000; i++ {
		ids = append(ids, kvmodel.ChildID(parent, i))
	}
	if err := st.Apply(ctx, kvmodel.MappedOps("wf", parent, ids)); err != nil {
		t.Fatal(err)
	}
	got, err := st.Children(ctx, "wf", parent)
	if err != nil || len(got) != len(ids) || got[0] != ids[0] || got[24999] != ids[24999] {
		t.Fatalf("children: %d, %v", len(got), err)
	}
	resp, _ := cli.Get(ctx, kvmodel.RelationshipsPrefix("wf", parent), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if resp.Count != 3 {
		t.Fatalf("want 3 chunk keys for 25000 children, got %d", resp.Count)
	}
}

func TestGroupByKeyKeepsFirstAppearanceOrder(t *testing.T) {
	pairs := []kvmodel.Pair{{Key: []byte(`"b"`), Value: []byte(`1`)}, {Key: []byte(`"a"`), Value: []byte(`2`)}, {Key: []byte(`"b"`), Value: []byte(`3`)}}
	groups := kvmodel.GroupByKey(pairs)
	var got []string
	for _, g := range groups {
		j, _ := g.MarshalJSON()
		got = append(got, string(j))
	}
	if strings.Join(got, " ") != `["b",[1,3]] ["a",[2]]` {
		t.Fatalf("got %v", got)
	}
}

func TestCatalogSeesChangesThroughItsWatch(t *testing.T) {
	st, _ := newStore(t)
	ctx := context.Background()
	cat, err := kvmodel.NewCatalog(ctx, st, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	changes := make(chan kvmodel.Change, 10)
	cat.OnChange(func(c kvmodel.Change) { changes <- c })
	wf := &kvmodel.Workflow{Name: "later", Description: "made after the catalog"}
	if err := st.Create(ctx, wf); err != nil {
		t.Fatal(err)
	}
	if err := cat.WaitRevision(ctx, wf.Revision()); err != nil {
		t.Fatal(err)
	}
	if got := cat.Workflows(); len(got) != 1 || got[0] != "later" {
		t.Fatalf("workflows: %v", got)
	}
	if c := <-changes; c.Class != "workflow" || c.Name != "later" {
		t.Fatalf("change: %+v", c)
	}
	if _, err := cat.Job(ctx, "later", "nope"); !errors.Is(err, kvmodel.ErrNotFound) {
		t.Fatalf("missing job: %v", err)
	}
}

func TestPruneRequestRemovesEverythingItMade(t *testing.T) {
	st, cli := newStore(t)
	ctx := context.Background()
	root, child := kvmodel.NewID(), ""
	child = kvmodel.ChildID(root, 0)
	req := &kvmodel.Request{ID: kvmodel.NewID(), WorkflowName: "wf", InvocationID: root}
	ops := []kvmodel.Op{
		kvmodel.PutOp(req),
		kvmodel.PutOp(&kvmodel.Invocation{ID: root, WorkflowName: "wf"}),
		kvmodel.PutOp(&kvmodel.Invocation{ID: child, WorkflowName: "wf"}),
		kvmodel.PutOp(&kvmodel.Invocation{ID: kvmodel.ReduceID(child), WorkflowName: "wf"}),
		{Key: kvmodel.SessionPrefix("wf", child) + "k", Value: []byte("1")},
	}
	ops = append(ops, kvmodel.MappedOps("wf", root, []string{child})...)
	ops = append(ops, kvmodel.DatasetOps("wf", child, kvmodel.Arguments, []byte("{\"p\":[1,2]}\n"))...)
	if err := st.Apply(ctx, ops); err != nil {
		t.Fatal(err)
	}
	n, err := st.PruneRequest(ctx, "wf", req.ID, false)
	if err != nil || n != 2 {
		t.Fatalf("pruned %d invocations: %v", n, err)
	}
	// Only the request's summary stays, in the workflow's history.
	resp, _ := cli.Get(ctx, "/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	for _, kv := range resp.Kvs {
		if !strings.HasPrefix(string(kv.Key), kvmodel.RecentPrefix("wf")) {
			t.Errorf("left behind: %s", kv.Key)
		}
	}
	if recent, err := st.RecentRequests(ctx, "wf", 10); err != nil || len(recent) != 1 || recent[0].ID != req.ID {
		t.Errorf("history after the prune: %+v, %v", recent, err)
	}
	if n, err := st.PruneRequest(ctx, "wf", req.ID, false); n != 0 || err != nil {
		t.Fatalf("second prune: %d, %v", n, err)
	}
}

// The history lists removed requests newest first, with their state and
// error kind, and keeps the newest MaxRecent of each workflow.
func TestRecentRequestsAreBoundedNewestFirst(t *testing.T) {
	st, _ := newStore(t)
	ctx := context.Background()
	start := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	var ids []string
	for i := range kvmodel.MaxRecent + 5 {
		req := &kvmodel.Request{ID: kvmodel.NewID(), WorkflowName: "wf", JobName: "j", InvocationID: kvmodel.NewID(),
			State: kvmodel.StateDone, CreatedTimestamp: start.Add(time.Duration(i) * time.Second).Format("2006-01-02 15:04:05.000000")}
		if i == kvmodel.MaxRecent+3 {
			req.State, req.Error = kvmodel.StateFailed, &kvmodel.Failure{Kind: kvmodel.FailureHandlerFailed}
		}
		if err := st.Apply(ctx, []kvmodel.Op{kvmodel.PutOp(req)}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.PruneRequest(ctx, "wf", req.ID, false); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, req.ID)
	}
	recent, err := st.RecentRequests(ctx, "wf", 1000)
	if err != nil || len(recent) != kvmodel.MaxRecent {
		t.Fatalf("history: %d entries, %v; want %d", len(recent), err, kvmodel.MaxRecent)
	}
	if recent[0].ID != ids[len(ids)-1] || recent[len(recent)-1].ID != ids[5] {
		t.Errorf("history is not the newest %d, newest first: first %s, last %s", kvmodel.MaxRecent, recent[0].ID, recent[len(recent)-1].ID)
	}
	if r := recent[1]; r.State != kvmodel.StateFailed || r.ErrorKind != kvmodel.FailureHandlerFailed || r.JobName != "j" {
		t.Errorf("the failed request's summary: %+v", r)
	}
	if other, _ := st.RecentRequests(ctx, "other", 10); len(other) != 0 {
		t.Errorf("another workflow's history: %v", other)
	}
	for _, r := range recent {
		if r.ID == ids[3] {
			t.Errorf("an entry past the bound is still listed: %+v", r)
		}
	}
}
