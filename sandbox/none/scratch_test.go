package none

import (
	"os"
	"path/filepath"
	"testing"
)

func TestScratchDirsKeepOnlyDirectoriesLeftEmptyAndPrivate(t *testing.T) {
	parent := t.TempDir()
	s := &scratchDirs{parent: parent, max: 8}
	get := func() string {
		t.Helper()
		dir, err := s.get()
		if err != nil {
			t.Fatal(err)
		}
		if names, _ := os.ReadDir(dir); len(names) != 0 {
			t.Fatalf("got a scratch directory that is not empty: %v", names)
		}
		return dir
	}
	gone := func(dir string) bool { _, err := os.Lstat(dir); return os.IsNotExist(err) }

	// Left empty: kept and handed out again.
	a := get()
	s.put(a)
	if b := get(); b != a {
		t.Fatalf("an empty directory was not reused: got %s after %s", b, a)
	}
	s.put(a)

	// Left with a file, or with its mode changed: removed.
	withFile := get()
	os.WriteFile(filepath.Join(withFile, "left"), []byte("x"), 0o600)
	s.put(withFile)
	chmodded := get()
	os.Chmod(chmodded, 0o755)
	s.put(chmodded)
	if !gone(withFile) || !gone(chmodded) {
		t.Fatalf("a changed directory was kept: %s %v, %s %v", withFile, gone(withFile), chmodded, gone(chmodded))
	}

	// Replaced by a link to a directory: the link goes, the target and its
	// files stay.
	target := t.TempDir()
	os.WriteFile(filepath.Join(target, "precious"), []byte("x"), 0o600)
	linked := get()
	os.Remove(linked)
	os.Symlink(target, linked)
	s.put(linked)
	if !gone(linked) {
		t.Fatal("the link was kept as a scratch directory")
	}
	if _, err := os.Stat(filepath.Join(target, "precious")); err != nil {
		t.Fatalf("the link's target lost its file: %v", err)
	}

	// No more than max are kept; close removes them.
	var dirs []string
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
}
