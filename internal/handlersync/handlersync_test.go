package handlersync_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/jobx/jobx/internal/handlersync"
	"github.com/jobx/jobx/internal/testenv"
	"github.com/jobx/jobx/kvmodel"
	_ "github.com/jobx/jobx/processors/python"
)

const splitPy = `"""
Split an argument in half, and send to a downstream step.

**
handler_type: mapper
timeout: 30s
retries:
  count: 2
  backoff: 1s
"""
arg = dict(arguments)['arg1']
yield MrConfigureToMap('step7_chunk_argument')
yield (0, arg // 2)
yield (1, arg // 2 + arg % 2)
`

const sumPy = `"""
Sum each key's values.

**
argument_spec:
    - name: results
      type: list
handler_type: reducer
required_capability: none
"""
tally = {}
for k, vs in results:
    tally[k] = sum(vs)
return tally.items()
`

// writeFiles writes name -> content under dir, making directories.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func setup(t *testing.T) (context.Context, *kvmodel.Store, string) {
	t.Helper()
	_, cli := testenv.Etcd(t)
	store := kvmodel.NewStore(cli)
	ctx := context.Background()
	if err := store.Create(ctx, &kvmodel.Workflow{Name: "dev", Description: "dev jobs"}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"map/test/split.py": splitPy, "reduce/test/sum.py": sumPy})
	return ctx, store, dir
}

func actions(rep *handlersync.Report) map[string]handlersync.Action {
	out := map[string]handlersync.Action{}
	for _, d := range rep.Decisions {
		out[d.Handler] = d.Action
	}
	return out
}

func sync(t *testing.T, ctx context.Context, store *kvmodel.Store, dir string, opts handlersync.Options) *handlersync.Report {
	t.Helper()
	opts.Log = testenv.Logger(t)
	rep, err := handlersync.Sync(ctx, store, "dev", dir, opts)
	if err != nil {
		t.Fatalf("Sync: %v", err)
	}
	return rep
}

func handlerNames(t *testing.T, ctx context.Context, store *kvmodel.Store) []string {
	t.Helper()
	hs, err := kvmodel.List[kvmodel.Handler](ctx, store, "dev")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, h := range hs {
		names = append(names, h.Name)
	}
	return names
}

func TestSyncCreatesHandlersWithTheirMetadata(t *testing.T) {
	ctx, store, dir := setup(t)
	writeFiles(t, dir, map[string]string{"notes.txt": "not a handler"})
	rep := sync(t, ctx, store, dir, handlersync.Options{})

	want := map[string]handlersync.Action{"map_test_split": handlersync.Create, "reduce_test_sum": handlersync.Create}
	if got := actions(rep); !reflect.DeepEqual(got, want) {
		t.Fatalf("actions = %v, want %v", got, want)
	}
	if rep.Decisions[0].Handler != "map_test_split" || rep.Decisions[0].File != "map/test/split.py" {
		t.Errorf("first decision = %+v", rep.Decisions[0])
	}
	if len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], "notes.txt") {
		t.Errorf("warnings = %q, want one about notes.txt", rep.Warnings)
	}

	h := &kvmodel.Handler{WorkflowName: "dev", Name: "map_test_split"}
	if err := store.Get(ctx, h); err != nil {
		t.Fatal(err)
	}
	if h.HandlerType != "mapper" || h.SourceType != "python" || h.RequiredCapability != "none" ||
		h.Description != "Split an argument in half, and send to a downstream step." || h.SourceCode != splitPy {
		t.Errorf("handler = %+v", h)
	}
	if !reflect.DeepEqual(h.ArgumentSpec, [][]any{{"arguments", "list"}}) {
		t.Errorf("argument_spec = %v", h.ArgumentSpec)
	}
	wantOpts := kvmodel.HandlerOptions{File: "map/test/split.py", Timeout: "30s", Retries: 2, RetryBackoff: "1s"}
	if h.Options != wantOpts {
		t.Errorf("options = %+v, want %+v", h.Options, wantOpts)
	}
	r := &kvmodel.Handler{WorkflowName: "dev", Name: "reduce_test_sum"}
	if err := store.Get(ctx, r); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r.ArgumentSpec, [][]any{{"results", "list"}}) {
		t.Errorf("reducer argument_spec = %v", r.ArgumentSpec)
	}

	wf := &kvmodel.Workflow{Name: "dev"}
	if err := store.Get(ctx, wf); err != nil {
		t.Fatal(err)
	}
	if wf.HandlersState == "" || wf.HandlersState != rep.HandlersState ||
		wf.HandlersState != handlersync.HandlersState([]string{h.Version, r.Version}) {
		t.Errorf("handlers_state = %q, report %q", wf.HandlersState, rep.HandlersState)
	}
}

func TestSyncSkipsUnchangedAndUpdatesChangedHandlers(t *testing.T) {
	ctx, store, dir := setup(t)
	sync(t, ctx, store, dir, handlersync.Options{})

	rep := sync(t, ctx, store, dir, handlersync.Options{})
	if got := actions(rep); got["map_test_split"] != handlersync.Skip || got["reduce_test_sum"] != handlersync.Skip {
		t.Fatalf("second sync: %v, want all skip", got)
	}
	if rep.Changed() {
		t.Error("Changed() = true for an all-skip report")
	}

	writeFiles(t, dir, map[string]string{"reduce/test/sum.py": strings.Replace(sumPy, "Sum each", "Add up each", 1)})
	rep = sync(t, ctx, store, dir, handlersync.Options{})
	if got := actions(rep); got["map_test_split"] != handlersync.Skip || got["reduce_test_sum"] != handlersync.Update {
		t.Fatalf("after an edit: %v", got)
	}
	r := &kvmodel.Handler{WorkflowName: "dev", Name: "reduce_test_sum"}
	if err := store.Get(ctx, r); err != nil {
		t.Fatal(err)
	}
	if r.Description != "Add up each key's values." {
		t.Errorf("description after update = %q", r.Description)
	}

	rep = sync(t, ctx, store, dir, handlersync.Options{Force: true})
	if got := actions(rep); got["map_test_split"] != handlersync.Update || got["reduce_test_sum"] != handlersync.Update {
		t.Fatalf("forced: %v, want all update", got)
	}
}

func TestSyncDeletesOrphansNoStepUses(t *testing.T) {
	ctx, store, dir := setup(t)
	sync(t, ctx, store, dir, handlersync.Options{})
	os.Remove(filepath.Join(dir, "reduce/test/sum.py"))

	rep := sync(t, ctx, store, dir, handlersync.Options{})
	if got := actions(rep)["reduce_test_sum"]; got != handlersync.Delete {
		t.Fatalf("orphan action = %s, want delete", got)
	}
	if got := handlerNames(t, ctx, store); !reflect.DeepEqual(got, []string{"map_test_split"}) {
		t.Errorf("handlers after sync = %v", got)
	}
}

func TestSyncKeepsOrphansThatAStepUses(t *testing.T) {
	ctx, store, dir := setup(t)
	sync(t, ctx, store, dir, handlersync.Options{})
	step := &kvmodel.Step{WorkflowName: "dev", Name: "step7", Description: "d", MapHandlerName: "map_test_split", ReduceHandlerName: "reduce_test_sum"}
	if err := store.Create(ctx, step); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(filepath.Join(dir, "reduce"))

	rep := sync(t, ctx, store, dir, handlersync.Options{})
	var d handlersync.Decision
	for _, x := range rep.Decisions {
		if x.Handler == "reduce_test_sum" {
			d = x
		}
	}
	if d.Action != handlersync.Keep || !reflect.DeepEqual(d.UsedBy, []string{"step7 (reduce)"}) {
		t.Fatalf("decision = %+v, want keep used by step7 (reduce)", d)
	}
	if got := handlerNames(t, ctx, store); len(got) != 2 {
		t.Errorf("handlers after sync = %v, want both", got)
	}
}

func TestSyncDryRunWritesNothing(t *testing.T) {
	ctx, store, dir := setup(t)
	rep := sync(t, ctx, store, dir, handlersync.Options{DryRun: true})
	if got := actions(rep); got["map_test_split"] != handlersync.Create || got["reduce_test_sum"] != handlersync.Create {
		t.Fatalf("dry run: %v, want create", got)
	}
	if got := handlerNames(t, ctx, store); len(got) != 0 {
		t.Fatalf("dry run wrote handlers %v", got)
	}
	wf := &kvmodel.Workflow{Name: "dev"}
	if err := store.Get(ctx, wf); err != nil {
		t.Fatal(err)
	}
	if wf.HandlersState != "" {
		t.Errorf("dry run wrote handlers_state %q", wf.HandlersState)
	}
	real := sync(t, ctx, store, dir, handlersync.Options{})
	if real.HandlersState != rep.HandlersState {
		t.Errorf("dry-run handlers_state %q != real %q", rep.HandlersState, real.HandlersState)
	}
}

func TestSyncWithOneBadFileWritesNothingAndNamesEveryProblem(t *testing.T) {
	ctx, store, dir := setup(t)
	writeFiles(t, dir, map[string]string{
		"map/broken.py": "\"\"\"\nBroken.\n\n**\nhandler_type: mapper\n\"\"\"\nyield (1, \n",
		"map/badkey.py": "\"\"\"\nBad key.\n\n**\nhandler_type: mapper\ncolour: blue\n\"\"\"\nyield (1, 2)\n",
	})
	_, err := handlersync.Sync(ctx, store, "dev", dir, handlersync.Options{Log: testenv.Logger(t)})
	if err == nil {
		t.Fatal("Sync succeeded with bad files")
	}
	msg := err.Error()
	for _, want := range []string{"map/broken.py:", "map/badkey.py:6", `"colour"`, "nothing was written"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not mention %q:\n%s", want, msg)
		}
	}
	if got := handlerNames(t, ctx, store); len(got) != 0 {
		t.Errorf("a failed sync wrote handlers %v", got)
	}
}

func TestSyncOfAMissingWorkflowFails(t *testing.T) {
	ctx, store, dir := setup(t)
	_, err := handlersync.Sync(ctx, store, "nope", dir, handlersync.Options{})
	if !errors.Is(err, kvmodel.ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
}
