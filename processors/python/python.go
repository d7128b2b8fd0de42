// Package python is jobx's processor for JobX-style Python handlers: a .py
// file holding a function body (docstring header, top-level yield or return,
// JobX's injected names), run unmodified by an embedded runtime script.
//
// The runtime runs one invocation per process (cold start, Program.Argv), or
// forks invocations from a warm zygote (see Zygote), which is about ten times
// faster than starting python3.
package python

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/jobx/jobx/processors"
	"github.com/jobx/jobx/processors/internal/atomicfile"
)

// Runtime is the source of jobx_runtime.py, the script that runs handlers
// (modes: run, check, zygote).
//
//go:embed jobx_runtime.py
var Runtime []byte

// Interpreter is the Python interpreter run by programs and checks; it is
// looked up in PATH.
const Interpreter = "python3"

// RuntimeFile is the runtime's file name under <dir>/python.
const RuntimeFile = "jobx_runtime.py"

// Processor is the "python" processor.
type Processor struct{}

var _ processors.Processor = Processor{}

func init() { processors.Register(Processor{}) }

// Name returns "python".
func (Processor) Name() string { return "python" }

// Extensions returns [".py"].
func (Processor) Extensions() []string { return []string{".py"} }

var checkLineRE = regexp.MustCompile(`^(.*?):(\d+): (.*)$`)

// Check compiles src wrapped as the runtime wraps it, with python3. The
// handler type (hence the argument name) comes from the header when it
// parses; a syntax error is a *processors.CheckError.
func (Processor) Check(ctx context.Context, file string, src []byte) error {
	handlerType := processors.TypeMapper
	if m, err := processors.ParseHeader(file, src); err == nil {
		handlerType = m.HandlerType
	}
	cmd := exec.CommandContext(ctx, Interpreter, "-c", string(Runtime), "check", file, handlerType)
	cmd.Stdin = bytes.NewReader(src)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if err == nil {
		return nil
	}
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 2 {
		return fmt.Errorf("check %s: %w: %s", file, err, strings.TrimSpace(stderr.String()))
	}
	msg := strings.TrimSpace(stderr.String())
	first, rest, _ := strings.Cut(msg, "\n")
	if m := checkLineRE.FindStringSubmatch(first); m != nil && m[1] == file {
		line, _ := strconv.Atoi(m[2])
		if rest != "" {
			m[3] += " (" + strings.TrimSpace(rest) + ")"
		}
		return &processors.CheckError{File: file, Line: line, Msg: m[3]}
	}
	return &processors.CheckError{File: file, Msg: msg}
}

// Install writes the handler body to <dir>/python/<name>-<version>.py and
// the runtime to <dir>/python/jobx_runtime.py. The program is
// `python3 <runtime> run <handler>`, warm-capable.
func (Processor) Install(dir string, h processors.Handler) (processors.Program, error) {
	if err := processors.ValidateName(h.Name); err != nil {
		return processors.Program{}, fmt.Errorf("install python handler: %w", err)
	}
	base := filepath.Join(dir, "python")
	runtime := filepath.Join(base, RuntimeFile)
	if err := atomicfile.Write(runtime, Runtime, 0o644); err != nil {
		return processors.Program{}, err
	}
	path := filepath.Join(base, h.Name+"-"+h.FileVersion()+".py")
	if err := atomicfile.Write(path, []byte(h.Source), 0o644); err != nil {
		return processors.Program{}, err
	}
	return processors.Program{
		Argv: []string{Interpreter, runtime, "run", path},
		Env:  processors.HandlerEnv(h),
		Warm: &processors.WarmSpec{Kind: "python", HandlerPath: path},
	}, nil
}
