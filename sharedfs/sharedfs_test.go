package sharedfs_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jobx/jobx/sharedfs"
	"github.com/jobx/jobx/sharedfs/contract"
	"github.com/jobx/jobx/sharedfs/tahoetest"
	"github.com/spf13/afero"
)

func TestContractMemMapFs(t *testing.T) {
	contract.Run(t, func(testing.TB) afero.Fs { return afero.NewMemMapFs() })
}

func TestContractLocal(t *testing.T) {
	contract.Run(t, func(t testing.TB) afero.Fs { return sharedfs.NewLocal(t.TempDir()) })
}

func TestContractOsFs(t *testing.T) {
	contract.Run(t, func(t testing.TB) afero.Fs { return afero.NewBasePathFs(afero.NewOsFs(), t.TempDir()) })
}

func TestContractTahoe(t *testing.T) {
	contract.Run(t, func(t testing.TB) afero.Fs { return newTahoe(t) })
}

// newTahoe returns a Tahoe backend on a fresh directory of a fresh double.
func newTahoe(t testing.TB) *sharedfs.Tahoe {
	t.Helper()
	srv := tahoetest.NewServer()
	t.Cleanup(srv.Close)
	tfs, err := sharedfs.NewTahoe(srv.URL, srv.MakeDir(), srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	return tfs
}

func TestLocalMapsWorkflowRootToHostDirectory(t *testing.T) {
	dir := t.TempDir()
	f, err := sharedfs.New(sharedfs.NewLocal(dir), "wf")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.WriteFile("x/y", []byte("hi"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "working", "wf", "x", "y"))
	if err != nil || string(b) != "hi" {
		t.Fatalf("host file: %q, %v", b, err)
	}
}

// symlinkFixture makes a workflow root holding links that point outside
// it, beside an outside directory with a file in it.
func symlinkFixture(t *testing.T) (dir, outside string) {
	t.Helper()
	dir = t.TempDir()
	outside = t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("host secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "working", "wf")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{
		"outdir":  outside,
		"outfile": filepath.Join(outside, "secret"),
		"rel":     "../../..",
	} {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "inside"), []byte("in"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("inside", filepath.Join(root, "inlink")); err != nil {
		t.Fatal(err)
	}
	return dir, outside
}

func TestSymlinksOutOfTheRootAreNotFollowed(t *testing.T) {
	for _, tc := range []struct {
		name    string
		backend func(dir string) afero.Fs
	}{
		{"local backend (os.Root)", func(dir string) afero.Fs { return sharedfs.NewLocal(dir) }},
		{"plain afero OsFs (symlinks refused)", func(dir string) afero.Fs { return afero.NewBasePathFs(afero.NewOsFs(), dir) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, outside := symlinkFixture(t)
			f, err := sharedfs.New(tc.backend(dir), "wf")
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			for _, p := range []string{"outfile", "outdir/secret", "rel/etc/passwd"} {
				if b, err := f.ReadFile(p); !errors.Is(err, sharedfs.ErrBadPath) {
					t.Errorf("ReadFile(%s) = %q, %v; want ErrBadPath", p, b, err)
				}
			}
			if err := f.WriteFile("outdir/planted", []byte("x"), 0o644); !errors.Is(err, sharedfs.ErrBadPath) {
				t.Errorf("WriteFile through a link out = %v; want ErrBadPath", err)
			}
			if err := f.Rmdir("outdir/"); err == nil {
				t.Errorf("Rmdir of a link out succeeded")
			}
			if err := f.Cpr("outdir", "copy"); !errors.Is(err, sharedfs.ErrBadPath) {
				t.Errorf("Cpr of a link out = %v; want ErrBadPath", err)
			}
			if _, err := os.Stat(filepath.Join(outside, "planted")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a file was planted outside the root: %v", err)
			}
			if b, err := os.ReadFile(filepath.Join(outside, "secret")); err != nil || string(b) != "host secret" {
				t.Errorf("outside file changed: %q, %v", b, err)
			}
			if ok, err := f.Exists("inside"); !ok || err != nil {
				t.Errorf("Exists(inside) = %v, %v", ok, err)
			}
		})
	}
}

func TestLocalFollowsSymlinksThatStayInside(t *testing.T) {
	dir, _ := symlinkFixture(t)
	f, err := sharedfs.New(sharedfs.NewLocal(dir), "wf")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if b, err := f.ReadFile("inlink"); err != nil || string(b) != "in" {
		t.Fatalf("ReadFile(inlink) = %q, %v", b, err)
	}
	es, err := f.Ls("/")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range es {
		got = append(got, e.Name)
	}
	// Links leading out of the root are left out of listings.
	if strings.Join(got, ",") != "inlink,inside" {
		t.Fatalf("Ls(/) = %v, want [inlink inside]", got)
	}
}

func TestNewRefusesBadWorkflowNames(t *testing.T) {
	for _, wf := range []string{"", ".", "..", "a/b", "a\\b", "nul\x00"} {
		if _, err := sharedfs.New(afero.NewMemMapFs(), wf); !errors.Is(err, sharedfs.ErrBadPath) {
			t.Errorf("New(%q) = %v; want ErrBadPath", wf, err)
		}
	}
}

func TestRootIsJobXPrefix(t *testing.T) {
	if got := sharedfs.Root("wordcount"); got != "/working/wordcount" {
		t.Fatalf("Root = %q", got)
	}
}
