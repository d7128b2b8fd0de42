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

// Handlers that write 32 MiB into their scratch directory.
const (
	pyFill = `"""
Fill the scratch directory.

**
handler_type: mapper
"""
import os
yield MrConfigureToReturn()
with open(os.path.join(os.environ['JOBX_SCRATCH'], 'fill'), 'wb') as f:
    for _ in range(32):
        f.write(b'x' * (1 << 20))
`
	shFill = `#!/bin/sh
# Fill the scratch directory.
#
# **
# handler_type: mapper
set -e
dd if=/dev/zero of="$JOBX_SCRATCH/fill" bs=1048576 count=32
echo '{"jobx":"return"}'
`
)

// Handlers that report their scratch file system's size, free bytes and
// entries.
const (
	pyStat = `"""
Report the scratch directory.

**
handler_type: mapper
"""
import os
st = os.statvfs(os.environ['JOBX_SCRATCH'])
yield MrConfigureToReturn()
yield ("scratch", "%d %d %d" % (st.f_blocks * st.f_frsize, st.f_bfree * st.f_frsize, len(os.listdir(os.environ['JOBX_SCRATCH']))))
`
	shStat = `#!/bin/sh
# Report the scratch directory.
#
# **
# handler_type: mapper
set -e
set -- $(stat -f -c '%b %f %S' "$JOBX_SCRATCH")
echo '{"jobx":"return"}'
echo "[\"scratch\", \"$(($1 * $3)) $(($2 * $3)) $(ls -A "$JOBX_SCRATCH" | wc -l)\"]"
`
)

func TestAHandlerThatFillsItsScratchGetsENOSPCAndTheNextRunAFullQuota(t *testing.T) {
	requireRoot(t)
	const quota = 8 << 20
	s := newSandbox(t)
	for _, tc := range []struct {
		lang, fill, stat, stderr string
	}{
		{"py", pyFill, pyStat, "OSError: [Errno 28] No space left on device"},
		{"sh", shFill, shStat, "No space left on device"},
	} {
		t.Run(tc.lang, func(t *testing.T) {
			out, _ := run(t, s, "map/fill."+tc.lang, tc.fill, sandbox.Limits{Scratch: quota})
			if out.Succeeded() || !strings.Contains(out.StderrTail, tc.stderr) {
				t.Fatalf("a handler writing 32 MiB into 8 MiB of scratch: %+v, want a failure with %q", out, tc.stderr)
			}
			out, stdout := run(t, s, "map/stat."+tc.lang, tc.stat, sandbox.Limits{Scratch: quota})
			if want := `["scratch", "8388608 8388608 0"]`; !out.Succeeded() || !strings.Contains(strings.ReplaceAll(stdout, `","`, `", "`), want) {
				t.Fatalf("the next run: %+v %s, want an empty scratch with its 8 MiB free (%s)", out, stdout, want)
			}
			// Another quota: a scratch of that size.
			_, stdout = run(t, s, "map/stat."+tc.lang, tc.stat, sandbox.Limits{Scratch: 2 * quota})
			if want := `16777216 16777216 0`; !strings.Contains(stdout, want) {
				t.Fatalf("a run with a 16 MiB quota: %s, want %s", stdout, want)
			}
		})
	}
	if points, _ := tmpfs.Under(s.opts.Dir); len(points) == 0 {
		t.Fatal("no scratch tmpfs while the sandbox is open")
	}
	s.Close()
	if points, _ := tmpfs.Under(s.opts.Dir); len(points) != 0 {
		t.Fatalf("mounts left after Close: %q", points)
	}
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
	out, _ := run(t, s, "map/fill.py", pyFill, sandbox.Limits{Scratch: 8 << 20})
	if out.Succeeded() || !strings.Contains(out.StderrTail, "OSError: [Errno 27] File too large") {
		t.Fatalf("a Python handler writing a 32 MiB file under an 8 MiB quota: %+v, want EFBIG", out)
	}
	out, _ = run(t, s, "map/fill.sh", shFill, sandbox.Limits{Scratch: 8 << 20})
	if out.Succeeded() || !strings.Contains(out.StderrTail, "File size limit exceeded") { // dd got SIGXFSZ
		t.Fatalf("a sh handler writing a 32 MiB file under an 8 MiB quota: %+v, want dd killed by SIGXFSZ", out)
	}
}
