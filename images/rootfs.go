package images

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// entry is one path of an image's root filesystem: a regular file copied
// from the host, a symbolic link, or a directory.
type entry struct {
	Path   string // absolute path in the image, cleaned
	Source string // host file for a regular file
	Link   string // target of a symbolic link
	Data   []byte // literal content of a generated file
	Dir    bool
	Mode   fs.FileMode // permission bits
}

// rootfs is an image's file tree, keyed by image path.
type rootfs struct {
	entries map[string]*entry
}

func newRootfs() *rootfs {
	r := &rootfs{entries: map[string]*entry{}}
	for _, d := range []string{"/bin", "/dev", "/etc", "/proc", "/sys", "/tmp", "/usr/bin", "/scratch", "/jobx", "/working"} {
		r.dir(d)
	}
	r.entries["/tmp"].Mode = 0o1777
	r.data("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n", 0o644)
	r.data("/etc/group", "root:x:0:\nnogroup:x:65534:\n", 0o644)
	r.data("/etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files dns\n", 0o644)
	return r
}

func (r *rootfs) dir(p string) {
	p = path.Clean(p)
	if p == "/" {
		return
	}
	if e, ok := r.entries[p]; ok && e.Dir {
		return
	}
	r.dir(path.Dir(p))
	r.entries[p] = &entry{Path: p, Dir: true, Mode: 0o755}
}

func (r *rootfs) data(p, content string, mode fs.FileMode) {
	r.dir(path.Dir(p))
	r.entries[p] = &entry{Path: p, Data: []byte(content), Mode: mode}
}

func (r *rootfs) link(p, target string) {
	r.dir(path.Dir(p))
	r.entries[p] = &entry{Path: p, Link: target}
}

// file copies host file src to image path p, following symbolic links.
func (r *rootfs) file(p, src string) error {
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", src)
	}
	r.dir(path.Dir(p))
	r.entries[p] = &entry{Path: p, Source: src, Mode: st.Mode().Perm()}
	return nil
}

// binary copies an executable or shared library and the shared libraries
// it needs (as ldd finds them), at their host paths.
func (r *rootfs) binary(ctx context.Context, p, src string) error {
	if err := r.file(p, src); err != nil {
		return err
	}
	libs, err := sharedLibs(ctx, src)
	if err != nil {
		return err
	}
	for _, lib := range libs {
		if _, ok := r.entries[lib]; ok {
			continue
		}
		if err := r.file(lib, lib); err != nil {
			return fmt.Errorf("library of %s: %w", src, err)
		}
	}
	return nil
}

var lddRE = regexp.MustCompile(`(?:=>\s*)?(/\S+)\s+\(0x`)

// errLibraryNotFound is sharedLibs's error for a library ldd cannot find.
var errLibraryNotFound = errors.New("a shared library is not installed")

// sharedLibs returns the absolute paths of the shared libraries (and the
// dynamic loader) that ldd lists for bin; none for a static binary. A
// library ldd cannot find is an error wrapping errLibraryNotFound.
func sharedLibs(ctx context.Context, bin string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("ldd %s: %w", bin, err)
	}
	out, err := exec.CommandContext(ctx, "ldd", bin).CombinedOutput()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("ldd %s: %w", bin, ctx.Err())
	}
	if bytes.Contains(out, []byte("not a dynamic executable")) || bytes.Contains(out, []byte("statically linked")) {
		return nil, nil
	}
	if bytes.Contains(out, []byte("not found")) {
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, "not found") {
				return nil, fmt.Errorf("ldd %s: %s: %w", bin, strings.TrimSpace(line), errLibraryNotFound)
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w: %s", bin, err, out)
	}
	var libs []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if m := lddRE.FindStringSubmatch(line); m != nil {
			libs = append(libs, path.Clean(m[1]))
		}
	}
	sort.Strings(libs)
	return libs, nil
}

// tree copies the host directory src to image path p, skipping entries for
// which skip returns true (rel is the slash path under src). Symbolic
// links are kept as links; shared objects bring their libraries, and one
// whose libraries are missing is left out.
func (r *rootfs) tree(ctx context.Context, p, src string, skip func(rel string, d fs.DirEntry) bool) error {
	return filepath.WalkDir(src, func(host string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, host)
		rel = filepath.ToSlash(rel)
		if rel != "." && skip != nil && skip(rel, d) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		dst := path.Join(p, rel)
		switch {
		case d.IsDir():
			r.dir(dst)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(host)
			if err != nil {
				return err
			}
			r.link(dst, target)
		case d.Type().IsRegular():
			if strings.HasSuffix(rel, ".so") || strings.Contains(rel, ".so.") {
				err := r.binary(ctx, dst, host)
				if errors.Is(err, errLibraryNotFound) {
					delete(r.entries, dst) // an optional module whose libraries are not installed
					return nil
				}
				// Any other failure (ldd not run, the build cancelled) fails
				// the build: an image silently missing modules is worse.
				return err
			}
			return r.file(dst, host)
		}
		return nil
	})
}

// sorted returns the entries in path order, parents before children.
func (r *rootfs) sorted() []*entry {
	out := make([]*entry, 0, len(r.entries))
	for _, e := range r.entries {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}
