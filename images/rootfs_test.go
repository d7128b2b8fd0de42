package images

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// A tree whose shared objects cannot be inspected because the build was
// cancelled fails, rather than making an image without them: a cancelled
// jobx up once left a python image without half its extension modules in a
// store that other processes then used.
func TestTreeFailsWhenTheBuildIsCancelled(t *testing.T) {
	so, err := filepath.Glob("/usr/lib/x86_64-linux-gnu/libz.so.*")
	if err != nil || len(so) == 0 {
		t.Fatalf("no shared object to copy (zlib1g): %v", err)
	}
	src := t.TempDir()
	data, err := os.ReadFile(so[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "mod.so"), data, 0o644); err != nil {
		t.Fatal(err)
	}

	r := newRootfs()
	if err := r.tree(context.Background(), "/lib/mods", src, nil); err != nil {
		t.Fatalf("tree: %v", err)
	}
	if _, ok := r.entries["/lib/mods/mod.so"]; !ok {
		t.Fatal("the shared object was left out of a build that was not cancelled")
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = newRootfs().tree(ctx, "/lib/mods", src, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("tree with a cancelled build: %v, want context.Canceled", err)
	}
}
