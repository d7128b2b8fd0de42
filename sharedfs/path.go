package sharedfs

import (
	"fmt"
	"io/fs"
	"path"
	"strings"
	"unicode/utf8"
)

// ErrBadPath is wrapped by every error about a path that is not acceptable:
// empty, containing a NUL byte or invalid UTF-8, escaping the workflow root
// with "..", or reaching through a symbolic link. It wraps fs.ErrInvalid, so
// errors.Is(err, fs.ErrInvalid) holds too.
var ErrBadPath = fmt.Errorf("bad path: %w", fs.ErrInvalid)

// ErrIsDir is wrapped by errors from operations that need a file but were
// given a directory (Rm, Cp, ReadFile on a directory).
var ErrIsDir = fmt.Errorf("is a directory: %w", fs.ErrInvalid)

// ErrNotDir is wrapped by errors from operations that need a directory but
// were given a file (Ls, Rmdir on a file).
var ErrNotDir = fmt.Errorf("not a directory: %w", fs.ErrInvalid)

// rootPrefix is JobX's prefix for per-workflow roots.
const rootPrefix = "/working"

// Root returns the path, inside a backend, of the root of workflow's shared
// filesystem: "/working/<workflow>", as in JobX. It does not validate the
// name; New and Open do.
func Root(workflow string) string {
	return rootPrefix + "/" + workflow
}

// validWorkflow reports why workflow cannot name a root directory, or nil.
func validWorkflow(workflow string) error {
	switch {
	case workflow == "":
		return fmt.Errorf("empty workflow name: %w", ErrBadPath)
	case workflow == "." || workflow == "..":
		return fmt.Errorf("workflow name %q: %w", workflow, ErrBadPath)
	case strings.ContainsAny(workflow, "/\\\x00"):
		return fmt.Errorf("workflow name %q contains '/', '\\' or NUL: %w", workflow, ErrBadPath)
	case !utf8.ValidString(workflow):
		return fmt.Errorf("workflow name %q is not UTF-8: %w", workflow, ErrBadPath)
	}
	return nil
}

// clean turns a user path into an absolute, cleaned path relative to the
// workflow root ("/" is the root itself). Relative and absolute paths mean
// the same thing. A path whose ".." components climb above the root at any
// point is refused, even if it comes back down ("a/../../b", "/../x").
func clean(op, p string) (string, error) {
	bad := func(why string) error {
		return &fs.PathError{Op: op, Path: p, Err: fmt.Errorf("%s: %w", why, ErrBadPath)}
	}
	switch {
	case p == "":
		return "", bad("empty path")
	case strings.IndexByte(p, 0) >= 0:
		return "", bad("NUL byte in path")
	case !utf8.ValidString(p):
		return "", bad("path is not UTF-8")
	}
	depth := 0
	for _, seg := range strings.Split(p, "/") {
		switch seg {
		case "", ".":
		case "..":
			depth--
			if depth < 0 {
				return "", bad("path escapes the workflow root")
			}
		default:
			depth++
		}
	}
	return path.Clean("/" + p), nil
}

// within reports whether p is q or lies below q (both cleaned).
func within(p, q string) bool {
	return p == q || q == "/" || strings.HasPrefix(p, q+"/")
}
