package manifest_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jobx/jobx/internal/handlersync"
	"github.com/jobx/jobx/internal/manifest"
	"github.com/jobx/jobx/internal/testenv"
	"github.com/jobx/jobx/kvmodel"
	_ "github.com/jobx/jobx/processors/python"
	clientv3 "go.etcd.io/etcd/client/v3"
)

const workflowYAML = `workflow: dev
description: JobX's development jobs
steps:
  step6_split_argument_1:
    description: split an argument in two
    map: map_test_split
    combine: ""
    reduce: reduce_test_noop
  step7_chunk_argument:
    description: chunk
    map: map_test_split
    reduce: reduce_test_noop
jobs:
  job4:
    description: two-level split and sum
    initial_step: step6_split_argument_1
    example_arguments:
      arg1: 17413412
`

const splitPy = `"""
Split.

**
handler_type: mapper
"""
yield MrConfigureToMap('step7_chunk_argument')
yield (0, 1)
`

const noopPy = `"""
Pass pairs through.

**
handler_type: reducer
"""
for k, v in results:
    yield (k, v)
`

func writeDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func devDir(t *testing.T) string {
	return writeDir(t, map[string]string{
		"workflow.yaml":                workflowYAML,
		"handlers/map/test/split.py":   splitPy,
		"handlers/reduce/test/noop.py": noopPy,
	})
}

func store(t *testing.T) *kvmodel.Store {
	_, cli := testenv.Etcd(t)
	return kvmodel.NewStore(cli)
}

func TestApplyCreatesEverythingThenChangesNothing(t *testing.T) {
	ctx, st, dir := context.Background(), store(t), devDir(t)
	res, err := manifest.Apply(ctx, st, dir, testenv.Logger(t))
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if res.Workflow.Action != handlersync.Create || len(res.Steps) != 2 || res.Steps[0].Action != handlersync.Create ||
		len(res.Jobs) != 1 || res.Jobs[0].Action != handlersync.Create || res.Handlers.Count(handlersync.Create) != 2 {
		t.Fatalf("first apply: %+v", res)
	}
	if got := res.Manifest.Jobs[0].ExampleArguments; len(got) != 1 || got[0].Key != "arg1" || got[0].Value != 17413412 {
		t.Errorf("example arguments = %+v", got)
	}
	step := &kvmodel.Step{WorkflowName: "dev", Name: "step6_split_argument_1"}
	if err := st.Get(ctx, step); err != nil {
		t.Fatal(err)
	}
	if step.MapHandlerName != "map_test_split" || step.ReduceHandlerName != "reduce_test_noop" || step.CombineHandlerName != "" {
		t.Errorf("step = %+v", step)
	}
	job := &kvmodel.Job{WorkflowName: "dev", Name: "job4"}
	if err := st.Get(ctx, job); err != nil || job.InitialStepName != "step6_split_argument_1" {
		t.Errorf("job = %+v, %v", job, err)
	}

	res, err = manifest.Apply(ctx, st, dir, testenv.Logger(t))
	if err != nil {
		t.Fatalf("second Apply: %v", err)
	}
	if res.Workflow.Action != handlersync.Skip || res.Steps[0].Action != handlersync.Skip || res.Jobs[0].Action != handlersync.Skip ||
		res.Handlers.Changed() {
		t.Fatalf("second apply changed something: %+v %+v", res, res.Handlers.Decisions)
	}
}

func TestApplyUpdatesChangedEntriesAndDropsFreedHandlers(t *testing.T) {
	ctx, st, dir := context.Background(), store(t), devDir(t)
	if _, err := manifest.Apply(ctx, st, dir, testenv.Logger(t)); err != nil {
		t.Fatal(err)
	}
	// Rename the reducer: the old one is kept by the old steps during the
	// sync, then freed by the step updates.
	os.Rename(filepath.Join(dir, "handlers/reduce/test/noop.py"), filepath.Join(dir, "handlers/reduce/test/pass.py"))
	y := strings.ReplaceAll(workflowYAML, "reduce_test_noop", "reduce_test_pass")
	y = strings.Replace(y, "JobX's development jobs", "dev jobs", 1)
	os.WriteFile(filepath.Join(dir, "workflow.yaml"), []byte(y), 0o644)

	res, err := manifest.Apply(ctx, st, dir, testenv.Logger(t))
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if res.Workflow.Action != handlersync.Update || res.Steps[0].Action != handlersync.Update || res.Jobs[0].Action != handlersync.Skip {
		t.Fatalf("apply: %+v", res)
	}
	hs, _ := kvmodel.List[kvmodel.Handler](ctx, st, "dev")
	var names []string
	for _, h := range hs {
		names = append(names, h.Name)
	}
	if strings.Join(names, ",") != "map_test_split,reduce_test_pass" {
		t.Errorf("handlers = %v, want the old reducer deleted", names)
	}
	for _, d := range res.Handlers.Decisions {
		if d.Handler == "reduce_test_noop" && d.Action != handlersync.Delete {
			t.Errorf("report says %s for the freed handler", d.Action)
		}
	}
}

func TestApplyRejectsBadManifestsWritingNothing(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"an unknown top-level key is named", "workflow: dev\ncolour: blue\n", []string{`unknown key "colour"`}},
		{"an unknown step key is named with its line", "workflow: dev\nsteps:\n  s1:\n    map: map_test_split\n    reduce: reduce_test_noop\n    mapper: x\n",
			[]string{"workflow.yaml:6:", `step s1: unknown key "mapper"`}},
		{"a missing handler names the step", "workflow: dev\nsteps:\n  s1:\n    map: map_nope\n    reduce: reduce_test_noop\n",
			[]string{"workflow.yaml:3:", `step s1: map handler "map_nope" does not exist`}},
		{"a handler of the wrong type names the step", "workflow: dev\nsteps:\n  s1:\n    map: reduce_test_noop\n    reduce: reduce_test_noop\n",
			[]string{`map handler "reduce_test_noop" is a reducer, not a mapper`}},
		{"a missing initial step names the job", "workflow: dev\njobs:\n  j1:\n    initial_step: nope\n",
			[]string{"workflow.yaml:3:", `job j1: initial step "nope" does not exist`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, st := context.Background(), store(t)
			dir := writeDir(t, map[string]string{
				"workflow.yaml":                tc.yaml,
				"handlers/map/test/split.py":   splitPy,
				"handlers/reduce/test/noop.py": noopPy,
			})
			_, err := manifest.Apply(ctx, st, dir, testenv.Logger(t))
			if err == nil {
				t.Fatal("Apply succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			resp, _ := st.Client().Get(ctx, "/entities/", clientv3.WithPrefix())
			if resp != nil && resp.Count != 0 {
				t.Errorf("a failed apply wrote %d keys", resp.Count)
			}
		})
	}
}

func TestDefaultsCarryTheirSizesAndRejectABadOne(t *testing.T) {
	dir := writeDir(t, map[string]string{"workflow.yaml": "workflow: dev\ndefaults:\n  memory: 256Mi\n  scratch: 64Mi\n  max_output: 1Mi\n"})
	m, err := manifest.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if d := m.Defaults; d == nil || d.Memory != 256<<20 || d.Scratch != 64<<20 || d.MaxOutput != 1<<20 {
		t.Fatalf("defaults = %+v", d)
	}
	dir = writeDir(t, map[string]string{"workflow.yaml": "workflow: dev\ndefaults:\n  scratch: plenty\n"})
	if _, err := manifest.Load(dir); err == nil || !strings.Contains(err.Error(), "defaults.scratch") {
		t.Fatalf("a bad defaults.scratch: %v", err)
	}
}

// Every description of the examples reads as written: YAML takes an
// unquoted " #" for the start of a comment, which once cut the languages
// example's description at "any".
func TestExampleDescriptionsAreWhole(t *testing.T) {
	dirs, err := filepath.Glob("../../examples/*/workflow.yaml")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	for _, f := range dirs {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m, err := manifest.Load(filepath.Dir(f))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(raw), "\n") {
			if d, ok := strings.CutPrefix(line, "description: "); ok {
				if want := strings.Trim(d, `"`); m.Description != want {
					t.Errorf("%s: the workflow's description reads %q, want %q", f, m.Description, want)
				}
			}
		}
	}
}
