package sharedfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/afero"
)

// EntryStat describes one file or directory, as Ls and Stat report it.
type EntryStat struct {
	Name    string      // base name; "/" for the workflow root
	Size    int64       // bytes for files; backend-defined for directories
	Mode    fs.FileMode // permission bits plus fs.ModeDir for directories
	IsDir   bool
	ModTime time.Time // zero when the backend does not know it
}

func entryOf(name string, fi fs.FileInfo) EntryStat {
	return EntryStat{Name: name, Size: fi.Size(), Mode: fi.Mode(), IsDir: fi.IsDir(), ModTime: fi.ModTime()}
}

// FS is one workflow's shared filesystem: a view of a backend afero.Fs
// rooted at Root(workflow). Every path given to its methods is relative to
// that root ("a/b" and "/a/b" are the same file); paths that are empty,
// contain NUL, or climb above the root are refused with ErrBadPath, so one
// workflow never sees another's files.
//
// Errors are *fs.PathError values naming the workflow-relative path and
// wrapping fs.ErrNotExist, fs.ErrExist, fs.ErrPermission, ErrBadPath,
// ErrIsDir or ErrNotDir where one applies; test them with errors.Is.
//
// An FS is safe for concurrent use to the extent its backend is; operations
// made of several steps (Cp, Cpr, Mv, Mkdir) are not atomic. Call Close when
// done with it.
type FS struct {
	workflow string
	root     string
	fs       afero.Fs      // rooted at root; takes cleaned absolute paths
	lstat    afero.Lstater // non-nil when each component must be checked for symlinks
	closer   io.Closer

	closeOnce sync.Once
	closeErr  error
}

// rooter is implemented by backends that can confine a workflow root
// themselves (Local, through os.Root).
type rooter interface {
	openRoot(root string) (afero.Fs, io.Closer, error)
}

// New returns the shared filesystem of workflow on backend, creating its
// root directory if missing. The backend is any afero.Fs holding the
// "/working" tree: a *Local, a *Tahoe, an afero.MemMapFs. On a backend that
// can have symbolic links but is not a *Local (such as a bare afero.OsFs),
// every path component is checked and symbolic links are refused.
func New(backend afero.Fs, workflow string) (*FS, error) {
	if err := validWorkflow(workflow); err != nil {
		return nil, fmt.Errorf("sharedfs: %w", err)
	}
	f := &FS{workflow: workflow, root: Root(workflow)}
	if r, ok := backend.(rooter); ok {
		rfs, c, err := r.openRoot(f.root)
		if err != nil {
			return nil, fmt.Errorf("sharedfs: open root of workflow %q: %w", workflow, err)
		}
		f.fs, f.closer = rfs, c
		return f, nil
	}
	if err := backend.MkdirAll(f.root, 0o755); err != nil {
		return nil, fmt.Errorf("sharedfs: create root of workflow %q: %w", workflow, err)
	}
	f.fs = afero.NewBasePathFs(backend, f.root)
	if l, ok := backend.(afero.Lstater); ok {
		if _, called, _ := l.LstatIfPossible(f.root); called {
			f.lstat = f.fs.(afero.Lstater)
		}
	}
	return f, nil
}

// Workflow returns the name of the workflow whose filesystem this is.
func (f *FS) Workflow() string { return f.workflow }

// Root returns the path of the workflow root inside the backend.
func (f *FS) Root() string { return f.root }

// Close releases what the FS holds (the directory handle of a local root).
// It is idempotent; the FS must not be used afterwards.
func (f *FS) Close() error {
	f.closeOnce.Do(func() {
		if f.closer != nil {
			f.closeErr = f.closer.Close()
		}
	})
	return f.closeErr
}

// resolve cleans p and, on symlink-capable generic backends, refuses paths
// that reach through a symbolic link.
func (f *FS) resolve(op, p string) (string, error) {
	c, err := clean(op, p)
	if err != nil || f.lstat == nil {
		return c, err
	}
	cur := ""
	for _, seg := range splitPath(c) {
		cur += "/" + seg
		fi, _, err := f.lstat.LstatIfPossible(cur)
		if err != nil {
			break // missing components are the operation's business
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return "", &fs.PathError{Op: op, Path: p, Err: fmt.Errorf("%s is a symbolic link: %w", cur, ErrBadPath)}
		}
	}
	return c, nil
}

// pathErr re-labels a backend error with op and the user's path, hiding
// backend paths while keeping the underlying cause for errors.Is.
func pathErr(op, p string, err error) error {
	if err == nil {
		return nil
	}
	inner := err
	var pe *fs.PathError
	var le *os.LinkError
	switch {
	case errors.As(err, &pe):
		inner = pe.Err
	case errors.As(err, &le):
		inner = le.Err
	}
	if inner != nil && inner.Error() == "path escapes from parent" { // os.Root's unexported errPathEscapes
		inner = fmt.Errorf("path reaches outside the workflow root through a symbolic link: %w", ErrBadPath)
	}
	return &fs.PathError{Op: op, Path: p, Err: inner}
}

func opErr(op, p string, err error) error { return &fs.PathError{Op: op, Path: p, Err: err} }

func splitPath(c string) []string {
	if c == "/" {
		return nil
	}
	var segs []string
	for c != "/" {
		segs = append(segs, path.Base(c))
		c = path.Dir(c)
	}
	for i, j := 0, len(segs)-1; i < j; i, j = i+1, j-1 {
		segs[i], segs[j] = segs[j], segs[i]
	}
	return segs
}

func (f *FS) stat(op, p, c string) (fs.FileInfo, error) {
	fi, err := f.fs.Stat(c)
	if err != nil {
		return nil, pathErr(op, p, err)
	}
	return fi, nil
}

// isNotExist reports whether err means the path is absent, counting "a
// parent is a file" (ENOTDIR) as absent.
func isNotExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// Stat describes the file or directory at p.
func (f *FS) Stat(p string) (EntryStat, error) {
	c, err := f.resolve("stat", p)
	if err != nil {
		return EntryStat{}, err
	}
	fi, err := f.stat("stat", p, c)
	if err != nil {
		return EntryStat{}, err
	}
	name := path.Base(c)
	return entryOf(name, fi), nil
}

// Exists reports whether p names a file or directory. A missing path is
// (false, nil); the error is for bad paths and backend failures.
func (f *FS) Exists(p string) (bool, error) {
	st, err := f.Stat(p)
	return f.is(st, err, func(EntryStat) bool { return true })
}

// IsFile reports whether p names a regular file (see Exists for errors).
func (f *FS) IsFile(p string) (bool, error) {
	st, err := f.Stat(p)
	return f.is(st, err, func(st EntryStat) bool { return !st.IsDir })
}

// IsDir reports whether p names a directory (see Exists for errors).
func (f *FS) IsDir(p string) (bool, error) {
	st, err := f.Stat(p)
	return f.is(st, err, func(st EntryStat) bool { return st.IsDir })
}

func (f *FS) is(st EntryStat, err error, pred func(EntryStat) bool) (bool, error) {
	if err != nil {
		if isNotExist(err) && !errors.Is(err, ErrBadPath) {
			return false, nil
		}
		return false, err
	}
	return pred(st), nil
}

// Mkdir creates directory p and any missing parents (mkdir -p). It succeeds
// if p is already a directory; a file at p or at a parent is an error
// (fs.ErrExist, ErrNotDir).
func (f *FS) Mkdir(p string) error {
	c, err := f.resolve("mkdir", p)
	if err != nil {
		return err
	}
	return f.mkdirAll("mkdir", p, c)
}

func (f *FS) mkdirAll(op, p, c string) error { return f.mkdirRec(op, p, c, true) }

// mkdirRec creates c and its missing parents; target says whether c is the
// directory asked for (a file there is fs.ErrExist) or a parent (ErrNotDir).
func (f *FS) mkdirRec(op, p, c string, target bool) error {
	fi, err := f.fs.Stat(c)
	switch {
	case err == nil && fi.IsDir():
		return nil
	case err == nil && target:
		return opErr(op, p, fmt.Errorf("a file is in the way: %w", fs.ErrExist))
	case err == nil:
		return opErr(op, p, fmt.Errorf("parent %s is a file: %w", c, ErrNotDir))
	case !isNotExist(err):
		return pathErr(op, p, err)
	}
	if err := f.mkdirRec(op, p, path.Dir(c), false); err != nil {
		return err
	}
	if err := f.fs.Mkdir(c, 0o755); err != nil {
		if fi, serr := f.fs.Stat(c); serr == nil && fi.IsDir() {
			return nil // raced with another creator
		}
		return pathErr(op, p, err)
	}
	return nil
}

// mkdirParent creates the parent directory of c for operations that write c.
func (f *FS) mkdirParent(op, p, c string) error {
	return f.mkdirRec(op, p, path.Dir(c), false)
}

// Ls lists directory p, sorted by name.
func (f *FS) Ls(p string) ([]EntryStat, error) {
	c, err := f.resolve("ls", p)
	if err != nil {
		return nil, err
	}
	fi, err := f.stat("ls", p, c)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, opErr("ls", p, ErrNotDir)
	}
	infos, err := f.readDir(c)
	if err != nil {
		return nil, pathErr("ls", p, err)
	}
	out := make([]EntryStat, 0, len(infos))
	for _, fi := range infos {
		if fi.Mode()&fs.ModeSymlink != 0 {
			if f.lstat != nil {
				continue // symlinks are refused on this backend
			}
			if fi, err = f.fs.Stat(path.Join(c, fi.Name())); err != nil {
				continue // dangling or escaping link: not part of the tree
			}
		}
		out = append(out, entryOf(fi.Name(), fi))
	}
	return out, nil
}

func (f *FS) readDir(c string) ([]fs.FileInfo, error) {
	d, err := f.fs.Open(c)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	infos, err := d.Readdir(-1)
	if err != nil {
		return nil, err
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].Name() < infos[j].Name() })
	return infos, nil
}

// Open opens p with os.OpenFile's flags. The caller must Close the file;
// on the Tahoe backend, what was written is uploaded by Close (or Sync).
// Unlike WriteFile, Open does not create missing parent directories.
func (f *FS) Open(p string, flag int, perm fs.FileMode) (afero.File, error) {
	c, err := f.resolve("open", p)
	if err != nil {
		return nil, err
	}
	if flag&(os.O_WRONLY|os.O_RDWR|os.O_CREATE|os.O_TRUNC|os.O_APPEND) != 0 {
		// Give every backend the OS's answers (MemMapFs would create
		// missing parents and open directories for writing).
		fi, err := f.fs.Stat(c)
		switch {
		case err == nil && fi.IsDir():
			return nil, opErr("open", p, ErrIsDir)
		case err != nil && isNotExist(err) && flag&os.O_CREATE != 0:
			pi, perr := f.fs.Stat(path.Dir(c))
			if perr != nil {
				return nil, pathErr("open", p, perr)
			}
			if !pi.IsDir() {
				return nil, opErr("open", p, ErrNotDir)
			}
		}
	}
	file, err := f.fs.OpenFile(c, flag, perm)
	if err != nil {
		return nil, pathErr("open", p, err)
	}
	return file, nil
}

// ReadFile returns the contents of file p.
func (f *FS) ReadFile(p string) ([]byte, error) {
	c, err := f.resolve("read", p)
	if err != nil {
		return nil, err
	}
	fi, err := f.stat("read", p, c)
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return nil, opErr("read", p, ErrIsDir)
	}
	file, err := f.fs.Open(c)
	if err != nil {
		return nil, pathErr("read", p, err)
	}
	defer file.Close()
	b, err := io.ReadAll(file)
	if err != nil {
		return nil, pathErr("read", p, err)
	}
	return b, nil
}

// WriteFile replaces the contents of file p with data, creating the file
// and its missing parent directories.
func (f *FS) WriteFile(p string, data []byte, perm fs.FileMode) error {
	c, err := f.resolve("write", p)
	if err != nil {
		return err
	}
	if c == "/" {
		return opErr("write", p, ErrIsDir)
	}
	if err := f.mkdirParent("write", p, c); err != nil {
		return err
	}
	return f.writeFile("write", p, c, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

func (f *FS) writeFile(op, p, c string, perm fs.FileMode, fill func(io.Writer) error) error {
	file, err := f.fs.OpenFile(c, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return pathErr(op, p, err)
	}
	if err := fill(file); err != nil {
		file.Close()
		return pathErr(op, p, err)
	}
	return pathErr(op, p, file.Close())
}

// Cp copies file src to dst, replacing a file at dst and creating dst's
// missing parent directories. A directory at src or dst is an error
// (ErrIsDir); use Cpr for directories.
func (f *FS) Cp(src, dst string) error {
	cs, err := f.resolve("cp", src)
	if err != nil {
		return err
	}
	cd, err := f.resolve("cp", dst)
	if err != nil {
		return err
	}
	fi, err := f.stat("cp", src, cs)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return opErr("cp", src, ErrIsDir)
	}
	if cs == cd {
		return opErr("cp", dst, fmt.Errorf("source and destination are the same file: %w", ErrBadPath))
	}
	if di, err := f.fs.Stat(cd); err == nil && di.IsDir() {
		return opErr("cp", dst, ErrIsDir)
	}
	if err := f.mkdirParent("cp", dst, cd); err != nil {
		return err
	}
	return f.copyFile(src, dst, cs, cd, fi.Mode().Perm())
}

func (f *FS) copyFile(src, dst, cs, cd string, perm fs.FileMode) error {
	in, err := f.fs.Open(cs)
	if err != nil {
		return pathErr("cp", src, err)
	}
	defer in.Close()
	return f.writeFile("cp", dst, cd, perm, func(w io.Writer) error {
		_, err := io.Copy(w, in)
		return err
	})
}

// Cpr copies src to dst recursively (cp -r). dst must not exist
// (fs.ErrExist); its missing parents are created. src may be a file.
// Copying a directory into itself is refused with ErrBadPath.
func (f *FS) Cpr(src, dst string) error {
	cs, err := f.resolve("cpr", src)
	if err != nil {
		return err
	}
	cd, err := f.resolve("cpr", dst)
	if err != nil {
		return err
	}
	fi, err := f.stat("cpr", src, cs)
	if err != nil {
		return err
	}
	if _, err := f.fs.Stat(cd); err == nil {
		return opErr("cpr", dst, fs.ErrExist)
	}
	if fi.IsDir() && within(cd, cs) {
		return opErr("cpr", dst, fmt.Errorf("cannot copy a directory into itself: %w", ErrBadPath))
	}
	if err := f.mkdirParent("cpr", dst, cd); err != nil {
		return err
	}
	if !fi.IsDir() {
		return f.copyFile(src, dst, cs, cd, fi.Mode().Perm())
	}
	return f.copyTree(src, dst, cs, cd)
}

func (f *FS) copyTree(src, dst, cs, cd string) error {
	if err := f.fs.Mkdir(cd, 0o755); err != nil {
		return pathErr("cpr", dst, err)
	}
	infos, err := f.readDir(cs)
	if err != nil {
		return pathErr("cpr", src, err)
	}
	for _, fi := range infos {
		s, d := path.Join(cs, fi.Name()), path.Join(cd, fi.Name())
		us, ud := path.Join(src, fi.Name()), path.Join(dst, fi.Name())
		if fi.Mode()&fs.ModeSymlink != 0 {
			if f.lstat != nil {
				return opErr("cpr", us, fmt.Errorf("symbolic link: %w", ErrBadPath))
			}
			if fi, err = f.fs.Stat(s); err != nil {
				return pathErr("cpr", us, err)
			}
		}
		if fi.IsDir() {
			err = f.copyTree(us, ud, s, d)
		} else {
			err = f.copyFile(us, ud, s, d, fi.Mode().Perm())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Rm removes file p. A directory is an error (ErrIsDir); use Rmdir.
func (f *FS) Rm(p string) error {
	c, err := f.resolve("rm", p)
	if err != nil {
		return err
	}
	fi, err := f.stat("rm", p, c)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return opErr("rm", p, ErrIsDir)
	}
	return pathErr("rm", p, f.fs.Remove(c))
}

// Rmdir removes directory p and everything below it, as JobX's rmdir did.
// A missing p is fs.ErrNotExist, a file is ErrNotDir, and the workflow root
// itself cannot be removed (ErrBadPath).
func (f *FS) Rmdir(p string) error {
	c, err := f.resolve("rmdir", p)
	if err != nil {
		return err
	}
	if c == "/" {
		return opErr("rmdir", p, fmt.Errorf("the workflow root cannot be removed: %w", ErrBadPath))
	}
	fi, err := f.stat("rmdir", p, c)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return opErr("rmdir", p, ErrNotDir)
	}
	return pathErr("rmdir", p, f.fs.RemoveAll(c))
}

// Mv moves src to dst, creating dst's missing parents. A file at dst is
// replaced when src is a file; any other existing dst is fs.ErrExist.
// Moving the root, or a directory into itself, is refused with ErrBadPath.
func (f *FS) Mv(src, dst string) error {
	cs, err := f.resolve("mv", src)
	if err != nil {
		return err
	}
	cd, err := f.resolve("mv", dst)
	if err != nil {
		return err
	}
	if cs == "/" || cd == "/" {
		return opErr("mv", src, fmt.Errorf("the workflow root cannot be moved or replaced: %w", ErrBadPath))
	}
	fi, err := f.stat("mv", src, cs)
	if err != nil {
		return err
	}
	if cs == cd {
		return nil
	}
	if fi.IsDir() && within(cd, cs) {
		return opErr("mv", dst, fmt.Errorf("cannot move a directory into itself: %w", ErrBadPath))
	}
	if di, err := f.fs.Stat(cd); err == nil && (di.IsDir() || fi.IsDir()) {
		return opErr("mv", dst, fs.ErrExist)
	}
	if err := f.mkdirParent("mv", dst, cd); err != nil {
		return err
	}
	return pathErr("mv", src, f.fs.Rename(cs, cd))
}
