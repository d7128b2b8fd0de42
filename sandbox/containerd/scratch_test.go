package containerd_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jobx/jobx/internal/tmpfs"
	"github.com/jobx/jobx/sandbox"
	ctrd "github.com/jobx/jobx/sandbox/containerd"
)

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

// Handlers that report their scratch file system's size and free bytes,
// and their scratch directory's entries.
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

// scratchMounts returns the mounts under a test sandbox's Dir.
func (e *env) scratchMounts() []string {
	e.t.Helper()
	points, err := tmpfs.Under(filepath.Join(filepath.Dir(e.dir), "sb"))
	if err != nil {
		e.t.Fatal(err)
	}
	return points
}

func TestAHandlerThatFillsItsScratchGetsENOSPCAndTheNextRunAFullQuota(t *testing.T) {
	e := newEnv(t)
	const quota = 8 << 20
	for _, tc := range []struct {
		lang, fill, stat, stderr string
	}{
		{"py", pyFill, pyStat, "OSError: [Errno 28] No space left on device"},
		{"sh", shFill, shStat, "No space left on device"},
	} {
		t.Run(tc.lang, func(t *testing.T) {
			created := e.sb.Created()
			out, _, err := e.run("wf", "map/fill."+tc.lang, tc.fill, "", sandbox.Limits{Scratch: quota})
			if err != nil || out.Succeeded() || !strings.Contains(out.StderrTail, tc.stderr) {
				t.Fatalf("a handler writing 32 MiB into 8 MiB of scratch: %+v, %v; want a failure with %q", out, err, tc.stderr)
			}
			_, stdout := e.mustSucceed("wf", "map/stat."+tc.lang, tc.stat, "", sandbox.Limits{Scratch: quota})
			if want := "8388608 8388608 0"; !strings.Contains(stdout, want) {
				t.Fatalf("the next run: %s, want an empty scratch with its 8 MiB free (%s)", stdout, want)
			}
			if n := e.sb.Created() - created; n != 1 {
				t.Fatalf("%d sandboxes created for two runs of one key, want 1 (the next run in the same box)", n)
			}
			// Another quota: another box, with a scratch of that size.
			_, stdout = e.mustSucceed("wf", "map/stat."+tc.lang, tc.stat, "", sandbox.Limits{Scratch: 2 * quota})
			if want := "16777216 16777216 0"; !strings.Contains(stdout, want) {
				t.Fatalf("a run with a 16 MiB quota: %s, want %s", stdout, want)
			}
			if n := e.sb.Created() - created; n != 2 {
				t.Fatalf("%d sandboxes created for two quotas, want 2", n)
			}
		})
	}
	if len(e.scratchMounts()) == 0 {
		t.Fatal("no scratch tmpfs while the sandbox is open")
	}
	e.sb.Close()
	if points := e.scratchMounts(); len(points) != 0 {
		t.Fatalf("mounts left after Close: %q", points)
	}
}

func TestNewDetachesTheScratchMountsOfAKilledRunner(t *testing.T) {
	dir, err := os.MkdirTemp("", "jx-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tmpfs.UnmountUnder(dir); os.RemoveAll(dir) })
	stale := filepath.Join(dir, "c", "jx-stale", "scratch")
	if err := os.MkdirAll(stale, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := tmpfs.Mount(stale, 1<<20, 0o711); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(stale, "left"), []byte("x"), 0o600)
	newEnv(t, func(o *ctrd.Options) { o.Dir = dir })
	if points, _ := tmpfs.Under(dir); len(points) != 0 {
		t.Fatalf("mounts left under the sandbox's directory after New: %q", points)
	}
	if _, err := os.Lstat(stale); !os.IsNotExist(err) {
		t.Fatalf("the stale box directory is still there: %v", err)
	}
}

// tmpfs pages are charged to the memory cgroup of the process that writes
// them: a handler that writes more than its memory limit into a larger
// scratch is OOM-killed, and the next run gets a clean box.
func TestScratchCountsAgainstTheMemoryLimit(t *testing.T) {
	e := newEnv(t)
	limits := sandbox.Limits{Scratch: 128 << 20, Memory: 48 << 20}
	fill96 := strings.Replace(pyFill, "range(32)", "range(96)", 1)
	out, _, err := e.run("wf", "map/fill.py", fill96, "", limits)
	if err != nil || !out.OOMKilled {
		t.Fatalf("a handler writing 96 MiB of scratch under a 48 MiB memory limit: %+v, %v; want an OOM kill", out, err)
	}
	_, stdout := e.mustSucceed("wf", "map/stat.py", pyStat, "", limits)
	if want := "134217728 134217728 0"; !strings.Contains(stdout, want) {
		t.Fatalf("the next run: %s, want an empty scratch with its 128 MiB free (%s)", stdout, want)
	}
}
