package main

import (
	"strings"
	"testing"

	"github.com/jobx/jobx/kvmodel"
)

// JobX's flag spellings are aliases of jobx's flags, hidden from --help.
func TestJobXFlagSpellingsAreHiddenAliases(t *testing.T) {
	c := newCLI(t)
	c.ok("workflow", "create", "demo", "demo")
	dir := "testdata/dev/handlers"

	r := c.run("", "handler", "sync", "demo", dir, "--simulate_only")
	if r.code != 0 {
		t.Fatalf("--simulate_only: exit %d: %s", r.code, r.stderr)
	}
	mustContain(t, "--simulate_only is a dry run", r.stderr, "dry run")
	if hs, _ := kvmodel.List[kvmodel.Handler](t.Context(), c.store, "demo"); len(hs) != 0 {
		t.Fatalf("--simulate_only wrote %d handlers", len(hs))
	}
	c.ok("handler", "sync", "demo", dir)
	mustContain(t, "--force_update", c.ok("handler", "sync", "demo", dir, "--force_update"), "update  map_double  (map/double.py)  forced")

	help := c.ok("handler", "sync", "--help")
	for _, old := range []string{"--simulate_only", "--force_update"} {
		// The flag's usage names JobX's spelling in prose; no flag line does.
		for _, line := range strings.Split(help, "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), old) {
				t.Errorf("--help lists %s as a flag: %q", old, line)
			}
		}
	}
	mustContain(t, "an unknown flag still fails", c.fails("handler", "sync", "demo", dir, "--simulate_everything"), "unknown flag: --simulate_everything")
}

// JobX's `-a NAME TYPE` (mr_kv_handler_create) is read as `-a NAME=TYPE`,
// an empty TYPE included.
func TestJobXTwoWordArgumentForm(t *testing.T) {
	c := newCLI(t)
	c.ok("workflow", "create", "dev", "dev")
	for _, tc := range []struct {
		name, spec string
		want       map[string]any
	}{
		{"reduce_pair", "list", map[string]any{"results": "list"}},
		{"reduce_null", "", map[string]any{"results": nil}},
	} {
		r := c.run(sumSource, "handler", "create", "dev", tc.name, "d", "python", "reducer", "-a", "results", tc.spec)
		if r.code != 0 {
			t.Fatalf("handler create -a results %q: exit %d: %s", tc.spec, r.code, r.stderr)
		}
		h := &kvmodel.Handler{WorkflowName: "dev", Name: tc.name}
		if err := c.store.Get(t.Context(), h); err != nil {
			t.Fatal(err)
		}
		if len(h.ArgumentSpec) != 1 || h.ArgumentSpec[0][0] != "results" || h.ArgumentSpec[0][1] != tc.want["results"] {
			t.Errorf("-a results %q stored argument_spec %v, want %v", tc.spec, h.ArgumentSpec, tc.want)
		}
	}
}

// mr_kv_step_create's exit statuses: 1, 2 or 3 for a bad map, combine or
// reduce handler.
func TestStepCreateExitsWithJobXsCodes(t *testing.T) {
	c := newCLI(t)
	seedDefs(t, c)
	for _, tc := range []struct {
		handlers [3]string
		code     int
	}{
		{[3]string{"nope", "", "red_a"}, 1},
		{[3]string{"map_a", "red_a", "red_a"}, 2},
		{[3]string{"map_a", "", "nope"}, 3},
	} {
		r := c.run("", "step", "create", "dev", "s9", "d", tc.handlers[0], tc.handlers[1], tc.handlers[2])
		if r.code != tc.code || !strings.Contains(r.stderr, "step s9:") {
			t.Errorf("step create with handlers %q: exit %d (%s), want %d", tc.handlers, r.code, strings.TrimSpace(r.stderr), tc.code)
		}
	}
}

// JobX's `-a KEY VALUE` (mr_kv_request_create) reaches jobx submit as
// `-a KEY=VALUE`; jobx's own form and other commands are left alone.
func TestJobXPairsRewritesOnlyThePairCommands(t *testing.T) {
	a := &app{env: loadEnv(func(string) string { return "" })}
	root := a.newRootCmd()
	for _, tc := range []struct{ in, want string }{
		{"submit dev job4 -a arg1 17413412", "submit dev job4 -a arg1=17413412"},
		{"--gateway http://x submit dev job4 --argument a 1 -a b=2", "--gateway http://x submit dev job4 --argument a=1 -a b=2"},
		{"submit dev job4 -a k=v", "submit dev job4 -a k=v"},
		{"submit dev job4 -- -a k v", "submit dev job4 -- -a k v"},
		{"handler create dev h d python mapper -a arguments ''", "handler create dev h d python mapper -a arguments=''"},
		{"workflow create -a b c", "workflow create -a b c"},
	} {
		if got := strings.Join(jobxPairs(root, strings.Fields(tc.in)), " "); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.in, got, tc.want)
		}
	}
}
