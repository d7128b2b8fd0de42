package main

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/jobx/jobx/processors/python"
)

// baselineScript runs handlers in one Python process without jobx.
//
//go:embed baseline.py
var baselineScript []byte

// baseline runs the benchmark's handlers in one python3 process, loaded by
// jobx's own Python runtime module, with no jobx in between.
type baseline struct {
	dir      string // holds jobx_runtime.py, baseline.py and the handler files
	handlers map[string]baselineHandler
}

type baselineHandler struct {
	Path string `json:"path"`
	Type string `json:"type"`
}

// baselineRun is what baseline.py reports.
type baselineRun struct {
	TimingsMS   []float64         `json:"timings_ms"`
	Result      []json.RawMessage `json:"result"`
	Invocations int               `json:"invocations"`
}

func newBaseline(dir string) (*baseline, error) {
	if err := os.MkdirAll(filepath.Join(dir, "handlers"), 0o755); err != nil {
		return nil, err
	}
	b := &baseline{dir: dir, handlers: map[string]baselineHandler{}}
	if err := os.WriteFile(filepath.Join(dir, python.RuntimeFile), python.Runtime, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "baseline.py"), baselineScript, 0o644); err != nil {
		return nil, err
	}
	hs, err := handlers()
	if err != nil {
		return nil, err
	}
	for _, h := range hs {
		p := filepath.Join(dir, "handlers", h.File)
		if err := os.WriteFile(p, h.Src, 0o644); err != nil {
			return nil, err
		}
		b.handlers[h.Name] = baselineHandler{Path: p, Type: h.Meta.HandlerType}
	}
	return b, nil
}

// spec is what baseline.py's Baseline loads the handlers from: the
// runtime module, the handler files and the steps.
func (b *baseline) spec() map[string]any {
	return map[string]any{
		"runtime":  filepath.Join(b.dir, python.RuntimeFile),
		"handlers": b.handlers,
		"steps":    steps,
	}
}

// run runs a job's steps over args warmup+iterations times and returns the
// timings of the measured runs and the last result.
func (b *baseline) run(ctx context.Context, job string, args [][2]any, warmup, iterations int) (*baselineRun, error) {
	sp := b.spec()
	sp["initial_step"], sp["arguments"], sp["warmup"], sp["iterations"] = jobs[job], args, warmup, iterations
	spec, err := json.Marshal(sp)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, python.Interpreter, filepath.Join(b.dir, "baseline.py"))
	cmd.Stdin = bytes.NewReader(spec)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("baseline %s: %w: %s", job, err, strings.TrimSpace(stderr.String()))
	}
	var out baselineRun
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		return nil, fmt.Errorf("baseline %s: bad output: %w", job, err)
	}
	if len(out.TimingsMS) != iterations {
		return nil, fmt.Errorf("baseline %s: want %d timings, got %d", job, iterations, len(out.TimingsMS))
	}
	return &out, nil
}
