package tmpfs_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/jobx/jobx/internal/tmpfs"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
}

// mounted mounts a tmpfs on dir, detached when the test ends.
func mounted(t *testing.T, dir string, size int64) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tmpfs.Unmount(dir) })
	if err := tmpfs.Mount(dir, size, 0o700); err != nil {
		t.Fatal(err)
	}
}

// options returns the mount options of the mount on dir in mountinfo.
func options(t *testing.T, dir string) string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var opts string
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 5 && f[4] == dir {
			opts = f[5] // the last mount on dir wins
		}
	}
	return opts
}

func TestAWritePastTheSizeFailsWithENOSPCAndAResizeKeepsTheFlags(t *testing.T) {
	requireRoot(t)
	dir := filepath.Join(t.TempDir(), "s")
	mounted(t, dir, 1<<20)
	err := os.WriteFile(filepath.Join(dir, "big"), bytes.Repeat([]byte{1}, 2<<20), 0o600)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("writing 2 MiB into a 1 MiB tmpfs: %v, want ENOSPC", err)
	}
	os.Remove(filepath.Join(dir, "big"))
	if err := tmpfs.Resize(dir, 4<<20, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "big"), bytes.Repeat([]byte{1}, 2<<20), 0o600); err != nil {
		t.Fatalf("writing 2 MiB after a resize to 4 MiB: %v", err)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil || st.Blocks*uint64(st.Bsize) != 4<<20 {
		t.Fatalf("size after resize: %d blocks of %d, %v", st.Blocks, st.Bsize, err)
	}
	if opts := options(t, dir); !strings.Contains(opts, "nosuid") || !strings.Contains(opts, "nodev") {
		t.Fatalf("a resized tmpfs lost nosuid or nodev: %q", opts)
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("root of the tmpfs: %v, %v", fi.Mode(), err)
	}
}

func TestMountRefusesAnUnboundedSize(t *testing.T) {
	if err := tmpfs.Mount(t.TempDir(), 0, 0o700); err == nil {
		t.Fatal("a size of 0 (no limit for tmpfs) was mounted")
	}
}

func TestUnmountUnderDetachesNestedMountsAndNoneElse(t *testing.T) {
	requireRoot(t)
	base := t.TempDir()
	root := filepath.Join(base, "with space")
	a, b := filepath.Join(root, "a"), filepath.Join(root, "a", "b")
	beside := filepath.Join(base, "with space2")
	mounted(t, a, 1<<20)
	mounted(t, b, 1<<20)
	mounted(t, beside, 1<<20)
	points, err := tmpfs.Under(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(points) != 2 || points[0] != b || points[1] != a {
		t.Fatalf("mounts under %s: %q, want the nested one first", root, points)
	}
	if err := tmpfs.UnmountUnder(root); err != nil {
		t.Fatal(err)
	}
	if points, _ := tmpfs.Under(root); len(points) != 0 {
		t.Fatalf("still mounted under %s: %q", root, points)
	}
	if points, _ := tmpfs.Under(beside); len(points) != 1 {
		t.Fatalf("a mount beside the root (same prefix) was detached: %q", points)
	}
	if points, err := tmpfs.Under(filepath.Join(base, "missing")); err != nil || len(points) != 0 {
		t.Fatalf("a missing root: %q, %v", points, err)
	}
}

func TestUnmountDoesNotFollowALink(t *testing.T) {
	requireRoot(t)
	base := t.TempDir()
	target := filepath.Join(base, "target")
	mounted(t, target, 1<<20)
	link := filepath.Join(base, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := tmpfs.Unmount(link); err != nil {
		t.Fatal(err)
	}
	if points, _ := tmpfs.Under(target); len(points) != 1 {
		t.Fatal("unmounting a link detached its target's mount")
	}
	if err := tmpfs.Unmount(filepath.Join(base, "missing")); err != nil {
		t.Fatalf("unmounting a missing path: %v", err)
	}
}
