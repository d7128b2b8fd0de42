package python

import (
	"embed"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// The adapter that runs a JobX scope-factory class runner-side, and the
// mr.handlers.scope base classes such a class subclasses.
//
//go:embed scope_adapter.py scopeshim
var scopeFiles embed.FS

// ScopeClassCommand writes the adapter and the mr.handlers.scope shim
// under dir and returns the command that runs JobX scope-factory class
// class (a dotted path found on PYTHONPATH) for one handler, and the
// environment it needs: the runner appends the workflow and the handler's
// name to the command and gives the handler's metadata as JSON on stdin;
// it prints the handler's scope as a JSON object.
func ScopeClassCommand(dir, class string) (argv, env []string, err error) {
	if class == "" || strings.HasPrefix(class, ".") || !strings.Contains(class, ".") {
		return nil, nil, fmt.Errorf("scope factory class %q: want a dotted path, module.Class", class)
	}
	py, err := exec.LookPath(Interpreter)
	if err != nil {
		return nil, nil, fmt.Errorf("scope factory class %s: %w (apt-get install python3)", class, err)
	}
	err = fs.WalkDir(scopeFiles, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, filepath.FromSlash(p))
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		data, err := scopeFiles.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, data, 0o644)
	})
	if err != nil {
		return nil, nil, fmt.Errorf("scope factory class: %w", err)
	}
	path := filepath.Join(dir, "scopeshim")
	if pp := os.Getenv("PYTHONPATH"); pp != "" {
		path += string(os.PathListSeparator) + pp
	}
	return []string{py, filepath.Join(dir, "scope_adapter.py"), class}, []string{"PYTHONPATH=" + path}, nil
}
