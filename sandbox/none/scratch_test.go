package none

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/jobx/jobx/internal/tmpfs"
	"golang.org/x/sys/unix"
)

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
}

func TestScratchDirsKeepOnlyDirectoriesLeftEmptyAndPrivate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		mount bool
		quota int64
	}{
		{"plain directories", false, 0},
		{"a tmpfs each", true, 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.mount {
				requireRoot(t)
			}
			parent := t.TempDir()
			s := &scratchDirs{parent: parent, max: 8, mount: tc.mount}
			t.Cleanup(func() { s.close(); tmpfs.UnmountUnder(parent) })
			get := func() scratchDir {
				t.Helper()
				d, err := s.get(tc.quota)
				if err != nil {
					t.Fatal(err)
				}
				if names, _ := os.ReadDir(d.path); len(names) != 0 {
					t.Fatalf("got a scratch directory that is not empty: %v", names)
				}
				return d
			}
			gone := func(d scratchDir) bool { _, err := os.Lstat(d.path); return os.IsNotExist(err) }

			// Left empty: kept and handed out again.
			a := get()
			s.put(a)
			if b := get(); b.path != a.path {
				t.Fatalf("an empty directory was not reused: got %s after %s", b.path, a.path)
			}
			s.put(a)

			// Left with a file, or with its mode changed: removed.
			withFile := get()
			os.WriteFile(filepath.Join(withFile.path, "left"), []byte("x"), 0o600)
			s.put(withFile)
			chmodded := get()
			os.Chmod(chmodded.path, 0o755)
			s.put(chmodded)
			if !gone(withFile) || !gone(chmodded) {
				t.Fatalf("a changed directory was kept: %s %v, %s %v", withFile.path, gone(withFile), chmodded.path, gone(chmodded))
			}

			// Replaced by a link to a directory: the link goes, the target
			// and its files stay.
			target := t.TempDir()
			os.WriteFile(filepath.Join(target, "precious"), []byte("x"), 0o600)
			linked := get()
			tmpfs.Unmount(linked.path)
			os.Remove(linked.path)
			os.Symlink(target, linked.path)
			s.put(linked)
			if !gone(linked) {
				t.Fatal("the link was kept as a scratch directory")
			}
			if _, err := os.Stat(filepath.Join(target, "precious")); err != nil {
				t.Fatalf("the link's target lost its file: %v", err)
			}

			// No more than max are kept; close removes them.
			var dirs []scratchDir
			for range s.max + 3 {
				dirs = append(dirs, get())
			}
			for _, d := range dirs {
				s.put(d)
			}
			if len(s.free) != s.max {
				t.Fatalf("%d directories kept, want %d", len(s.free), s.max)
			}
			s.close()
			if names, _ := os.ReadDir(parent); len(names) != 0 {
				t.Fatalf("close left %d directories", len(names))
			}
			if points, _ := tmpfs.Under(parent); len(points) != 0 {
				t.Fatalf("close left mounts: %q", points)
			}
		})
	}
}

// statfs returns the size and the bytes free of the file system at dir.
func statfs(t testing.TB, dir string) (size, free int64) {
	t.Helper()
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		t.Fatal(err)
	}
	return int64(fs.Blocks) * fs.Bsize, int64(fs.Bfree) * fs.Bsize
}

func TestScratchTmpfsHasTheQuotaOfItsRunAndIsKeptOnlyWhenNothingIsInUse(t *testing.T) {
	requireRoot(t)
	parent := t.TempDir()
	s := &scratchDirs{parent: parent, max: 8, mount: true}
	t.Cleanup(func() { s.close(); tmpfs.UnmountUnder(parent) })
	a, err := s.get(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	if size, free := statfs(t, a.path); size != 1<<20 || free != size {
		t.Fatalf("a scratch directory of 1 MiB has %d bytes, %d free", size, free)
	}
	s.put(a)

	// Another quota: the kept tmpfs is resized, not replaced.
	b, err := s.get(4 << 20)
	if err != nil {
		t.Fatal(err)
	}
	if b.path != a.path {
		t.Fatalf("a kept tmpfs was not resized for another quota: %s, then %s", a.path, b.path)
	}
	if size, _ := statfs(t, b.path); size != 4<<20 {
		t.Fatalf("a tmpfs resized to 4 MiB has %d bytes", size)
	}

	// A file removed but still open holds its blocks: the tmpfs looks
	// empty but is not, so it goes.
	f, err := os.Create(filepath.Join(b.path, "held"))
	if err != nil {
		t.Fatal(err)
	}
	f.Write(make([]byte, 64<<10))
	os.Remove(f.Name())
	s.put(b)
	f.Close()
	if _, err := os.Lstat(b.path); !os.IsNotExist(err) {
		t.Fatal("a tmpfs with a removed but open file was kept")
	}

	// Unmounted (by a handler running as root): its directory goes too.
	c, err := s.get(4 << 20)
	if err != nil {
		t.Fatal(err)
	}
	if err := tmpfs.Unmount(c.path); err != nil {
		t.Fatal(err)
	}
	s.put(c)
	if _, err := os.Lstat(c.path); !os.IsNotExist(err) {
		t.Fatal("a scratch directory whose tmpfs was unmounted was kept")
	}
	if points, _ := tmpfs.Under(parent); len(points) != 0 {
		t.Fatalf("mounts left: %q", points)
	}
}

// BenchmarkScratchGetPut measures a run's scratch directory as a run
// uses it: handed out, left empty, taken back. "alternating quotas"
// resizes the kept tmpfs at every get.
func BenchmarkScratchGetPut(b *testing.B) {
	for _, bc := range []struct {
		name   string
		mount  bool
		quotas []int64
	}{
		{"plain", false, []int64{0}},
		{"tmpfs", true, []int64{8 << 20}},
		{"tmpfs, alternating quotas", true, []int64{8 << 20, 16 << 20}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			if bc.mount {
				requireRoot(b)
			}
			s := &scratchDirs{parent: b.TempDir(), max: 64, mount: bc.mount}
			defer s.close()
			i := 0
			for b.Loop() {
				d, err := s.get(bc.quotas[i%len(bc.quotas)])
				if err != nil {
					b.Fatal(err)
				}
				s.put(d)
				i++
			}
		})
	}
}
