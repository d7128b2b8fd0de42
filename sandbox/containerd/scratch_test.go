package containerd_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jobx/jobx/internal/tmpfs"
	"github.com/jobx/jobx/sandbox"
	ctrd "github.com/jobx/jobx/sandbox/containerd"
	"github.com/jobx/jobx/sandbox/sandboxtest"
)

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
	fill96 := strings.Replace(sandboxtest.FillScratchPy, "range(32)", "range(96)", 1)
	out, _, err := e.run("wf", "map/fill.py", fill96, "", limits)
	if err != nil || !out.OOMKilled {
		t.Fatalf("a handler writing 96 MiB of scratch under a 48 MiB memory limit: %+v, %v; want an OOM kill", out, err)
	}
	_, stdout := e.mustSucceed("wf", "map/stat.py", sandboxtest.StatScratchPy, "", limits)
	if want := "134217728 134217728 0"; !strings.Contains(stdout, want) {
		t.Fatalf("the next run: %s, want an empty scratch with its 128 MiB free (%s)", stdout, want)
	}
}
