package containerd_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/jobx/jobx/internal/testenv/testbox"
	"github.com/jobx/jobx/internal/tmpfs"
	"github.com/jobx/jobx/sandbox"
	ctrd "github.com/jobx/jobx/sandbox/containerd"
	"github.com/jobx/jobx/sandbox/internal/leftover"
	"github.com/jobx/jobx/sandbox/sandboxtest"
)

// A process killed with SIGKILL takes its private containerd with it, but
// not its containers: their shims outlive it. A daemon started again on
// the same directory finds them again, and the sandbox of the same runner
// removes them; a shim it does not find again (its task unknown) is
// killed; and Close kills whatever still runs on the daemon.
func TestADaemonStartedAgainOnItsDirectoryRemovesWhatTheDeadOneLeft(t *testing.T) {
	testbox.RequireContainerd(t)
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "jxd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	d1, err := ctrd.StartDaemon(ctx, ctrd.DaemonOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvAt(t, d1.Address)
	e.mustSucceed("wf", "map/echo.sh", sandboxtest.EchoSh, "", sandbox.Limits{})
	if n := len(ctrd.ShimPids(d1.Address)); n != 1 {
		t.Fatalf("%d shims for one warm container", n)
	}

	// The process dies (its claim names a process that is gone), and so
	// does its daemon; the shim goes on.
	syscall.Kill(d1.Pid(), syscall.SIGKILL)
	<-d1.Done()
	os.WriteFile(filepath.Join(dir, leftover.OwnerFile), []byte(fmt.Sprintf("%d 1\n", deadPid(t))), 0o644)
	if n := len(ctrd.ShimPids(d1.Address)); n != 1 {
		t.Fatalf("%d shims after the daemon died, want its one", n)
	}
	// A shim of a task the next daemon will not know.
	orphan := exec.Command("/bin/sh", "-c", "sleep 300", "-namespace", "jobx-test", "-id", "jx-orphan", "-address", d1.Address)
	orphan.Args[0] = "containerd-shim-runc-v2"
	if err := orphan.Start(); err != nil {
		t.Fatal(err)
	}
	defer orphan.Process.Kill()
	exited := make(chan struct{})
	go func() { orphan.Wait(); close(exited) }()

	d2, err := ctrd.StartDaemon(ctx, ctrd.DaemonOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	if d2.Orphans != 1 {
		t.Errorf("the daemon killed %d orphaned shims, want 1", d2.Orphans)
	}
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("the orphaned shim still runs")
	}
	// The runner, started again, removes its dead predecessor's container.
	e2 := newEnvAt(t, d2.Address)
	waitShims(t, d2.Address, 0)
	e.sb.Close()

	// Close kills what still runs on the daemon, and detaches its mounts.
	e2.mustSucceed("wf", "map/echo.sh", sandboxtest.EchoSh, "", sandbox.Limits{})
	waitShims(t, d2.Address, 1)
	d2.Close()
	waitShims(t, d2.Address, 0)
	if points, _ := tmpfs.Under(dir); len(points) > 0 {
		t.Fatalf("mounts left under the daemon's directory: %v", points)
	}
}

func waitShims(t *testing.T, address string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(ctrd.ShimPids(address)) != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d shims serve %s, want %d", len(ctrd.ShimPids(address)), address, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// deadPid returns the pid of a process that has exited.
func deadPid(t *testing.T) int {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}
