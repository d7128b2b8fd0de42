package testbox

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/jobx/jobx/internal/testenv"
	"github.com/jobx/jobx/sandbox"
	"github.com/jobx/jobx/sandbox/namespace"
	"github.com/jobx/jobx/sandbox/none"
)

// Sandbox returns the sandbox a test runner uses when the test picks none:
// the namespace sandbox (the default of jobx up and jobx runner where no
// containerd answers) for a runner whose directory is runnerDir, closed
// when the test ends (after the runners the test stopped in its own
// cleanups registered later). Where bubblewrap cannot run it fails under
// CI=true and, elsewhere, falls back to the none sandbox with a note in the
// test's log.
func Sandbox(t testing.TB, runnerDir string) sandbox.Sandbox {
	t.Helper()
	if err := namespace.Check(context.Background(), "", 65534, 65534); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the namespace sandbox cannot run here, and CI must run it: %v", err)
		}
		t.Logf("the namespace sandbox cannot run here; this test's runner uses the none sandbox: %v", err)
		sb, err := none.New(none.Options{Dir: filepath.Join(runnerDir, "sandbox"), Zygotes: 2, Log: testenv.Logger(t)})
		if err != nil {
			t.Fatalf("sandbox: %v", err)
		}
		t.Cleanup(func() { sb.Close() })
		return sb
	}
	dir, err := os.MkdirTemp("", "jxn-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	o := namespace.NewOptions()
	o.Dir, o.HandlersDir, o.AgentPath, o.Log = dir, filepath.Join(runnerDir, "handlers"), testenv.Agent(t), testenv.Logger(t)
	sb, err := namespace.New(context.Background(), o)
	if err != nil {
		t.Fatalf("namespace sandbox: %v", err)
	}
	t.Cleanup(func() { sb.Close() })
	return sb
}
