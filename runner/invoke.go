package runner

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jobx/jobx/kvmodel"
	"github.com/jobx/jobx/processors"
	"github.com/jobx/jobx/runner/scope"
	"github.com/jobx/jobx/runner/services"
	"github.com/jobx/jobx/sandbox"
)

// invoke runs handler h on stdin, feeding stdout lines to line. It retries
// the handler's own failures as its header asks. A Failure means the
// handler failed; an error means the sandbox did.
func (r *Runner) invoke(ctx context.Context, t *task, h *kvmodel.Handler, stdin []byte, out collector) (*kvmodel.Failure, error) {
	prog, err := r.progs.get(h)
	if err != nil {
		return &kvmodel.Failure{Kind: kvmodel.FailureDefinition, Handler: h.Name, Message: err.Error()}, nil
	}
	limits, err := r.limits(ctx, h)
	if err != nil {
		return &kvmodel.Failure{Kind: kvmodel.FailureDefinition, Handler: h.Name, Message: err.Error()}, nil
	}
	vars, err := r.scopes.Vars(ctx, h)
	if err != nil {
		return &kvmodel.Failure{Kind: kvmodel.FailureScope, Handler: h.Name, Message: err.Error()}, nil
	}
	session := t.inv.ID
	if t.inv.Direction == kvmodel.DirectionReduce {
		session = t.inv.Parent()
	}
	senv, err := scope.Env(vars)
	if err != nil {
		return &kvmodel.Failure{Kind: kvmodel.FailureScope, Handler: h.Name, Message: err.Error()}, nil
	}
	token, revoke := r.svc.Issue(&services.Grant{Workflow: h.WorkflowName, Session: session, Writable: t.inv.Direction == kvmodel.DirectionMap,
		Request: t.req.ID, Handler: h.Name, Invocation: t.inv.ID})
	defer revoke()
	env := append(r.env(t, h), senv...)
	env = append(env, "JOBX_SERVICES=unix:"+r.svc.Socket(), "JOBX_SESSION_URL=unix:"+r.svc.Socket(), "JOBX_TOKEN="+token)
	fsys, err := r.fss.Open(h.WorkflowName)
	if err != nil {
		return &kvmodel.Failure{Kind: kvmodel.FailureFilesystem, Handler: h.Name, Message: err.Error()}, nil
	}
	if fsys != nil {
		env = append(env, "JOBX_FS=1")
	}
	shared := r.fss.HostDir(h.WorkflowName)
	if shared != "" {
		env = append(env, "JOBX_FS_ROOT="+shared)
	}
	backoff, _ := time.ParseDuration(h.Options.RetryBackoff)
	reuse := ""
	switch h.Options.Reuse {
	case processors.ReuseRequest:
		reuse = "request " + t.req.ID
	case processors.ReuseHandler:
		// The zygote's key also holds the installed program's path, which
		// names the handler's version.
		reuse = "handler " + h.WorkflowName + "/" + h.Name
	}
	log := t.log.With("handler", h.Name)
	for attempt := 0; ; attempt++ {
		out.reset()
		if t.req.Keep {
			t.logs = &logTail{}
		}
		lw := &lineWriter{fn: out.line, max: kvmodel.MaxItemBytes}
		spec := &sandbox.RunSpec{
			Workflow: h.WorkflowName, Handler: h.Name, HandlerType: h.HandlerType, Invocation: t.inv.ID,
			Processor: h.SourceType, Program: prog, Env: env, Stdin: strings.NewReader(string(stdin)), Stdout: lw,
			Stderr: &logWriter{log: log, tail: t.logs, special: func(line string) bool { return r.handlerNotify(t, h, line) }}, Limits: limits, ServicesSocket: r.svc.Socket(), SharedDir: shared,
			Reuse: reuse,
		}
		outcome, err := r.run(ctx, spec)
		if err != nil {
			return nil, err
		}
		r.metrics.observe(h.WorkflowName, t.inv.StepName, h.Name, r.sandbox.Kind(), outcome.Warm, outcome.Duration)
		f := failureOf(h, outcome, lw.Close(), limits)
		if f == nil {
			return nil, nil
		}
		if attempt >= h.Options.Retries {
			f.Attempts = attempt + 1
			return f, nil
		}
		log.Info("handler failed; retrying as its header asks", "attempt", attempt+1, "of", h.Options.Retries+1, "err", f.Message)
		select {
		case <-time.After(backoff << attempt):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// run runs one handler on the sandbox, at most Concurrency at a time:
// the messages in flight beyond that are loading their data or recording
// their results meanwhile.
func (r *Runner) run(ctx context.Context, spec *sandbox.RunSpec) (*sandbox.Outcome, error) {
	select {
	case r.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-r.sem }()
	return r.sandbox.Run(ctx, spec)
}

// limits merges a handler's header limits over the runner's defaults.
// The handler's header wins, then the workflow's defaults, then the
// runner's.
func (r *Runner) limits(ctx context.Context, h *kvmodel.Handler) (sandbox.Limits, error) {
	l := sandbox.Limits{Timeout: r.opts.Timeout, MaxOutput: r.opts.MaxOutput, Scratch: r.opts.Scratch}
	layers := []*kvmodel.HandlerOptions{nil, &h.Options}
	if wf, err := r.catalog.Workflow(ctx, h.WorkflowName); err == nil {
		layers[0] = wf.Defaults
	}
	for _, o := range layers {
		if o == nil {
			continue
		}
		if o.Timeout != "" {
			d, err := time.ParseDuration(o.Timeout)
			if err != nil {
				return l, fmt.Errorf("handler %s: timeout %q: %w", h.Name, o.Timeout, err)
			}
			l.Timeout = d
		}
		if o.MaxOutput > 0 {
			l.MaxOutput = o.MaxOutput
		}
		if o.Memory > 0 {
			l.Memory = o.Memory
		}
		if o.Scratch > 0 {
			l.Scratch = o.Scratch
		}
		if o.CPU > 0 {
			l.CPU = o.CPU
		}
		if o.Pids > 0 {
			l.Pids = o.Pids
		}
		if o.Network != "" {
			l.Network = o.Network
		}
	}
	return l, nil
}

// env is a handler's environment: a minimal base plus its context.
func (r *Runner) env(t *task, h *kvmodel.Handler) []string {
	return []string{
		"PATH=/usr/local/bin:/usr/bin:/bin",
		"LANG=C.UTF-8",
		"PYTHONDONTWRITEBYTECODE=1",
		"JOBX_WORKFLOW=" + h.WorkflowName,
		"JOBX_JOB=" + t.req.JobName,
		"JOBX_REQUEST_ID=" + t.req.ID,
		"JOBX_INVOCATION_ID=" + t.inv.ID,
		"JOBX_DIRECTION=" + t.inv.Direction,
		"JOBX_STEP=" + t.inv.StepName,
		"JOBX_HANDLER=" + h.Name,
		"JOBX_HANDLER_TYPE=" + h.HandlerType,
	}
}
