package namespace_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jobx/jobx/internal/testenv"
	"github.com/jobx/jobx/sandbox"
	"github.com/jobx/jobx/sandbox/namespace"
	"github.com/jobx/jobx/sandbox/sandboxtest"
)

// TestContract runs the sandbox contract, escape probes included. As root
// the domains' limits are cgroups; run as an ordinary user (make test does
// once) they are rlimits.
func TestContract(t *testing.T) {
	var dirs []string
	sandboxtest.Run(t, sandboxtest.Env{
		Isolating: true,
		New: func(t testing.TB, handlers string) sandbox.Sandbox {
			dir, err := os.MkdirTemp("", "jxn-")
			if err != nil {
				t.Fatal(err)
			}
			dirs = append(dirs, dir)
			o := namespace.NewOptions()
			o.Dir, o.HandlersDir, o.AgentPath, o.Log = dir, handlers, testenv.Agent(t), testenv.Logger(t)
			sb, err := namespace.New(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			return sb
		},
		Leftovers: func() []string { return leftovers(dirs) },
	})
}

// leftovers lists the mounts, cgroups and domain directories the
// sandboxes under dirs left.
func leftovers(dirs []string) []string {
	var left []string
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	for _, dir := range dirs {
		if strings.Contains(string(mounts), dir) {
			left = append(left, "a mount under "+dir)
		}
		if ents, _ := os.ReadDir(filepath.Join(dir, "d")); len(ents) > 0 {
			left = append(left, "domain directories under "+dir)
		}
		for _, ctl := range []string{"memory", "pids", "cpu"} {
			if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", ctl, "jobx", filepath.Base(dir))); err == nil {
				if ents, _ := os.ReadDir(filepath.Join("/sys/fs/cgroup", ctl, "jobx", filepath.Base(dir))); hasDirs(ents) {
					left = append(left, "cgroups of "+dir+" ("+ctl+")")
				}
			}
		}
	}
	return left
}

func hasDirs(ents []os.DirEntry) bool {
	for _, e := range ents {
		if e.IsDir() {
			return true
		}
	}
	return false
}

// The sandbox says how it bounds domains: cgroups as root (where the
// controllers are writable), rlimits for an ordinary user.
func TestLimitsAreCgroupsAsRootAndRlimitsOtherwise(t *testing.T) {
	sb, _ := newSandbox(t)
	want := "rlimits"
	if os.Geteuid() == 0 {
		want = "cgroups"
	}
	if got := sb.Limits(); got != want {
		t.Fatalf("uid %d: limits are %s, want %s", os.Geteuid(), got, want)
	}
}

// newSandbox starts a namespace sandbox for a test (closed when it ends),
// with handlers installed under the returned directory, which the sandbox
// user cannot reach (t.TempDir is private): as root, the sandbox stages it.
func newSandbox(t *testing.T, mods ...func(*namespace.Options)) (*namespace.Sandbox, string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "jxn-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	o := namespace.NewOptions()
	o.Dir, o.HandlersDir, o.AgentPath, o.Log = dir, filepath.Join(t.TempDir(), "handlers"), testenv.Agent(t), testenv.Logger(t)
	for _, m := range mods {
		m(o)
	}
	sb, err := namespace.New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	return sb, o.HandlersDir
}
