package python_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jobx/jobx/processors"
	"github.com/jobx/jobx/processors/internal/proctest"
	"github.com/jobx/jobx/processors/python"
)

func readTestdata(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func installTestdata(t testing.TB, file string) processors.Program {
	t.Helper()
	src := readTestdata(t, file)
	meta, err := processors.ParseHeader(file, []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return proctest.Install(t, python.Processor{}, strings.TrimSuffix(file, ".py"), meta.HandlerType, src)
}

func equalLines(t *testing.T, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("stdout:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestRunHandlers(t *testing.T) {
	tests := []struct {
		name       string
		file       string
		stdin      string
		env        []string
		wantCode   int
		wantStdout []string
		wantStderr []string
	}{
		{
			name:       "JobX's split.py branches to a downstream step unmodified",
			file:       "split.py",
			stdin:      `["arg1", 17]` + "\n",
			wantStdout: []string{`{"jobx":"map","step":"step7_chunk_argument"}`, `[0,8]`, `[1,9]`},
		},
		{
			name:       "JobX's sum.py returns tally.items() and logs through LOG",
			file:       "sum.py",
			stdin:      "[\"a\", [1, 2, 3]]\n[\"b\", [10]]\n",
			wantStdout: []string{`["a",6]`, `["b",10]`},
			wantStderr: []string{"summed 2 keys"},
		},
		{
			name:  "a leaf mapper returns pairs and sees the injected names and scope variables",
			file:  "leaf.py",
			stdin: "[\"x\", 1]\n\n[\"y\", 2.5]\n",
			env:   []string{"JOBX_SCOPE_VARS=test_scope_val,absent", "test_scope_val=99"},
			wantStdout: []string{`{"jobx":"return"}`, `["x",2]`, `["y",5.0]`, `["a/b","/"]`,
				`["scope","99"]`, `["fs",null]`},
			wantStderr: []string{"print goes to the log", "so does print",
				`JOBX-NOTIFY {"level": "info", "message": "seen 2 arguments"`},
		},
		{
			name:       "scope values keep their JSON types (a number, not the string the environment holds)",
			file:       "leaf.py",
			stdin:      "[\"x\", 1]\n",
			env:        []string{"JOBX_SCOPE_VARS=test_scope_val", "test_scope_val=99", `JOBX_SCOPE_JSON={"test_scope_val": 99}`},
			wantStdout: []string{`{"jobx":"return"}`, `["x",2]`, `["a/b","/"]`, `["scope",99]`, `["fs",null]`},
		},
		{
			name:       "a combiner yields a list of values per key",
			file:       "combine.py",
			stdin:      "[\"a\", [3, 9, 4]]\n[\"b\", [1]]\n",
			wantStdout: []string{`["a",[9]]`, `["b",[1]]`},
		},
		{
			name:       "a failing handler exits 1 with a traceback naming the original line",
			file:       "fail.py",
			stdin:      "[\"a\", [30]]\n",
			wantCode:   1,
			wantStderr: []string{"Traceback", `.py", line 13, in _jobx_handler`, "ValueError: total too large: 30"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prog := installTestdata(t, tt.file)
			res := proctest.Run(t, prog, tt.stdin, tt.env...)
			if res.Code != tt.wantCode {
				t.Fatalf("exit code %d, want %d; stderr:\n%s", res.Code, tt.wantCode, res.Stderr)
			}
			if tt.wantCode == 0 {
				equalLines(t, res.Stdout, tt.wantStdout)
			}
			for _, s := range tt.wantStderr {
				if !strings.Contains(res.Stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, res.Stderr)
				}
			}
			if strings.Contains(res.Stderr, "jobx_runtime.py") {
				t.Errorf("traceback shows runtime frames:\n%s", res.Stderr)
			}
		})
	}
}

func TestRunRejectsBadHandlers(t *testing.T) {
	tests := []struct {
		name, typ, body, stdin string
		wantCode               int
		wantStderr             string
	}{
		{"a mapper that returns a list instead of yielding fails", "mapper",
			"\"\"\"\n**\nhandler_type: mapper\n\"\"\"\nreturn [(1, 2)]\n", "", 1, "a mapper must be a generator"},
		{"a mapper whose first item is not a directive fails", "mapper",
			"\"\"\"\n**\nhandler_type: mapper\n\"\"\"\nyield (1, 2)\n", "", 1, "first item must be MrConfigureToMap"},
		{"a syntax error exits 2 naming the original line", "reducer",
			"\"\"\"\n**\nhandler_type: reducer\n\"\"\"\nx = 1\nif x\n    pass\n", "", 2, ".py:6: syntax error"},
		{"a non-JSON item fails", "reducer",
			"\"\"\"\n**\nhandler_type: reducer\n\"\"\"\nyield 1, {1, 2}\n", "", 1, "not JSON-serialisable"},
		{"malformed input exits 2", "reducer",
			"\"\"\"\n**\nhandler_type: reducer\n\"\"\"\nreturn results\n", "[1, 2, 3]\n", 2, "stdin line 1"},
		{"bad JSON names its line, blank lines counted", "reducer",
			"\"\"\"\n**\nhandler_type: reducer\n\"\"\"\nreturn results\n", "[\"a\", [1]]\n\n{bad\n", 2, "stdin line 3: bad JSON"},
		{"two values on one line are refused, even when the lines would join into a list", "mapper",
			"\"\"\"\n**\nhandler_type: mapper\n\"\"\"\nyield MrConfigureToReturn()\n", "[\"a\",1],[\"b\",2]\n", 2, "stdin line 1: bad JSON"},
		{"a value split over lines is refused", "mapper",
			"\"\"\"\n**\nhandler_type: mapper\n\"\"\"\nyield MrConfigureToReturn()\n", "[\"a\",\n1]\n", 2, "stdin line 1: bad JSON"},
		{"sessions fail clearly without the services endpoint", "reducer",
			"\"\"\"\n**\nhandler_type: reducer\n\"\"\"\nS_SET('k', 1)\nreturn []\n", "", 1,
			"the jobx services endpoint is not available: JOBX_SERVICES is not set"},
		{"RUN raises Command failed on an unexpected exit status", "reducer",
			"\"\"\"\n**\nhandler_type: reducer\n\"\"\"\nRUN('echo out; exit 3')\nreturn []\n", "", 1,
			"ValueError: Command failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prog := proctest.Install(t, python.Processor{}, "h", tt.typ, tt.body)
			res := proctest.Run(t, prog, tt.stdin)
			if res.Code != tt.wantCode {
				t.Fatalf("exit code %d, want %d; stderr:\n%s", res.Code, tt.wantCode, res.Stderr)
			}
			if !strings.Contains(res.Stderr, tt.wantStderr) {
				t.Errorf("stderr lacks %q:\n%s", tt.wantStderr, res.Stderr)
			}
		})
	}
}

func TestRunHelperReturnsStatus(t *testing.T) {
	body := "\"\"\"\n**\nhandler_type: reducer\n\"\"\"\nrc = RUN(['sh', '-c', 'echo hi; exit 4'], success_code=None)\nyield 'rc', rc\n"
	res := proctest.Run(t, proctest.Install(t, python.Processor{}, "h", "reducer", body), "")
	if res.Code != 0 {
		t.Fatalf("exit %d: %s", res.Code, res.Stderr)
	}
	equalLines(t, res.Stdout, []string{`["rc",4]`})
	if !strings.Contains(res.Stderr, "hi") {
		t.Errorf("RUN output not logged: %s", res.Stderr)
	}
}

func TestInstallIsIdempotentAndVersioned(t *testing.T) {
	dir := t.TempDir()
	h := processors.Handler{Name: "map_x", Type: "mapper", Source: "\"\"\"\n**\nhandler_type: mapper\n\"\"\"\nyield MrConfigureToReturn()\n"}
	p1, err := python.Processor{}.Install(dir, h)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := python.Processor{}.Install(dir, h)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(p1.Argv, " ") != strings.Join(p2.Argv, " ") {
		t.Errorf("argv changed: %v vs %v", p1.Argv, p2.Argv)
	}
	h.Source += "yield 1, 2\n"
	p3, err := python.Processor{}.Install(dir, h)
	if err != nil {
		t.Fatal(err)
	}
	if p3.Warm.HandlerPath == p1.Warm.HandlerPath {
		t.Errorf("a new version reuses %s", p1.Warm.HandlerPath)
	}
	want := filepath.Join(dir, "python", "map_x-"+processors.Version([]byte(h.Source))+".py")
	if p3.Warm.HandlerPath != want {
		t.Errorf("handler path %s, want %s", p3.Warm.HandlerPath, want)
	}
	if p3.Argv[1] != filepath.Join(dir, "python", python.RuntimeFile) || p3.Argv[2] != "run" {
		t.Errorf("argv %v", p3.Argv)
	}
}

func TestCheck(t *testing.T) {
	ctx := context.Background()
	if err := (python.Processor{}).Check(ctx, "map/split.py", []byte(readTestdata(t, "split.py"))); err != nil {
		t.Errorf("split.py: %v", err)
	}
	src := "\"\"\"\n**\nhandler_type: reducer\n\"\"\"\nx = (1,\nyield x\n"
	err := (python.Processor{}).Check(ctx, "reduce/bad.py", []byte(src))
	var ce *processors.CheckError
	if !errors.As(err, &ce) || ce.File != "reduce/bad.py" || ce.Line == 0 {
		t.Fatalf("want a CheckError naming file and line, got %#v (%v)", err, err)
	}
	if !strings.HasPrefix(err.Error(), "reduce/bad.py:5: ") {
		t.Errorf("error %q does not start with file:line", err)
	}
}
