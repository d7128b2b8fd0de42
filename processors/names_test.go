package processors_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-multierror"

	"github.com/jobx/jobx/processors"
	_ "github.com/jobx/jobx/processors/all"
)

func TestHandlerName(t *testing.T) {
	tests := []struct {
		name, path, want, wantErr string
	}{
		{"a nested file joins its directories with _", "map/test/split.py", "map_test_split", ""},
		{"a file at the root keeps its bare name", "sum.py", "sum", ""},
		{"only the last extension is dropped", "a/b.tar.py", "a_b.tar", ""},
		{"an executable without extension keeps its name", "bin/tool", "bin_tool", ""},
		{"a leading ./ is ignored", "./map/x.js", "map_x", ""},
		{"a - in the file name is rejected", "map/my-split.py", "", "map/my-split.py: invalid handler name \"map_my-split\""},
		{"a - in a directory is rejected", "my-dir/split.py", "", "my-dir/split.py: invalid handler name"},
		{"white space is rejected", "map/a b.py", "", "map/a b.py: invalid handler name"},
		{"a bare extension gives an empty name", ".py", "", ".py: invalid handler name: empty"},
		{"a path leaving the directory is rejected", "../x.py", "", "../x.py: invalid handler name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := processors.HandlerName(tt.path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, processors.ErrInvalidName) {
					t.Fatalf("got %q, %v; want error %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestSkipFile(t *testing.T) {
	tests := []struct {
		name string
		skip bool
	}{
		{"split.py", false}, {"_helper.py", true}, {".hidden.py", true}, {"Makefile", true}, {"a.b.c", false}, {"", true},
	}
	for _, tt := range tests {
		if got := processors.SkipFile(tt.name); got != tt.skip {
			t.Errorf("SkipFile(%q) = %v, want %v", tt.name, got, tt.skip)
		}
	}
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, src := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasPrefix(src, "#!") {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(src), mode); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDiscover(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"map/test/split.py":      splitPy,
		"reduce/test/sum.py":     "",
		"reduce/count.js":        "",
		"reduce/count2.sh":       "",
		"bin/tool":               "#!/bin/sh\n",
		"bin/notes":              "plain text, no #!",
		"scripts/hello.rb":       "#!/usr/bin/env ruby\n",
		"map/_private.py":        "",
		"map/.swp.py":            "",
		"README.md":              "# docs",
		"_lib/x.py":              "",
		".git/config.py":         "",
		"map/test/__pycache__/a": "",
	})
	// A no-dot file with #! but not executable is skipped.
	if err := os.WriteFile(filepath.Join(dir, "bin", "noexec"), []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	files, warnings, err := processors.Discover(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range files {
		got = append(got, f.Name+"="+f.RelPath+"@"+f.Processor.Name())
		if f.Path != filepath.Join(dir, filepath.FromSlash(f.RelPath)) {
			t.Errorf("path %s for %s", f.Path, f.RelPath)
		}
	}
	want := []string{
		"bin_tool=bin/tool@exec",
		"map_test_split=map/test/split.py@python",
		"reduce_count=reduce/count.js@node",
		"reduce_count2=reduce/count2.sh@sh",
		"reduce_test_sum=reduce/test/sum.py@python",
		"scripts_hello=scripts/hello.rb@exec",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("files:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(warnings) != 1 || warnings[0].Path != "README.md" || !strings.Contains(warnings[0].String(), `no processor for extension ".md"`) {
		t.Errorf("warnings: %v", warnings)
	}
}

func TestDiscoverReportsEveryBadName(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"a/b.py":         "",
		"a_b.js":         "",
		"my-map.py":      "",
		"x-dir/ok.sh":    "",
		"fine/handle.py": "",
	})
	_, _, err := processors.Discover(dir)
	var merr *multierror.Error
	if !errors.As(err, &merr) || len(merr.Errors) != 3 {
		t.Fatalf("got %v, want 3 errors", err)
	}
	for _, want := range []string{`a_b.js: invalid handler name "a_b": also the name of a/b.py`, "my-map.py", "x-dir/ok.sh"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}

func TestRegistry(t *testing.T) {
	if got := strings.Join(processors.Names(), ","); got != "exec,node,python,sh" {
		t.Errorf("names %s", got)
	}
	tests := []struct {
		file, src, want string
	}{
		{"a.py", "", "python"}, {"a.PY", "", "python"}, {"a.js", "#!/usr/bin/env node\n", "node"}, {"a.sh", "", "sh"},
		{"tool", "#!/bin/sh\n", "exec"}, {"tool.rb", "#!/usr/bin/env ruby\n", "exec"}, {"notes.txt", "hi", ""},
	}
	for _, tt := range tests {
		p, ok := processors.ForFile(tt.file, []byte(tt.src))
		got := ""
		if ok {
			got = p.Name()
		}
		if got != tt.want {
			t.Errorf("ForFile(%q) = %q, want %q", tt.file, got, tt.want)
		}
	}
	if p, ok := processors.ByName("python"); !ok || p.Extensions()[0] != ".py" {
		t.Errorf("ByName(python) = %v, %v", p, ok)
	}
	if _, ok := processors.ByName("cobol"); ok {
		t.Error("ByName(cobol) found something")
	}
	if v := processors.Version([]byte("abc")); v != "a9993e364706816aba3e25717850c26c9cd0d89d" {
		t.Errorf("Version = %s", v)
	}
}
