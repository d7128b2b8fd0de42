package namespace

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// staging makes host directories that the sandbox user cannot reach
// reachable for bubblewrap, which runs as that user: as root, it
// bind-mounts each such directory under <Dir>/m, whose parents the user can
// traverse (a runner's directories often sit under /root, mode 0700). An
// ordinary user's runner reaches its own directories and stages nothing.
//
// The mounts live in the host's mount table until Close; a runner killed
// before it could unmount leaves them, and the next sandbox started beside
// it (same parent directory) unmounts those of dead owners (New, through
// package leftover).
type staging struct {
	dir      string // <Dir>/m
	uid, gid int
	root     bool

	mu     sync.Mutex // guards mounts
	mounts map[string]string
}

func newStaging(dir string, uid, gid int) (*staging, error) {
	st := &staging{dir: filepath.Join(dir, "m"), uid: uid, gid: gid, root: os.Geteuid() == 0, mounts: map[string]string{}}
	if !st.root {
		return st, nil
	}
	if err := os.MkdirAll(st.dir, 0o711); err != nil {
		return nil, fmt.Errorf("namespace sandbox: %w", err)
	}
	return st, nil
}

// reach returns a path of host directory src that the sandbox user can
// reach: src itself, or its staging mount.
func (st *staging) reach(src string) (string, error) {
	if !st.root || traversable(src, st.uid, st.gid) {
		return src, nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if dst, ok := st.mounts[src]; ok {
		return dst, nil
	}
	dst := filepath.Join(st.dir, strconv.Itoa(len(st.mounts)))
	if err := os.Mkdir(dst, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("stage %s: %w", src, err)
	}
	if err := unix.Mount(src, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return "", fmt.Errorf("stage %s for the sandbox user: %w", src, err)
	}
	st.mounts[src] = dst
	return dst, nil
}

// close unmounts every staging mount.
func (st *staging) close() {
	st.mu.Lock()
	defer st.mu.Unlock()
	for src, dst := range st.mounts {
		unix.Unmount(dst, unix.MNT_DETACH)
		os.Remove(dst)
		delete(st.mounts, src)
	}
}

// traversable says whether user uid (group gid, no other groups) can
// search every directory from / down to path.
func traversable(path string, uid, gid int) bool {
	p := filepath.Clean(path)
	for {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			return false
		}
		var bit uint32 = 0o001
		switch {
		case int(st.Uid) == uid:
			bit = 0o100
		case int(st.Gid) == gid:
			bit = 0o010
		}
		if st.Mode&bit == 0 {
			return false
		}
		if p == "/" {
			return true
		}
		p = filepath.Dir(p)
	}
}
