// Package node is jobx's processor for Node.js handlers (.js): complete
// scripts that speak the handler protocol, helped by the embedded module
// "jobx" (require('jobx'); see jobx.js).
package node

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

// Helper is the source of the "jobx" module installed for handlers.
//
//go:embed jobx.js
var Helper []byte

// Interpreter is the program that runs handlers, looked up in PATH.
const Interpreter = "node"

// Processor is the "node" processor.
type Processor struct{}

var _ processors.Processor = Processor{}

func init() { processors.Register(Processor{}) }

// Name returns "node".
func (Processor) Name() string { return "node" }

// Extensions returns [".js"].
func (Processor) Extensions() []string { return []string{".js"} }

var lineRE = regexp.MustCompile(`(?m)^(.*):(\d+)$`)
var errRE = regexp.MustCompile(`(?m)^(\w*Error: .*)$`)

// Check runs `node --check`; a syntax error is a *processors.CheckError.
func (Processor) Check(ctx context.Context, file string, src []byte) error {
	out, rejected, err := checkfile.Run(ctx, file, src, Interpreter, "--check")
	if err != nil || !rejected {
		return err
	}
	ce := &processors.CheckError{File: file, Msg: strings.TrimSpace(out)}
	if m := lineRE.FindStringSubmatch(out); m != nil && m[1] == file {
		ce.Line, _ = strconv.Atoi(m[2])
	}
	if m := errRE.FindStringSubmatch(out); m != nil {
		ce.Msg = m[1]
	}
	return ce
}

// Install writes the handler to <dir>/node/<name>-<version>.js and the
// helper to <dir>/node/node_modules/jobx/index.js; the program is
// `node <handler>` with NODE_PATH=<dir>/node/node_modules.
func (Processor) Install(dir string, h processors.Handler) (processors.Program, error) {
	if err := processors.ValidateName(h.Name); err != nil {
		return processors.Program{}, fmt.Errorf("install node handler: %w", err)
	}
	base := filepath.Join(dir, "node")
	modules := filepath.Join(base, "node_modules")
	if err := atomicfile.Write(filepath.Join(modules, "jobx", "index.js"), Helper, 0o644); err != nil {
		return processors.Program{}, err
	}
	path := filepath.Join(base, h.Name+"-"+h.FileVersion()+".js")
	if err := atomicfile.Write(path, []byte(h.Source), 0o644); err != nil {
		return processors.Program{}, err
	}
	return processors.Program{
		Argv: []string{Interpreter, path},
		Env:  append(processors.HandlerEnv(h), "NODE_PATH="+modules),
	}, nil
}
