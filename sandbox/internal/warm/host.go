package warm

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jobx/jobx/sandbox"
	"github.com/jobx/jobx/sandbox/internal/pool"
)

// Paths inside a box, the same in every isolating sandbox, so a handler
// sees one layout whichever sandbox runs it.
const (
	LibDir      = "/jobx/lib"      // jobx-agent and the Python runtime (read-only)
	HandlersDir = "/jobx/handlers" // the workflow's installed handlers (read-only)
	WorkingDir  = "/working"       // /working/<workflow>: the workflow's shared files
)

// Host knows the host paths that boxes mount: the runner's handler
// directory, each workflow's shared directory and the runner's services
// socket's directory. It is safe for concurrent use.
type Host struct {
	// Handlers is the runner's handler directory (<Handlers>/<workflow>).
	Handlers string
	// Shared returns a workflow's shared directory ("" or nil: the one
	// its RunSpecs name, if any).
	Shared func(workflow string) string

	mu       sync.Mutex // guards services and shared
	services string
	shared   map[string]string
}

// Learn records the host paths a RunSpec names: the services socket's
// directory and the workflow's shared directory.
func (h *Host) Learn(spec *sandbox.RunSpec) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if spec.ServicesSocket != "" && h.services == "" {
		h.services = filepath.Dir(spec.ServicesSocket)
	}
	if spec.SharedDir != "" {
		if h.shared == nil {
			h.shared = map[string]string{}
		}
		h.shared[spec.Workflow] = spec.SharedDir
	}
}

// SharedDir returns workflow wf's shared directory on the host ("": none).
func (h *Host) SharedDir(wf string) string {
	if h.Shared != nil {
		if d := h.Shared(wf); d != "" {
			return d
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.shared[wf]
}

// ServicesDir returns the directory of the runner's services socket, which
// boxes mount at the same path ("" until a RunSpec named it).
func (h *Host) ServicesDir() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.services
}

// Rewriter maps the host paths of workflow wf's handlers and shared files
// to their paths in a box.
func (h *Host) Rewriter(wf string) func(string) string {
	pairs := []string{filepath.Join(h.Handlers, wf), HandlersDir}
	if shared := h.SharedDir(wf); shared != "" {
		pairs = append(pairs, shared, WorkingDir+"/"+wf)
	}
	return strings.NewReplacer(pairs...).Replace
}

// Processor names the processor of a run: the one its spec names, else the
// one its program's form gives away.
func Processor(spec *sandbox.RunSpec) string {
	switch {
	case spec.Processor != "":
		return spec.Processor
	case spec.Program.Warm != nil && spec.Program.Warm.Kind == "python":
		return "python"
	case len(spec.Program.Argv) > 0 && spec.Program.Argv[0] == "node":
		return "node"
	case len(spec.Program.Argv) > 0 && spec.Program.Argv[0] == "/bin/sh":
		return "sh"
	}
	return "exec"
}

// WithDefaults returns l with its zero memory, CPU, pids and scratch
// limits taken from d.
func WithDefaults(l, d sandbox.Limits) sandbox.Limits {
	if l.Memory <= 0 {
		l.Memory = d.Memory
	}
	if l.CPU <= 0 {
		l.CPU = d.CPU
	}
	if l.Pids <= 0 {
		l.Pids = d.Pids
	}
	if l.Scratch <= 0 {
		l.Scratch = d.Scratch
	}
	return l
}

// Network returns a run's network: its handler's, else its workflow's
// default (workflowNetwork may be nil), else "none".
func Network(spec *sandbox.RunSpec, workflowNetwork func(string) string) string {
	if spec.Limits.Network != "" {
		return spec.Limits.Network
	}
	if workflowNetwork != nil {
		if n := workflowNetwork(spec.Workflow); n != "" {
			return n
		}
	}
	return "none"
}

// Runner is a backend's box: a pool.Box that runs invocations (a type
// that embeds *Box).
type Runner[K comparable] interface {
	pool.Box[K]
	Run(ctx context.Context, r Run) (*sandbox.Outcome, func() bool, error)
}

// RunIn runs spec on a warm box of key k from p, starting one if none is
// idle, bounded by spec's timeout (else timeout). prepare returns the
// run's settings for the box it got. A box that died while idle is
// replaced once. The pool settles the box in the background after the run.
func RunIn[K comparable, B Runner[K]](ctx context.Context, p *pool.Pool[K, B], k K, spec *sandbox.RunSpec, timeout time.Duration, h *Host, prepare func(b B, r *Run)) (*sandbox.Outcome, error) {
	if len(spec.Program.Argv) == 0 {
		return nil, fmt.Errorf("handler %s: no program to run", spec.Handler)
	}
	if spec.Limits.Timeout > 0 {
		timeout = spec.Limits.Timeout
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	h.Learn(spec)
	rewrite := h.Rewriter(spec.Workflow)
	handler := ""
	if spec.Reuse != "" && spec.Program.Warm != nil {
		handler = Handler(rewrite(spec.Program.Warm.HandlerPath), spec.HandlerType)
	}
	for attempt := 0; ; attempt++ {
		b, fresh, err := p.Acquire(ctx, k, spec.Reuse, handler)
		if err != nil {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return &sandbox.Outcome{TimedOut: true, ExitCode: -1, StderrTail: "jobx: no sandbox before the timeout: " + err.Error()}, nil
			}
			return nil, fmt.Errorf("sandbox for handler %s: %w", spec.Handler, err)
		}
		r := Run{Spec: spec, Rewrite: rewrite}
		if h.SharedDir(spec.Workflow) != "" {
			r.Env = append(r.Env, "JOBX_SHARED_DIR="+WorkingDir+"/"+spec.Workflow)
		}
		if prepare != nil {
			prepare(b, &r)
		}
		out, settle, err := b.Run(ctx, r)
		p.Settle(b, settle)
		if err != nil && errors.Is(err, ErrGone) && !fresh && attempt == 0 && ctx.Err() == nil {
			// A warm box died while idle: try a fresh one.
			continue
		}
		if out != nil {
			out.Warm = !fresh
		}
		return out, err
	}
}
