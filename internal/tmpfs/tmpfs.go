// Package tmpfs mounts the size-bounded tmpfs file systems that sandboxes
// give runs as scratch space, and finds and detaches the ones a killed
// runner left behind. A write past a tmpfs's size fails with ENOSPC; its
// pages are memory (charged to the memory cgroup of the process that
// writes them), never the host's disk. Mounting needs CAP_SYS_ADMIN: as
// any other user Mount fails with EPERM.
//
//	err := tmpfs.Mount(dir, 64<<20, 0o700) // a 64 MiB scratch directory
//	err = tmpfs.Resize(dir, 8<<20, 0o700)  // reuse it with another quota
//	err = tmpfs.Unmount(dir)               // its files go with it
//	err = tmpfs.UnmountUnder(root)         // whatever a crash left under root
package tmpfs

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// flags are the mount flags of every scratch tmpfs: no set-user-id
// programs, no device files. A remount must repeat them (MS_REMOUNT resets
// the mount's flags to those given).
const flags = unix.MS_NOSUID | unix.MS_NODEV

// Mount mounts a tmpfs of size bytes (rounded up to pages) on dir, whose
// root gets mode perm and belongs to the caller.
func Mount(dir string, size int64, perm os.FileMode) error {
	if size <= 0 {
		// size=0 would mean no limit.
		return fmt.Errorf("tmpfs on %s: size %d is not positive", dir, size)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", flags, data(size, perm)); err != nil {
		return fmt.Errorf("mount a tmpfs on %s: %w", dir, err)
	}
	return nil
}

// Resize changes the size of the tmpfs mounted on dir: a few microseconds,
// against tens for a new mount. It fails when the tmpfs holds more than
// size bytes.
func Resize(dir string, size int64, perm os.FileMode) error {
	if size <= 0 {
		return fmt.Errorf("tmpfs on %s: size %d is not positive", dir, size)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_REMOUNT|flags, data(size, perm)); err != nil {
		return fmt.Errorf("resize the tmpfs on %s: %w", dir, err)
	}
	return nil
}

func data(size int64, perm os.FileMode) string {
	return "size=" + strconv.FormatInt(size, 10) + ",mode=" + strconv.FormatUint(uint64(perm.Perm()), 8)
}

// Unmount detaches the file system mounted on dir, without following dir
// if it is a symbolic link. The file system goes once no process uses it
// any more (a process may still have its working directory there); its
// files go with it, so there is nothing to remove first. A dir that is
// not a mount point, or does not exist, is no error.
func Unmount(dir string) error {
	err := unix.Unmount(dir, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
	if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return fmt.Errorf("unmount %s: %w", dir, err)
}

// Under returns the mount points of this process's mount namespace at or
// under root, deepest first (one entry per mount, so a point mounted twice
// is listed twice). A root that does not exist has none.
func Under(root string) ([]string, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	if abs, err = filepath.EvalSymlinks(abs); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		// id parent major:minor root mount-point options ...
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		p := unescape(fields[4])
		if p == abs || strings.HasPrefix(p, abs+"/") || abs == "/" {
			points = append(points, p)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("/proc/self/mountinfo: %w", err)
	}
	sort.SliceStable(points, func(i, j int) bool { return strings.Count(points[i], "/") > strings.Count(points[j], "/") })
	return points, nil
}

// UnmountUnder detaches every file system mounted at or under root, such
// as the scratch tmpfs mounts of a runner killed with SIGKILL.
func UnmountUnder(root string) error {
	points, err := Under(root)
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range points {
		if err := Unmount(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// unescape decodes mountinfo's octal escapes (\040 for a space, \011,
// \012, \134).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
