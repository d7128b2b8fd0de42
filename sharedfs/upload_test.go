package sharedfs_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/jobx/jobx/sharedfs"
	"github.com/spf13/afero"
)

func TestUploadCopiesATreeAndReplacesFilesOfTheSameName(t *testing.T) {
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "texts", "more"), 0o755)
	os.WriteFile(filepath.Join(src, "texts", "a.txt"), []byte("alpha"), 0o644)
	os.WriteFile(filepath.Join(src, "texts", "more", "b.txt"), []byte("beta"), 0o644)
	os.Symlink("/etc/passwd", filepath.Join(src, "texts", "link"))
	f, err := sharedfs.New(afero.NewMemMapFs(), "wf")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.WriteFile("/texts/a.txt", []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := f.WriteFile("/keep.txt", []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}
	n, err := f.Upload(src, "/")
	if err != nil || n != 2 {
		t.Fatalf("Upload: %d files, %v; want 2", n, err)
	}
	for p, want := range map[string]string{"/texts/a.txt": "alpha", "/texts/more/b.txt": "beta", "/keep.txt": "kept"} {
		if got, err := f.ReadFile(p); err != nil || string(got) != want {
			t.Errorf("%s: %q %v, want %q", p, got, err, want)
		}
	}
	if ok, _ := f.Exists("/texts/link"); ok {
		t.Error("a symbolic link was uploaded")
	}
}
