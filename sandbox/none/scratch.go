package none

import (
	"errors"
	"io"
	"os"
	"sync"

	"github.com/jobx/jobx/internal/tmpfs"
	"golang.org/x/sys/unix"
)

// scratchDirs hands out the none sandbox's per-run scratch directories.
//
// Each is a tmpfs of the run's quota (Limits.Scratch) mounted on a directory
// under parent, so a handler that fills it gets ENOSPC and the host's disk
// loses nothing; where mounting is not allowed (mount is false: not root)
// it is a plain directory, and the runs' files are bounded one by one
// (RLIMIT_FSIZE, see Sandbox.Run). A quota of 0 means a plain directory.
//
// Creating a directory allocates a block, which on a journaled filesystem
// busy with fsyncs (etcd's, on the same disk) costs up to half a
// millisecond of CPU, and mounting a tmpfs costs tens of microseconds
// more: a directory that its run left empty, still private and still on
// its tmpfs, is therefore kept (mounted) for a later run with the same
// quota, or resized for one with another (a remount: about 4 us); any
// other is detached and removed. A run never sees anything of an earlier
// one: the directory it gets is empty, and its tmpfs has no byte in use.
type scratchDirs struct {
	parent string
	max    int
	mount  bool // mount a tmpfs of the run's quota on each directory

	mu     sync.Mutex // guards free and closed
	free   []scratchDir
	closed bool
}

// scratchDir is one scratch directory.
type scratchDir struct {
	path string
	size int64  // bytes of its tmpfs; 0: a plain directory
	dev  uint64 // device of the directory (its tmpfs's) when made
}

// scratchPerm is the mode of a scratch directory, and of its tmpfs's root.
const scratchPerm = 0o700

// get returns an empty private directory bounded to quota bytes (a plain
// one for 0, or where mount is false).
func (s *scratchDirs) get(quota int64) (scratchDir, error) {
	if !s.mount || quota < 0 {
		quota = 0
	}
	s.mu.Lock()
	for i := len(s.free) - 1; i >= 0; i-- {
		if d := s.free[i]; d.size == quota {
			s.free = append(s.free[:i], s.free[i+1:]...)
			s.mu.Unlock()
			return d, nil
		}
	}
	if quota > 0 {
		for i := len(s.free) - 1; i >= 0; i-- {
			if d := s.free[i]; d.size > 0 {
				s.free = append(s.free[:i], s.free[i+1:]...)
				s.mu.Unlock()
				if err := tmpfs.Resize(d.path, quota, scratchPerm); err != nil {
					discard(d)
					return s.make(quota)
				}
				d.size = quota
				return d, nil
			}
		}
	}
	s.mu.Unlock()
	return s.make(quota)
}

// make creates a directory and mounts a tmpfs of size bytes on it (none
// for 0).
func (s *scratchDirs) make(size int64) (scratchDir, error) {
	path, err := os.MkdirTemp(s.parent, "inv-")
	if err != nil {
		return scratchDir{}, err
	}
	d := scratchDir{path: path}
	if size > 0 {
		if err := tmpfs.Mount(path, size, scratchPerm); err != nil {
			os.Remove(path)
			return scratchDir{}, err
		}
		d.size = size
	}
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		discard(d)
		return scratchDir{}, err
	}
	d.dev = st.Dev
	return d, nil
}

// put takes d back after its run: kept when it is still an empty private
// directory on the file system it had (not replaced by a link, not
// changed, its tmpfs still mounted), removed otherwise. The run's
// processes must be gone.
func (s *scratchDirs) put(d scratchDir) {
	if reusable(d) {
		s.mu.Lock()
		if !s.closed && len(s.free) < s.max {
			s.free = append(s.free, d)
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
	}
	discard(d)
}

func reusable(d scratchDir) bool {
	var st unix.Stat_t
	if err := unix.Lstat(d.path, &st); err != nil || st.Mode != unix.S_IFDIR|scratchPerm || st.Dev != d.dev {
		return false
	}
	if d.size > 0 {
		// Nothing in it: one inode in use (its root) and no block, so
		// neither an entry nor a removed file a process still holds open.
		var fs unix.Statfs_t
		return unix.Statfs(d.path, &fs) == nil && fs.Files-fs.Ffree == 1 && fs.Bfree == fs.Blocks
	}
	fd, err := unix.Open(d.path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	f := os.NewFile(uintptr(fd), d.path)
	defer f.Close()
	_, err = f.Readdirnames(1)
	return errors.Is(err, io.EOF)
}

// discard detaches d's tmpfs, with whatever it holds (or whatever else a
// handler mounted there), and removes the directory.
func discard(d scratchDir) {
	tmpfs.Unmount(d.path)
	os.RemoveAll(d.path)
}

// close removes the kept directories; a directory still out is removed
// when it comes back.
func (s *scratchDirs) close() {
	s.mu.Lock()
	free := s.free
	s.free, s.closed = nil, true
	s.mu.Unlock()
	for _, d := range free {
		discard(d)
	}
}
