package processors

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"unicode"

	"github.com/hashicorp/go-multierror"
)

// ErrInvalidName is wrapped by errors about handler names.
var ErrInvalidName = errors.New("invalid handler name")

// HandlerName derives a handler's name from its path relative to the handlers
// directory, as JobX does: the directory with "/" replaced by "_", then "_",
// then the file name without its extension ("map/test/split.py" ->
// "map_test_split", "sum.py" -> "sum"). A name must be non-empty and contain
// no "-", "/" or white space; the error wraps ErrInvalidName and names the
// file.
func HandlerName(relPath string) (string, error) {
	p := path.Clean(filepath.ToSlash(relPath))
	if p == "." || strings.HasPrefix(p, "../") || p == ".." || path.IsAbs(p) {
		return "", fmt.Errorf("%s: %w: not a relative path inside the handlers directory", relPath, ErrInvalidName)
	}
	dir, base := path.Split(p)
	name := strings.TrimSuffix(base, path.Ext(base))
	if dir = strings.TrimSuffix(dir, "/"); dir != "" {
		name = strings.ReplaceAll(dir, "/", "_") + "_" + name
	}
	if err := ValidateName(name); err != nil {
		return "", fmt.Errorf("%s: %w", relPath, err)
	}
	return name, nil
}

// ValidateName checks a handler name: non-empty, no "-", "/" or white space.
func ValidateName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty", ErrInvalidName)
	case strings.ContainsAny(name, "-/"):
		return fmt.Errorf("%w %q: contains - or /", ErrInvalidName, name)
	case strings.ContainsFunc(name, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }):
		return fmt.Errorf("%w %q: contains white space", ErrInvalidName, name)
	}
	return nil
}

// SkipFile reports whether a file name is skipped by JobX's rules: names
// starting with "_" or ".", and names with no ".". Discover still takes a
// name with no "." when the file is executable and starts with a #! line.
func SkipFile(name string) bool {
	return name == "" || name[0] == '_' || name[0] == '.' || !strings.Contains(name, ".")
}

// File is a handler file found by Discover.
type File struct {
	Path      string // the path, dir joined with RelPath
	RelPath   string // relative to the directory, with "/" separators
	Name      string // the handler name
	Processor Processor
}

// Warning is a file Discover skipped, with the reason.
type Warning struct {
	Path string
	Msg  string
}

func (w Warning) String() string { return w.Path + ": " + w.Msg }

// Discover walks dir and returns its handler files sorted by name, plus a
// warning for every file it skipped because no processor claims it.
// Directories whose names start with "." or "_" are not entered. Invalid
// and duplicate handler names are all reported in one error (a
// *multierror.Error).
func Discover(dir string) ([]File, []Warning, error) {
	var (
		files    []File
		warnings []Warning
		errs     *multierror.Error
		byName   = map[string]string{}
	)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if p != dir && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if name[0] == '_' || name[0] == '.' {
			return nil
		}
		head, err := readHead(p)
		if err != nil {
			return err
		}
		if SkipFile(name) {
			info, err := d.Info()
			if err != nil {
				return err
			}
			if info.Mode().Perm()&0o111 == 0 || !HasShebang(head) {
				return nil
			}
		}
		proc, ok := ForFile(name, head)
		if !ok {
			warnings = append(warnings, Warning{Path: rel, Msg: fmt.Sprintf("skipped: no processor for extension %q", path.Ext(name))})
			return nil
		}
		hname, err := HandlerName(rel)
		if err != nil {
			errs = multierror.Append(errs, err)
			return nil
		}
		if other, dup := byName[hname]; dup {
			errs = multierror.Append(errs, fmt.Errorf("%s: %w %q: also the name of %s", rel, ErrInvalidName, hname, other))
			return nil
		}
		byName[hname] = rel
		files = append(files, File{Path: p, RelPath: rel, Name: hname, Processor: proc})
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("discover handlers in %s: %w", dir, err)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	sort.Slice(warnings, func(i, j int) bool { return warnings[i].Path < warnings[j].Path })
	return files, warnings, errs.ErrorOrNil()
}

// readHead returns the first bytes of a file, enough to see a #! line.
func readHead(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, 2)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return buf[:n], nil
}
