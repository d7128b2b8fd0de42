package sharedfs

import (
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/afero"
)

// Local is the local-directory backend: the "/working/<workflow>" tree
// lives under a host directory. As an afero.Fs it is afero.OsFs confined
// lexically to that directory (afero.BasePathFs), meant for administration;
// workflows get their filesystem through New or Open, which confine each
// workflow to its own root with os.Root, so that neither ".." nor a
// symbolic link (one a sandboxed handler made, say) leads out of it.
type Local struct {
	afero.Fs
	dir string
}

var _ afero.Fs = (*Local)(nil)

// NewLocal returns the local backend rooted at host directory dir; the root
// of workflow wf is <dir>/working/<wf> on the host.
func NewLocal(dir string) *Local {
	return &Local{Fs: afero.NewBasePathFs(afero.NewOsFs(), dir), dir: dir}
}

// Dir returns the host directory holding the backend.
func (l *Local) Dir() string { return l.dir }

// Name returns the backend's name.
func (l *Local) Name() string { return "sharedfs.Local" }

// HostPath returns the host path of the workflow root of workflow, for
// bind-mounting it into sandboxes.
func (l *Local) HostPath(workflow string) string {
	return filepath.Join(l.dir, filepath.FromSlash(strings.TrimPrefix(Root(workflow), "/")))
}

func (l *Local) openRoot(root string) (afero.Fs, io.Closer, error) {
	if err := os.MkdirAll(l.dir, 0o755); err != nil {
		return nil, nil, err
	}
	top, err := os.OpenRoot(l.dir)
	if err != nil {
		return nil, nil, err
	}
	defer top.Close()
	rel := strings.TrimPrefix(root, "/")
	if err := top.MkdirAll(rel, 0o755); err != nil {
		return nil, nil, err
	}
	// Handlers of the workflow write here whichever user they run as (root
	// in the process sandbox, an unprivileged user in containers).
	if err := top.Chmod(rel, sharedDirMode); err != nil {
		return nil, nil, err
	}
	r, err := top.OpenRoot(rel)
	if err != nil {
		return nil, nil, err
	}
	return rootFs{r}, r, nil
}

// rootFs is an afero.Fs over an os.Root: every operation stays beneath the
// root even through symbolic links (os.Root refuses the ones that escape).
type rootFs struct{ r *os.Root }

var _ afero.Fs = rootFs{}

// rel maps an afero path ("/a/b", "a/b") to the os.Root form ("a/b", ".").
func rel(name string) string {
	c := strings.TrimPrefix(path.Clean("/"+filepath.ToSlash(name)), "/")
	if c == "" {
		return "."
	}
	return c
}

// Modes of what the local backend creates: a workflow's files are shared
// by all its handlers, which may run as different users (root in the
// process sandbox, an unprivileged user in containers), so the umask is
// overridden. Nothing outside the workflow's root is affected.
const (
	sharedDirMode  = 0o777
	sharedFileMode = 0o666
)

func (f rootFs) Create(name string) (afero.File, error) {
	return f.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, sharedFileMode)
}
func (f rootFs) Mkdir(name string, perm os.FileMode) error {
	if err := f.r.Mkdir(rel(name), perm); err != nil {
		return err
	}
	return f.r.Chmod(rel(name), sharedDirMode)
}
func (f rootFs) MkdirAll(name string, perm os.FileMode) error {
	if err := f.r.MkdirAll(rel(name), perm); err != nil {
		return err
	}
	return f.r.Chmod(rel(name), sharedDirMode)
}
func (f rootFs) Open(name string) (afero.File, error) { return wrapFile(f.r.Open(rel(name))) }
func (f rootFs) OpenFile(name string, flag int, perm os.FileMode) (afero.File, error) {
	_, statErr := f.r.Lstat(rel(name))
	file, err := f.r.OpenFile(rel(name), flag, perm)
	if err == nil && flag&os.O_CREATE != 0 && statErr != nil {
		file.Chmod(sharedFileMode)
	}
	return wrapFile(file, err)
}
func (f rootFs) Remove(name string) error    { return f.r.Remove(rel(name)) }
func (f rootFs) RemoveAll(name string) error { return f.r.RemoveAll(rel(name)) }
func (f rootFs) Rename(oldname, newname string) error {
	return f.r.Rename(rel(oldname), rel(newname))
}
func (f rootFs) Stat(name string) (os.FileInfo, error) { return f.r.Stat(rel(name)) }
func (f rootFs) Name() string                          { return "sharedfs.rootFs" }
func (f rootFs) Chmod(name string, mode os.FileMode) error {
	return f.r.Chmod(rel(name), mode)
}
func (f rootFs) Chown(name string, uid, gid int) error { return f.r.Chown(rel(name), uid, gid) }
func (f rootFs) Chtimes(name string, atime, mtime time.Time) error {
	return f.r.Chtimes(rel(name), atime, mtime)
}

// wrapFile avoids returning a typed nil *os.File as a non-nil afero.File.
func wrapFile(f *os.File, err error) (afero.File, error) {
	if err != nil {
		return nil, err
	}
	return f, nil
}
