package sharedfs

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
)

// Upload copies the host directory tree src into the filesystem under dst
// (a path of f, "/" for its root), replacing files of the same names and
// leaving others. Symbolic links and special files are skipped. It returns
// how many files it wrote.
func (f *FS) Upload(src, dst string) (int, error) {
	n := 0
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		to := path.Join(dst, filepath.ToSlash(rel))
		switch {
		case d.IsDir():
			return f.Mkdir(to)
		case !d.Type().IsRegular():
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := f.WriteFile(to, data, 0o644); err != nil {
			return fmt.Errorf("upload %s: %w", p, err)
		}
		n++
		return nil
	})
	return n, err
}
