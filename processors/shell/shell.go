// Package shell is jobx's processor for POSIX sh handlers (.sh): complete
// scripts that speak the handler protocol, helped by the functions in
// jobx.sh (`. "$JOBX_SH_HELPERS"`).
package shell

import (
	"context"
	_ "embed"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/jobx/jobx/processors"
	"github.com/jobx/jobx/processors/internal/atomicfile"
	"github.com/jobx/jobx/processors/internal/checkfile"
)

// Helpers is the source of jobx.sh, the helper functions for handlers.
//
//go:embed jobx.sh
var Helpers []byte

// Shell is the program that runs handlers.
const Shell = "/bin/sh"

// EnvHelpers names the environment variable holding the helpers' path.
const EnvHelpers = "JOBX_SH_HELPERS"

// Processor is the "sh" processor.
type Processor struct{}

var _ processors.Processor = Processor{}

func init() { processors.Register(Processor{}) }

// Name returns "sh".
func (Processor) Name() string { return "sh" }

// Extensions returns [".sh"].
func (Processor) Extensions() []string { return []string{".sh"} }

// lineRE matches dash's "file: 3: msg" and bash's "file: line 3: msg".
var lineRE = regexp.MustCompile(`^(.*?): (?:line )?(\d+): (.*)$`)

// Check runs `sh -n`; a syntax error is a *processors.CheckError.
func (Processor) Check(ctx context.Context, file string, src []byte) error {
	out, rejected, err := checkfile.Run(ctx, file, src, Shell, "-n")
	if err != nil || !rejected {
		return err
	}
	out = strings.TrimSpace(out)
	first, _, _ := strings.Cut(out, "\n")
	if m := lineRE.FindStringSubmatch(first); m != nil && m[1] == file {
		line, _ := strconv.Atoi(m[2])
		return &processors.CheckError{File: file, Line: line, Msg: m[3]}
	}
	return &processors.CheckError{File: file, Msg: out}
}

// Install writes the handler to <dir>/shell/<name>-<version>.sh and the
// helpers to <dir>/shell/jobx.sh; the program is `/bin/sh <handler>` with
// JOBX_SH_HELPERS=<helpers>.
func (Processor) Install(dir string, h processors.Handler) (processors.Program, error) {
	if err := processors.ValidateName(h.Name); err != nil {
		return processors.Program{}, fmt.Errorf("install sh handler: %w", err)
	}
	base := filepath.Join(dir, "shell")
	helpers := filepath.Join(base, "jobx.sh")
	if err := atomicfile.Write(helpers, Helpers, 0o644); err != nil {
		return processors.Program{}, err
	}
	path := filepath.Join(base, h.Name+"-"+h.FileVersion()+".sh")
	if err := atomicfile.Write(path, []byte(h.Source), 0o644); err != nil {
		return processors.Program{}, err
	}
	return processors.Program{
		Argv: []string{Shell, path},
		Env:  append(processors.HandlerEnv(h), EnvHelpers+"="+helpers),
	}, nil
}
