package none

import (
	"errors"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// scratchDirs hands out the process sandbox's per-invocation scratch
// directories. Creating a directory allocates a block, which on a journaled
// filesystem busy with fsyncs (etcd's, on the same disk) costs up to half a
// millisecond of CPU: a third of the runner's CPU in a word count. A
// directory that its run left empty, still a private directory, is
// therefore kept for a later run; any other is removed as before. A run
// never sees anything of an earlier one: the directory it gets is empty.
type scratchDirs struct {
	parent string
	max    int

	mu   sync.Mutex
	free []string
}

// get returns an empty private directory.
func (s *scratchDirs) get() (string, error) {
	s.mu.Lock()
	if n := len(s.free); n > 0 {
		dir := s.free[n-1]
		s.free = s.free[:n-1]
		s.mu.Unlock()
		return dir, nil
	}
	s.mu.Unlock()
	return os.MkdirTemp(s.parent, "inv-")
}

// put takes dir back after its run: kept when it is still an empty
// directory of mode 0700 (not replaced by a link, not changed), removed
// otherwise.
func (s *scratchDirs) put(dir string) {
	if reusable(dir) {
		s.mu.Lock()
		if len(s.free) < s.max {
			s.free = append(s.free, dir)
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
	}
	os.RemoveAll(dir)
}

func reusable(dir string) bool {
	fi, err := os.Lstat(dir)
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 || fi.Mode()&(os.ModeSymlink|os.ModeSetuid|os.ModeSetgid|os.ModeSticky) != 0 {
		return false
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	f := os.NewFile(uintptr(fd), dir)
	defer f.Close()
	_, err = f.Readdirnames(1)
	return errors.Is(err, io.EOF)
}

// close removes the kept directories.
func (s *scratchDirs) close() {
	s.mu.Lock()
	free := s.free
	s.free = nil
	s.mu.Unlock()
	for _, dir := range free {
		os.RemoveAll(dir)
	}
}
