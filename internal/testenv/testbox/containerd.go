// Package testbox gives tests the sandboxes their runners run handlers in:
// the default one (namespace, or none where bubblewrap cannot run), a
// private containerd for the containerd sandbox, and jobx's images. It is
// apart from testenv so that testenv imports no sandbox implementation.
package testbox

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/jobx/jobx/images"
	"github.com/jobx/jobx/internal/testenv"
	ctrd "github.com/jobx/jobx/sandbox/containerd"
)

// Containerd starts a private containerd (own config, root, state and
// socket under a temporary directory, CRI disabled) and returns its socket
// address; it is stopped when the test ends, and its log is printed only
// when the test fails. Without containerd or root it skips the test, except
// under CI=true, where it fails loudly: CI must run the containerd tests.
func Containerd(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "jobx-ctrd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	var log testenv.Buffer
	d, err := StartContainerd(dir, &log)
	if err != nil {
		unavailable(t, err)
	}
	t.Cleanup(func() {
		d.Close()
		if t.Failed() {
			t.Logf("containerd log:\n%s", log.String())
		}
	})
	return d.Address
}

// StartContainerd starts a private containerd in dir for a TestMain, which
// must Close it. It fails (never skips) when containerd cannot start; call
// ContainerdAvailable first to decide whether to skip.
func StartContainerd(dir string, log io.Writer) (*ctrd.Daemon, error) {
	return ctrd.StartDaemon(context.Background(), ctrd.DaemonOptions{Dir: dir, Log: log})
}

// SkipContainerd returns why the containerd tests may be skipped here, or
// "" when they must run: they may skip only when not running as root and
// CI is unset. As root or under CI=true a containerd that cannot start is a
// test failure, never a skip.
func SkipContainerd() string {
	if os.Geteuid() != 0 && os.Getenv("CI") != "true" {
		return "containerd tests need root (they run under CI=true)"
	}
	return ""
}

// unavailable fails the test, or skips it when SkipContainerd allows.
func unavailable(t testing.TB, err error) {
	t.Helper()
	if why := SkipContainerd(); why != "" {
		t.Skipf("containerd: %v: %s", err, why)
	}
	hint := ""
	for _, bin := range []string{"containerd", "runc"} {
		if _, lerr := exec.LookPath(bin); lerr != nil {
			hint = " (apt-get install containerd runc)"
		}
	}
	t.Fatalf("containerd cannot start: %v%s", err, hint)
}

// RequireContainerd skips the test when SkipContainerd allows; a test that
// then starts containerd fails when it cannot.
func RequireContainerd(t testing.TB) {
	t.Helper()
	if why := SkipContainerd(); why != "" {
		t.Skip(why)
	}
}

var imagesOnce struct {
	sync.Once
	st  *images.Store
	err error
}

// Images returns an image store holding jobx's images for every processor,
// built once per test process into a cache under the system temporary
// directory (rebuilt only when their inputs change).
func Images(t testing.TB) *images.Store {
	t.Helper()
	imagesOnce.Do(func() {
		st, err := images.Open(filepath.Join(os.TempDir(), "jobx-test-images"))
		if err == nil {
			_, err = st.Build(context.Background())
		}
		imagesOnce.st, imagesOnce.err = st, err
	})
	if imagesOnce.err != nil {
		t.Fatalf("build images: %v", imagesOnce.err)
	}
	return imagesOnce.st
}
