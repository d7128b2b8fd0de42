// Package leftover lets a sandbox remove what an earlier sandbox left
// behind when its runner was killed (SIGKILL): its directory and the mounts
// under it. Each sandbox claims its directory (Claim writes the owning
// process's id and start time into it); a sandbox started later beside it
// (Sweep: same parent directory, same name prefix) unmounts and removes the
// directories whose owner is gone. A directory nobody claimed is left
// alone.
//
//	dir, _ := os.MkdirTemp("", "jxn-")
//	removed, err := leftover.Sweep(dir, nil) // the dead owners' jxn-* beside dir
//	err = leftover.Claim(dir)           // this process owns dir
package leftover

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/jobx/jobx/internal/tmpfs"
	"golang.org/x/sys/unix"
)

// OwnerFile, in a claimed directory, holds "<pid> <start time>" of the
// owning process (an older sandbox wrote the pid alone).
const OwnerFile = "owner"

// Claim records that this process owns dir.
func Claim(dir string) error {
	pid := os.Getpid()
	if err := os.WriteFile(filepath.Join(dir, OwnerFile), []byte(fmt.Sprintf("%d %s\n", pid, Start(pid))), 0o644); err != nil {
		return fmt.Errorf("claim %s: %w", dir, err)
	}
	return nil
}

// Owner reports whether dir was claimed and whether its owner still runs
// (the same pid with the same start time).
func Owner(dir string) (claimed, alive bool) {
	b, err := os.ReadFile(filepath.Join(dir, OwnerFile))
	if err != nil {
		return false, false
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return false, false
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil || pid <= 0 {
		return false, false
	}
	if len(f) > 1 {
		return true, Start(pid) == f[1]
	}
	return true, unix.Kill(pid, 0) == nil
}

// Sweep removes the directories beside dir (in its parent, named with the
// same prefix: the text of dir's name up to its last '-') that were claimed
// by a process that is gone, unmounting whatever is mounted under them
// first; release, when not nil, is called with each before, to end what
// else it holds. It returns their paths. dir itself is never touched.
func Sweep(dir string, release func(dir string)) (removed []string, err error) {
	parent, name := filepath.Split(filepath.Clean(dir))
	i := strings.LastIndexByte(name, '-')
	if i < 0 {
		return nil, nil
	}
	prefix := name[:i+1]
	entries, err := os.ReadDir(parent)
	if err != nil {
		return nil, fmt.Errorf("leftovers beside %s: %w", dir, err)
	}
	var errs []error
	for _, e := range entries {
		if !e.IsDir() || e.Name() == name || !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		p := filepath.Join(parent, e.Name())
		if claimed, alive := Owner(p); !claimed || alive {
			continue
		}
		if release != nil {
			release(p)
		}
		if err := tmpfs.UnmountUnder(p); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, p)
	}
	return removed, errors.Join(errs...)
}

// Start returns the start time of process pid (field 22 of
// /proc/<pid>/stat, in clock ticks since boot), "" when there is no such
// process.
func Start(pid int) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ""
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 20 {
		return ""
	}
	return fields[19]
}
