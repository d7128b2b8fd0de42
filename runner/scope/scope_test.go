package scope

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jobx/jobx/kvmodel"
)

func handler(name string) *kvmodel.Handler {
	return &kvmodel.Handler{Name: name, WorkflowName: "wf", HandlerType: kvmodel.HandlerMapper, SourceCode: "x"}
}

func TestAScopeFileGivesEveryHandlerItsVariablesWithTheirTypes(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "wf.yaml"), []byte("all: {RETRIES: 3, NAME: base}\nhandlers: {map_a: {NAME: a, FLAGS: [1, 2]}}\n"), 0o644)
	f := New(Options{Dir: dir, TTL: time.Minute})
	for _, tc := range []struct {
		handler string
		want    []string
	}{
		{"map_a", []string{"FLAGS=[1,2]", "NAME=a", "RETRIES=3", "JOBX_SCOPE_VARS=FLAGS,NAME,RETRIES", `JOBX_SCOPE_JSON={"FLAGS":[1,2],"NAME":"a","RETRIES":3}`}},
		{"map_b", []string{"NAME=base", "RETRIES=3", "JOBX_SCOPE_VARS=NAME,RETRIES", `JOBX_SCOPE_JSON={"NAME":"base","RETRIES":3}`}},
	} {
		vars, err := f.Vars(t.Context(), handler(tc.handler))
		if err != nil {
			t.Fatal(err)
		}
		env, err := Env(vars)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(env, tc.want) {
			t.Errorf("%s: env %q, want %q", tc.handler, env, tc.want)
		}
	}
}

func TestAWorkflowWithoutAFactoryHasNoVariables(t *testing.T) {
	f := New(Options{Dir: t.TempDir(), TTL: time.Minute})
	vars, err := f.Vars(t.Context(), handler("map_a"))
	if err != nil || vars != nil {
		t.Fatalf("got %v, %v; want nil, nil", vars, err)
	}
	if env, err := Env(nil); env != nil || err != nil {
		t.Fatalf("Env(nil) = %q, %v", env, err)
	}
}

func TestAFactoryMayNotSetReservedOrMalformedNames(t *testing.T) {
	for _, name := range []string{"PATH", "JOBX_TOKEN", "1BAD", "A-B"} {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "wf.json"), []byte(`{"all": {"`+name+`": "x"}}`), 0o644)
		_, err := New(Options{Dir: dir, TTL: time.Minute}).Vars(t.Context(), handler("map_a"))
		if err == nil || !strings.Contains(err.Error(), `variable name "`+name+`" is not allowed`) {
			t.Errorf("%s: got %v, want an error naming it", name, err)
		}
	}
}

func TestAnExecutableFactoryIsAskedOncePerHandlerVersion(t *testing.T) {
	dir := t.TempDir()
	count := filepath.Join(dir, "count")
	script := "#!/bin/sh\necho x >> " + count + "\necho '{\"HANDLER\": \"'$1'\"}'\n"
	if err := os.WriteFile(filepath.Join(dir, "wf"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	f := New(Options{Dir: dir, TTL: time.Hour})
	h := handler("map_a")
	for range 3 {
		vars, err := f.Vars(t.Context(), h)
		if err != nil || vars["HANDLER"] != "map_a" {
			t.Fatalf("got %v, %v", vars, err)
		}
	}
	h.SourceCode = "changed"
	if _, err := f.Vars(t.Context(), h); err != nil {
		t.Fatal(err)
	}
	if runs, _ := os.ReadFile(count); strings.Count(string(runs), "x") != 2 {
		t.Fatalf("the factory ran %d times, want 2 (once per handler version)", strings.Count(string(runs), "x"))
	}
}

func TestAValueWithANulByteIsRefused(t *testing.T) {
	if _, err := Env(map[string]any{"A": "x\x00y"}); err == nil || !strings.Contains(err.Error(), "NUL") {
		t.Fatalf("got %v, want an error naming the NUL byte", err)
	}
}
