package main

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jobx/jobx/sharedfs/tahoetest"
)

// jobx fs on both backends: the local one in --fs-dir, and Tahoe-LAFS (its
// web API's test double) named by the workflow's config in --fs-config-dir.
func TestFSCommandsOnEveryBackend(t *testing.T) {
	tahoe := tahoetest.NewServer()
	srv := httptest.NewServer(tahoe)
	t.Cleanup(srv.Close)
	cfgDir := t.TempDir()
	cfg := "backend: tahoe\ngateway: " + srv.URL + "\ndircap: " + tahoe.MakeDir() + "\n"
	if err := os.WriteFile(filepath.Join(cfgDir, "wf.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	local := t.TempDir()
	for _, backend := range []struct {
		name  string
		flags []string
	}{
		{"local", []string{"--fs-dir", local}},
		{"tahoe", []string{"--fs-config-dir", cfgDir}},
	} {
		t.Run(backend.name, func(t *testing.T) {
			c := newCLI(t)
			fs := func(args ...string) []string { return append(append([]string{"fs"}, args...), backend.flags...) }
			src := t.TempDir()
			os.MkdirAll(filepath.Join(src, "texts", "more"), 0o755)
			os.WriteFile(filepath.Join(src, "texts", "a.txt"), []byte("a b a"), 0o644)
			os.WriteFile(filepath.Join(src, "texts", "more", "b.txt"), []byte("b"), 0o644)
			os.WriteFile(filepath.Join(src, "one.json"), []byte(`{"x":1}`), 0o644)

			r := c.run("", fs("put", "wf", filepath.Join(src, "texts"), "/texts")...)
			if r.code != 0 || !strings.Contains(r.stderr, "copied 2 file(s) to /texts of workflow wf") {
				t.Fatalf("put a directory: %d %s", r.code, r.stderr)
			}
			c.ok(fs("put", "wf", filepath.Join(src, "one.json"), "/in/one.json")...)

			ls := c.ok(fs("ls", "wf")...)
			mustContain(t, "ls /", ls, "in/", "texts/")
			mustContain(t, "ls /texts", c.ok(fs("ls", "wf", "/texts")...), "a.txt", "more/")
			if got := c.ok(fs("cat", "wf", "texts/more/b.txt")...); got != "b" {
				t.Errorf("cat: %q", got)
			}
			out := filepath.Join(t.TempDir(), "got.json")
			c.ok(fs("get", "wf", "/in/one.json", out)...)
			if b, _ := os.ReadFile(out); string(b) != `{"x":1}` {
				t.Errorf("get wrote %q", b)
			}
			if got := c.ok(fs("get", "wf", "/in/one.json", "-")...); got != `{"x":1}` {
				t.Errorf("get to stdout: %q", got)
			}

			mustContain(t, "rm a directory without -r", c.fails(fs("rm", "wf", "/texts")...), "/texts is a directory: give -r")
			c.ok(fs("rm", "wf", "/in/one.json")...)
			c.ok(fs("rm", "wf", "/texts", "-r")...)
			if ls := c.ok(fs("ls", "wf")...); strings.Contains(ls, "texts") || !strings.Contains(ls, "in/") {
				t.Errorf("after rm: %q", ls)
			}
			mustContain(t, "a missing file", c.fails(fs("cat", "wf", "/nope")...), "nope")
		})
	}
	if _, err := os.Stat(filepath.Join(local, "working", "wf")); err != nil {
		t.Errorf("the local backend's workflow root: %v", err)
	}
}

func TestFSCommandsNameAMissingFilesystem(t *testing.T) {
	c := newCLI(t)
	missing := filepath.Join(t.TempDir(), "nope")
	mustContain(t, "missing --fs-dir", c.fails("fs", "ls", "wf", "--fs-dir", missing), "--fs-dir "+missing+" is not a directory")
	mustContain(t, "none given", c.fails("fs", "ls", "wf", "--fs-dir", ""), "no shared filesystem for workflow wf: give --fs-dir or --fs-config-dir")
}

// jobx apply copies a workflow directory's files/ into its shared files
// when a filesystem is given, and says how to otherwise.
func TestApplyCopiesFilesWhenAFilesystemIsGiven(t *testing.T) {
	c := newCLI(t)
	r := c.run("", "apply", "../../examples/wordcount")
	if r.code != 0 || !strings.Contains(r.stderr, "not copied into workflow wordcount's shared files: give --fs-dir") {
		t.Fatalf("apply without a filesystem: %d %s", r.code, r.stderr)
	}
	fsDir := t.TempDir()
	r = c.run("", "apply", "../../examples/wordcount", "--fs-dir", fsDir)
	if r.code != 0 || !strings.Contains(r.stderr, "into workflow wordcount's shared files") {
		t.Fatalf("apply --fs-dir: %d %s", r.code, r.stderr)
	}
	want, _ := filepath.Glob("../../examples/wordcount/files/texts/*")
	got, _ := filepath.Glob(filepath.Join(fsDir, "working", "wordcount", "texts", "*"))
	if len(want) == 0 || len(got) != len(want) {
		t.Fatalf("copied %d texts, want %d", len(got), len(want))
	}
}
