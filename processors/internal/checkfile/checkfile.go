// Package checkfile runs a language's syntax checker on a source held in
// memory.
package checkfile

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Run writes src to a temporary file with file's base name and runs argv
// with that path appended. It returns the checker's combined output with
// the temporary path replaced by file, and whether the checker rejected the
// source (a non-zero exit). Other failures are errors.
func Run(ctx context.Context, file string, src []byte, argv ...string) (out string, rejected bool, err error) {
	dir, err := os.MkdirTemp("", "jobx-check")
	if err != nil {
		return "", false, err
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, filepath.Base(file))
	if err := os.WriteFile(tmp, src, 0o600); err != nil {
		return "", false, err
	}
	cmd := exec.CommandContext(ctx, argv[0], append(argv[1:], tmp)...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err = cmd.Run()
	out = strings.ReplaceAll(buf.String(), tmp, file)
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) && ctx.Err() == nil {
		return out, true, nil
	}
	if err != nil {
		return out, false, fmt.Errorf("check %s with %s: %w", file, argv[0], err)
	}
	return out, false, nil
}
