// Package proctest runs installed handler programs in tests.
package proctest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jobx/jobx/processors"
)

// Result is what a program run produced.
type Result struct {
	Stdout []string // stdout lines, without newlines
	Stderr string
	Code   int
}

// Run runs prog with stdin, the test's environment plus prog.Env plus env,
// and a 30 s limit.
func Run(t testing.TB, prog processors.Program, stdin string, env ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog.Argv[0], prog.Argv[1:]...)
	cmd.Env = append(append(os.Environ(), prog.Env...), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := Result{Stdout: Lines(stdout.String()), Stderr: stderr.String()}
	var exitErr *exec.ExitError
	switch {
	case errors.As(err, &exitErr):
		res.Code = exitErr.ExitCode()
	case err != nil:
		t.Fatalf("run %v: %v", prog.Argv, err)
	}
	return res
}

// Lines splits s into lines, dropping the final newline.
func Lines(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// Install installs src as handler name of type typ with p under t.TempDir.
func Install(t testing.TB, p processors.Processor, name, typ, src string) processors.Program {
	t.Helper()
	prog, err := p.Install(t.TempDir(), processors.Handler{
		Workflow: "wf", Name: name, Type: typ, SourceType: p.Name(), Source: src,
		Version: processors.Version([]byte(src)),
	})
	if err != nil {
		t.Fatalf("install %s: %v", name, err)
	}
	return prog
}
