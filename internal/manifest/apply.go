package manifest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/hashicorp/go-multierror"
	"github.com/jobx/jobx/internal/handlersync"
	"github.com/jobx/jobx/kvmodel"
)

// Change is what Apply did to one workflow, step or job.
type Change struct {
	Name   string             `json:"name"`
	Action handlersync.Action `json:"action"` // create, update or skip
}

// Result is the outcome of Apply.
type Result struct {
	Manifest *Manifest `json:"-"`
	Workflow Change    `json:"workflow"`
	// Handlers is the handler sync's report; nil when the directory has
	// no handler directory (the workflow's handlers are then left alone).
	Handlers *handlersync.Report `json:"handlers,omitempty"`
	Steps    []Change            `json:"steps"`
	Jobs     []Change            `json:"jobs"`
}

// Apply loads the workflow directory dir into etcd: it creates the
// workflow if missing (or updates its description), syncs dir's handler
// directory (see handlersync.Sync), then creates or updates the steps and
// jobs. Everything is validated before anything is written: the manifest,
// every handler file, and that every step's handlers and every job's
// initial step exist (in the directory or already in etcd) with the right
// types. Errors name the file, line and entry.
func Apply(ctx context.Context, store *kvmodel.Store, dir string, log *slog.Logger) (*Result, error) {
	if log == nil {
		log = slog.Default()
	}
	m, err := Load(dir)
	if err != nil {
		return nil, err
	}
	log = log.With("workflow", m.Workflow)
	res := &Result{Manifest: m, Workflow: Change{Name: m.Workflow}}
	if err := kvmodel.ValidateTopicName("workflow name", m.Workflow); err != nil {
		return nil, fmt.Errorf("%s: %w", m.Path, err)
	}

	handlersDir := filepath.Join(dir, m.Handlers)
	hasHandlers := false
	if st, err := os.Stat(handlersDir); err == nil && st.IsDir() {
		hasHandlers = true
	} else if m.Handlers != HandlersDir {
		return nil, fmt.Errorf("%s: handlers: %s is not a directory", m.Path, handlersDir)
	}

	// Validate everything before the first write.
	types := map[string]string{} // handler name -> type, after the sync
	if hasHandlers {
		rep, err := handlersync.Sync(ctx, store, m.Workflow, handlersDir, handlersync.Options{DryRun: true, Log: discard})
		if err != nil {
			return nil, err
		}
		for _, d := range rep.Decisions {
			if d.Action != handlersync.Delete {
				types[d.Handler] = d.Type
			}
		}
	} else {
		hs, err := kvmodel.List[kvmodel.Handler](ctx, store, m.Workflow)
		if err != nil {
			return nil, err
		}
		for _, h := range hs {
			types[h.Name] = h.HandlerType
		}
	}
	oldSteps, err := kvmodel.List[kvmodel.Step](ctx, store, m.Workflow)
	if err != nil {
		return nil, err
	}
	stepNames := map[string]bool{}
	for _, s := range oldSteps {
		stepNames[s.Name] = true
	}
	for _, s := range m.Steps {
		stepNames[s.Name] = true
	}
	if err := m.validate(types, stepNames, hasHandlers); err != nil {
		return nil, err
	}

	// Write.
	wf := &kvmodel.Workflow{Name: m.Workflow}
	switch err := store.Get(ctx, wf); {
	case errors.Is(err, kvmodel.ErrNotFound):
		wf.Description, wf.Notifications, wf.Defaults = m.Description, m.Notifications, m.Defaults
		if err := store.Create(ctx, wf); err != nil {
			return res, err
		}
		res.Workflow.Action = handlersync.Create
	case err != nil:
		return res, err
	case wf.Description != m.Description || !reflect.DeepEqual(wf.Notifications, m.Notifications) || !reflect.DeepEqual(wf.Defaults, m.Defaults):
		wf.Description, wf.Notifications, wf.Defaults = m.Description, m.Notifications, m.Defaults
		if err := store.UpdateCAS(ctx, wf); err != nil {
			return res, err
		}
		res.Workflow.Action = handlersync.Update
	default:
		res.Workflow.Action = handlersync.Skip
	}
	log.Info("workflow "+string(res.Workflow.Action), "dir", dir)

	if hasHandlers {
		if res.Handlers, err = handlersync.Sync(ctx, store, m.Workflow, handlersDir, handlersync.Options{Log: log}); err != nil {
			return res, err
		}
	}
	for _, s := range m.Steps {
		want := s.step(m.Workflow)
		a, err := upsert(ctx, store, want, func(old *kvmodel.Step) bool {
			return old.Description == want.Description && old.MapHandlerName == want.MapHandlerName &&
				old.CombineHandlerName == want.CombineHandlerName && old.ReduceHandlerName == want.ReduceHandlerName
		})
		if err != nil {
			return res, fmt.Errorf("%s:%d: step %s: %w", m.Path, s.Line, s.Name, err)
		}
		res.Steps = append(res.Steps, Change{Name: s.Name, Action: a})
		log.Info("step "+string(a), "step", s.Name)
	}
	for _, j := range m.Jobs {
		want := &kvmodel.Job{Name: j.Name, WorkflowName: m.Workflow, Description: j.Description, InitialStepName: j.InitialStep, ResultWriter: j.ResultWriter}
		if want.Description == "" {
			want.Description = j.Name
		}
		a, err := upsert(ctx, store, want, func(old *kvmodel.Job) bool {
			return old.Description == want.Description && old.InitialStepName == want.InitialStepName && reflect.DeepEqual(old.ResultWriter, want.ResultWriter)
		})
		if err != nil {
			return res, fmt.Errorf("%s:%d: job %s: %w", m.Path, j.Line, j.Name, err)
		}
		res.Jobs = append(res.Jobs, Change{Name: j.Name, Action: a})
		log.Info("job "+string(a), "job", j.Name)
	}

	// Handlers kept only because an old version of a step used them may be
	// free now; a second sync deletes them.
	if res.Handlers != nil && res.Handlers.Count(handlersync.Keep) > 0 {
		again, err := handlersync.Sync(ctx, store, m.Workflow, handlersDir, handlersync.Options{Log: log})
		if err != nil {
			return res, err
		}
		for i, d := range res.Handlers.Decisions {
			for _, d2 := range again.Decisions {
				if d2.Handler == d.Handler && d2.Action == handlersync.Delete {
					res.Handlers.Decisions[i].Action = handlersync.Delete
					res.Handlers.Decisions[i].Reason = "no file, and no step uses it after the steps were updated"
					res.Handlers.Decisions[i].UsedBy = nil
				}
			}
		}
		res.Handlers.HandlersState = again.HandlersState
	}
	return res, nil
}

// validate checks the manifest's names and references. types maps every
// handler that will exist to its type; steps holds every step that will
// exist.
func (m *Manifest) validate(types map[string]string, steps map[string]bool, hasHandlers bool) error {
	var errs *multierror.Error
	where := "in etcd"
	if hasHandlers {
		where = "in " + m.Handlers + "/ or in etcd"
	}
	fail := func(line int, format string, args ...any) {
		errs = multierror.Append(errs, fmt.Errorf("%s:%d: %s", m.Path, line, fmt.Sprintf(format, args...)))
	}
	for _, s := range m.Steps {
		if err := kvmodel.ValidateName("step name", s.Name); err != nil {
			fail(s.Line, "%v", err)
		}
		step := s.step(m.Workflow)
		for r, name := range step.Roles() {
			t, ok := types[name]
			switch {
			case name == "" && r.Optional:
			case name == "":
				fail(s.Line, "step %s: missing %q (a %s handler name)", s.Name, r.Name, r.HandlerType)
			case !ok:
				fail(s.Line, "step %s: %s handler %q does not exist %s", s.Name, r.Name, name, where)
			default:
				if err := step.CheckRole(r, &kvmodel.Handler{Name: name, HandlerType: t}); err != nil {
					fail(s.Line, "%v", err)
				}
			}
		}
		if s.Combine != "" && (s.Combine == s.Map || s.Combine == s.Reduce) {
			fail(s.Line, "step %s: the combiner must differ from the mapper and the reducer", s.Name)
		}
	}
	for _, j := range m.Jobs {
		if err := kvmodel.ValidateName("job name", j.Name); err != nil {
			fail(j.Line, "%v", err)
		}
		switch {
		case j.InitialStep == "":
			fail(j.Line, "job %s: missing \"initial_step\"", j.Name)
		case !steps[j.InitialStep]:
			fail(j.Line, "job %s: initial step %q does not exist in %s nor in etcd", j.Name, j.InitialStep, FileName)
		}
	}
	if err := errs.ErrorOrNil(); err != nil {
		errs.ErrorFormat = func(es []error) string {
			lines := make([]string, len(es))
			for i, e := range es {
				lines[i] = e.Error()
			}
			if len(lines) == 1 {
				return lines[0]
			}
			return fmt.Sprintf("%d problems (nothing was written):\n  %s", len(lines), strings.Join(lines, "\n  "))
		}
		return errs
	}
	return nil
}

// entity is a step or a job.
type entity[T any] interface {
	*T
	kvmodel.Entity
}

// upsert creates e, or updates it when same reports a difference.
func upsert[T any, P entity[T]](ctx context.Context, store *kvmodel.Store, e P, same func(old P) bool) (handlersync.Action, error) {
	// kvmodel sets identities and revisions only through Decode.
	op := P(new(T))
	if err := kvmodel.Decode(op, kvmodel.Key(e), []byte("{}"), 0); err != nil {
		return "", err
	}
	switch err := store.Get(ctx, op); {
	case errors.Is(err, kvmodel.ErrNotFound):
		return handlersync.Create, store.Create(ctx, e)
	case err != nil:
		return "", err
	case same(op):
		return handlersync.Skip, nil
	default:
		if err := kvmodel.Decode(e, kvmodel.Key(e), mustEncode(e), op.Revision()); err != nil {
			return "", err
		}
		return handlersync.Update, store.UpdateCAS(ctx, e)
	}
}

func mustEncode(e kvmodel.Entity) []byte {
	v, err := kvmodel.Encode(e)
	if err != nil {
		panic(err)
	}
	return v
}

var discard = slog.New(slog.DiscardHandler)
