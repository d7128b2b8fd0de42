// Package generic is jobx's "exec" processor: any file with a #! line runs
// as an executable that speaks the handler protocol.
package generic

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/jobx/jobx/processors"
	"github.com/jobx/jobx/processors/internal/atomicfile"
)

// Processor is the "exec" processor.
type Processor struct{}

var _ processors.Processor = Processor{}

func init() { processors.Register(Processor{}) }

// Name returns "exec".
func (Processor) Name() string { return processors.ExecName }

// Extensions returns nil: the processor takes files by their #! line.
func (Processor) Extensions() []string { return nil }

// Interpreter returns the interpreter and its arguments from src's #! line.
func Interpreter(src []byte) ([]string, bool) {
	if !processors.HasShebang(src) {
		return nil, false
	}
	line, _, _ := bytes.Cut(src[2:], []byte("\n"))
	fields := strings.Fields(strings.TrimSuffix(string(line), "\r"))
	return fields, len(fields) > 0
}

// Check verifies that src has a #! line whose interpreter exists and is
// executable (for "/usr/bin/env prog", that prog is in PATH). It does not
// parse the rest of the file.
func (Processor) Check(ctx context.Context, file string, src []byte) error {
	argv, ok := Interpreter(src)
	if !ok {
		return &processors.CheckError{File: file, Line: 1, Msg: "no #! line naming an interpreter"}
	}
	if err := executable(argv[0]); err != nil {
		return &processors.CheckError{File: file, Line: 1, Msg: fmt.Sprintf("interpreter %q: %v", argv[0], err)}
	}
	if filepath.Base(argv[0]) == "env" {
		prog := ""
		for _, a := range argv[1:] {
			if !strings.HasPrefix(a, "-") && !strings.Contains(a, "=") {
				prog = a
				break
			}
		}
		if prog == "" {
			return &processors.CheckError{File: file, Line: 1, Msg: "#! line runs env without a program"}
		}
		if _, err := exec.LookPath(prog); err != nil {
			return &processors.CheckError{File: file, Line: 1, Msg: fmt.Sprintf("interpreter %q not found in PATH", prog)}
		}
	}
	return nil
}

func executable(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("not found")
	}
	if st.IsDir() || st.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("not executable")
	}
	return nil
}

// Install writes the handler to <dir>/exec/<name>-<version> with mode 0755;
// the program is that path.
func (Processor) Install(dir string, h processors.Handler) (processors.Program, error) {
	if err := processors.ValidateName(h.Name); err != nil {
		return processors.Program{}, fmt.Errorf("install exec handler: %w", err)
	}
	if !processors.HasShebang([]byte(h.Source)) {
		return processors.Program{}, fmt.Errorf("install exec handler %s: the source has no #! line", h.Name)
	}
	path := filepath.Join(dir, "exec", h.Name+"-"+h.FileVersion())
	if err := atomicfile.Write(path, []byte(h.Source), 0o755); err != nil {
		return processors.Program{}, err
	}
	return processors.Program{Argv: []string{path}, Env: processors.HandlerEnv(h)}, nil
}
