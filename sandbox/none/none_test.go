package none

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jobx/jobx/internal/tmpfs"
	"github.com/jobx/jobx/processors"
	_ "github.com/jobx/jobx/processors/all"
	"github.com/jobx/jobx/sandbox"
	"github.com/jobx/jobx/sandbox/sandboxtest"
)

// logger routes a sandbox's log to the test's.
func logger(t *testing.T) *slog.Logger { return slog.New(slog.NewTextHandler(tWriter{t}, nil)) }

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// newSandbox returns a none sandbox with a Python zygote, closed when the
// test ends.
func newSandbox(t *testing.T) *Sandbox {
	t.Helper()
	s, err := New(Options{Dir: t.TempDir(), Zygotes: 1, Log: logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// run installs src (the handler file named file) and runs it on s.
func run(t *testing.T, s *Sandbox, file, src string, limits sandbox.Limits) (*sandbox.Outcome, string) {
	t.Helper()
	proc, ok := processors.ForFile(file, []byte(src))
	if !ok {
		t.Fatalf("no processor for %s", file)
	}
	meta, err := processors.ParseHeader(file, []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	name := strings.NewReplacer("/", "_", ".", "_").Replace(file)
	prog, err := proc.Install(filepath.Join(s.opts.Dir, "handlers"), processors.Handler{Workflow: "wf", Name: name, Type: meta.HandlerType, SourceType: proc.Name(), Source: src})
	if err != nil {
		t.Fatal(err)
	}
	limits.Timeout = 20 * time.Second
	var stdout bytes.Buffer
	out, err := s.Run(context.Background(), &sandbox.RunSpec{
		Workflow: "wf", Handler: name, HandlerType: meta.HandlerType, Invocation: "i1", Program: prog,
		Env:   []string{"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"},
		Stdin: strings.NewReader(""), Stdout: &stdout, Limits: limits,
	})
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return out, stdout.String()
}

func TestNewDetachesTheScratchMountsOfAKilledRun(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	stale := filepath.Join(dir, "scratch", "inv-stale")
	if err := os.MkdirAll(stale, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tmpfs.UnmountUnder(dir) })
	if err := tmpfs.Mount(stale, 1<<20, 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(stale, "left"), []byte("x"), 0o600)
	s, err := New(Options{Dir: dir, Log: logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	points, _ := tmpfs.Under(dir)
	for _, p := range points {
		if p == stale {
			t.Fatalf("the stale mount %s is still there", stale)
		}
	}
	if _, err := os.Lstat(stale); !os.IsNotExist(err) {
		t.Fatalf("the stale scratch directory is still there: %v", err)
	}
}

// Without a tmpfs (mount is not allowed as another user than root), each
// file a run writes is bounded to its quota.
func TestWithoutMountsEachFileIsBoundedToTheQuota(t *testing.T) {
	s := newSandbox(t)
	s.boundFilesOnly()
	out, _ := run(t, s, "map/fill.py", sandboxtest.FillScratchPy, sandbox.Limits{Scratch: 8 << 20})
	if out.Succeeded() || !strings.Contains(out.StderrTail, "OSError: [Errno 27] File too large") {
		t.Fatalf("a Python handler writing a 32 MiB file under an 8 MiB quota: %+v, want EFBIG", out)
	}
	out, _ = run(t, s, "map/fill.sh", sandboxtest.FillScratchSh, sandbox.Limits{Scratch: 8 << 20})
	if out.Succeeded() || !strings.Contains(out.StderrTail, "File size limit exceeded") { // dd got SIGXFSZ
		t.Fatalf("a sh handler writing a 32 MiB file under an 8 MiB quota: %+v, want dd killed by SIGXFSZ", out)
	}
}
