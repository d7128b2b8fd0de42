// Package handlersync loads a directory of handler files into a workflow:
// JobX's mr_kv_handler_store, done right.
//
// Sync validates every file before it writes anything (header, the
// language's own syntax check, handler name), so a directory with one bad
// file leaves etcd untouched and reports every problem at once. Then it
// creates new handlers, updates changed ones, skips unchanged ones and deletes
// orphans (handlers with no file) unless a step still uses them, and finally
// recomputes the workflow's handlers_state.
//
//	rep, err := handlersync.Sync(ctx, store, "dev", "handlers", handlersync.Options{})
//	for _, d := range rep.Decisions {
//		fmt.Println(d.Action, d.Handler, d.File)
//	}
//
// Callers import the language processors they want recognised, usually with
// import _ "github.com/jobx/jobx/processors/all".
package handlersync

import (
	"cmp"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/hashicorp/go-multierror"
	"github.com/jobx/jobx/kvmodel"
	"github.com/jobx/jobx/processors"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Action is what Sync does (or, in a dry run, would do) to one handler.
type Action string

// Actions, in the words `jobx handler sync` prints.
const (
	Create Action = "create" // a file with no handler in etcd
	Update Action = "update" // a file whose version differs (or --force)
	Skip   Action = "skip"   // a file whose handler is up to date
	Delete Action = "delete" // a handler with no file that no step uses
	Keep   Action = "keep"   // a handler with no file that some step uses
)

// Decision is what happens to one handler, and why.
type Decision struct {
	Handler string `json:"handler"`
	Action  Action `json:"action"`
	Reason  string `json:"reason"`
	// File is the handler file, relative to the directory; empty for
	// orphans.
	File string `json:"file,omitempty"`
	// Type is the handler's handler_type after the sync (for a deleted
	// handler, the type it had).
	Type string `json:"handler_type"`
	// UsedBy lists, for a kept orphan, the steps that use it, as
	// "step (map)", "step (combine)" or "step (reduce)".
	UsedBy []string `json:"used_by,omitempty"`
}

// Report is the outcome of a Sync: one Decision per handler, in name order.
type Report struct {
	Workflow  string     `json:"workflow"`
	Dir       string     `json:"dir"`
	DryRun    bool       `json:"dry_run"`
	Decisions []Decision `json:"decisions"`
	// Warnings name skipped files (no processor for their extension) and
	// doubtful definitions (a step using a handler of the wrong type).
	Warnings []string `json:"warnings,omitempty"`
	// HandlersState is the workflow's handlers_state after the sync (in a
	// dry run, what it would be).
	HandlersState string `json:"handlers_state"`
}

// Count returns how many decisions have the given action.
func (r *Report) Count(a Action) int {
	n := 0
	for _, d := range r.Decisions {
		if d.Action == a {
			n++
		}
	}
	return n
}

// Changed reports whether the sync wrote (or would write) any handler.
func (r *Report) Changed() bool {
	return r.Count(Create)+r.Count(Update)+r.Count(Delete) > 0
}

// Options tune a Sync.
type Options struct {
	// DryRun computes the same report and writes nothing.
	DryRun bool
	// Force updates every handler that has a file, changed or not.
	Force bool
	// Log receives one line per decision; nil means slog.Default().
	Log *slog.Logger
}

// loaded is one validated handler file.
type loaded struct {
	file    processors.File
	handler *kvmodel.Handler
}

// Sync makes the handlers of workflow match the handler files under dir.
// It fails, writing nothing, if the workflow does not exist (a dry run only
// warns) or any file is
// bad; the error then lists every bad file with its line (it is a
// *multierror.Error). An error after the validation (etcd unreachable, a
// concurrent change) may leave some handlers written; running Sync again
// converges.
func Sync(ctx context.Context, store *kvmodel.Store, workflow, dir string, opts Options) (*Report, error) {
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	log = log.With("workflow", workflow)
	if err := kvmodel.ValidateTopicName("workflow name", workflow); err != nil {
		return nil, err
	}
	rep := &Report{Workflow: workflow, Dir: dir, DryRun: opts.DryRun}
	wf := &kvmodel.Workflow{Name: workflow}
	if err := store.Get(ctx, wf); err != nil {
		switch {
		case !errors.Is(err, kvmodel.ErrNotFound):
			return nil, err
		case !opts.DryRun:
			return nil, fmt.Errorf("workflow %q does not exist (create it first): %w", workflow, kvmodel.ErrNotFound)
		}
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("workflow %s does not exist yet", workflow))
	}
	if st, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("handler directory: %w", err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("handler directory %s: not a directory", dir)
	}

	files, warnings, discoverErr := processors.Discover(dir)
	if discoverErr != nil && files == nil && warnings == nil {
		return nil, discoverErr
	}
	for _, w := range warnings {
		rep.Warnings = append(rep.Warnings, w.String())
	}
	var errs *multierror.Error
	if discoverErr != nil {
		errs = multierror.Append(errs, discoverErr)
	}
	want, err := loadAll(ctx, workflow, files)
	errs = multierror.Append(errs, err)
	if err := errs.ErrorOrNil(); err != nil {
		errs.ErrorFormat = listErrors
		return nil, fmt.Errorf("handlers in %s (nothing was written): %w", dir, errs)
	}

	existing, err := kvmodel.List[kvmodel.Handler](ctx, store, workflow)
	if err != nil {
		return nil, err
	}
	steps, err := kvmodel.List[kvmodel.Step](ctx, store, workflow)
	if err != nil {
		return nil, err
	}
	have := map[string]*kvmodel.Handler{}
	for _, h := range existing {
		have[h.Name] = h
	}
	usedBy, stepsRev := stepUses(steps)

	for _, l := range want {
		h, old := l.handler, have[l.handler.Name]
		d := Decision{Handler: h.Name, File: l.file.RelPath, Type: h.HandlerType}
		switch {
		case old == nil:
			d.Action, d.Reason = Create, "new"
		case old.Version != h.Version:
			d.Action, d.Reason = Update, fmt.Sprintf("version %s -> %s", short(old.Version), short(h.Version))
		case old.SourceType != h.SourceType || old.Options.File != h.Options.File:
			d.Action, d.Reason = Update, fmt.Sprintf("file %s -> %s", orNone(old.Options.File), h.Options.File)
		case opts.Force:
			d.Action, d.Reason = Update, "forced"
		default:
			d.Action, d.Reason = Skip, "unchanged"
		}
		rep.Decisions = append(rep.Decisions, d)
	}
	wanted := map[string]bool{}
	for _, l := range want {
		wanted[l.handler.Name] = true
	}
	for _, h := range existing {
		if wanted[h.Name] {
			continue
		}
		d := Decision{Handler: h.Name, Type: h.HandlerType, File: h.Options.File}
		if uses := usedBy[h.Name]; len(uses) > 0 {
			d.Action, d.UsedBy = Keep, uses
			d.Reason = "no file, but used by " + strings.Join(uses, ", ")
		} else {
			d.Action, d.Reason = Delete, "no file and no step uses it"
		}
		rep.Decisions = append(rep.Decisions, d)
	}
	sort.Slice(rep.Decisions, func(i, j int) bool { return rep.Decisions[i].Handler < rep.Decisions[j].Handler })
	rep.Warnings = append(rep.Warnings, typeWarnings(steps, want, have)...)

	for _, d := range rep.Decisions {
		log.Info("handler "+string(d.Action), "handler", d.Handler, "file", d.File, "reason", d.Reason, "dry_run", opts.DryRun)
	}
	if opts.DryRun {
		var versions []string
		for _, l := range want {
			versions = append(versions, l.handler.Version)
		}
		for _, d := range rep.Decisions {
			if d.Action == Keep {
				versions = append(versions, have[d.Handler].Version)
			}
		}
		rep.HandlersState = HandlersState(versions)
		return rep, nil
	}

	byName := map[string]*kvmodel.Handler{}
	for _, l := range want {
		byName[l.handler.Name] = l.handler
	}
	for _, d := range rep.Decisions {
		var err error
		switch d.Action {
		case Create:
			err = store.Create(ctx, byName[d.Handler])
		case Update:
			err = store.UpdateCAS(ctx, withRevisionOf(byName[d.Handler], have[d.Handler]))
		case Delete:
			err = deleteOrphan(ctx, store, have[d.Handler], workflow, stepsRev)
		}
		if err != nil {
			return rep, fmt.Errorf("%s handler %s: %w", d.Action, d.Handler, err)
		}
	}
	rep.HandlersState, err = UpdateHandlersState(ctx, store, workflow)
	return rep, err
}

// withRevisionOf returns h's definition carrying the revision old was read
// at, so that UpdateCAS fails if the handler changed since the listing.
func withRevisionOf(h, old *kvmodel.Handler) *kvmodel.Handler {
	u := *old
	u.Description, u.ArgumentSpec = h.Description, h.ArgumentSpec
	u.SourceType, u.SourceCode, u.Version = h.SourceType, h.SourceCode, h.Version
	u.HandlerType, u.RequiredCapability, u.Options = h.HandlerType, h.RequiredCapability, h.Options
	return &u
}

// deleteOrphan deletes h if it is unchanged since it was listed and no step
// of the workflow changed since stepsRev (a step created meanwhile might use
// it).
func deleteOrphan(ctx context.Context, store *kvmodel.Store, h *kvmodel.Handler, workflow string, stepsRev int64) error {
	key := kvmodel.Key(h)
	stepPrefix := kvmodel.EntityRoot + "step/" + workflow + "/"
	resp, err := store.Commit(ctx, []clientv3.Cmp{
		clientv3.Compare(clientv3.ModRevision(key), "=", h.Revision()),
		clientv3.Compare(clientv3.ModRevision(stepPrefix), "<", stepsRev+1).WithPrefix(),
	}, nil, []kvmodel.Op{{Key: key, Delete: true}})
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		return fmt.Errorf("the handler or the workflow's steps changed during the sync (run it again): %w", kvmodel.ErrConflict)
	}
	return nil
}

// loadAll reads, parses and checks every file, in parallel, and returns the
// handlers in name order plus every problem found.
func loadAll(ctx context.Context, workflow string, files []processors.File) ([]loaded, error) {
	out := make([]loaded, len(files))
	errs := make([]error, len(files))
	sem := make(chan struct{}, max(2, runtime.GOMAXPROCS(0)))
	var wg sync.WaitGroup
	for i, f := range files {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out[i].file = f
			out[i].handler, errs[i] = load(ctx, workflow, f)
		}()
	}
	wg.Wait()
	var merr *multierror.Error
	for _, err := range errs {
		if err != nil {
			merr = multierror.Append(merr, err)
		}
	}
	if merr != nil {
		return nil, merr
	}
	return out, nil
}

// load validates one handler file and returns its handler entity. Every
// error names the file (and the line, when known).
func load(ctx context.Context, workflow string, f processors.File) (*kvmodel.Handler, error) {
	src, err := os.ReadFile(f.Path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.RelPath, err)
	}
	var errs *multierror.Error
	if err := kvmodel.ValidateName("handler name", f.Name); err != nil {
		errs = multierror.Append(errs, fmt.Errorf("%s: %w", f.RelPath, err))
	}
	meta, err := processors.ParseHeader(f.RelPath, src)
	if err != nil {
		errs = multierror.Append(errs, err)
	} else if meta.RequiredCapability != kvmodel.CapabilityNone {
		if err := kvmodel.ValidateTopicPair(workflow, meta.RequiredCapability); err != nil {
			errs = multierror.Append(errs, fmt.Errorf("%s: required_capability: %w", f.RelPath, err))
		}
	}
	if err := f.Processor.Check(ctx, f.RelPath, src); err != nil {
		if !strings.Contains(err.Error(), f.RelPath) {
			err = fmt.Errorf("%s: %w", f.RelPath, err)
		}
		errs = multierror.Append(errs, err)
	}
	if err := errs.ErrorOrNil(); err != nil {
		return nil, err
	}
	return &kvmodel.Handler{
		Name:               f.Name,
		WorkflowName:       workflow,
		Description:        meta.Description,
		ArgumentSpec:       ArgumentSpec(meta),
		SourceType:         f.Processor.Name(),
		SourceCode:         string(src),
		Version:            processors.Version(src),
		HandlerType:        meta.HandlerType,
		RequiredCapability: cmp.Or(meta.RequiredCapability, kvmodel.CapabilityNone),
		Options:            HandlerOptions(f.RelPath, meta),
	}, nil
}

// ArgumentSpec returns JobX's argument_spec, [[name, type], ...], for a
// parsed header: the header's own, or [["arguments", "list"]] for a mapper
// and [["results", "list"]] otherwise. A null type is a JSON null.
func ArgumentSpec(meta *processors.Meta) [][]any {
	if len(meta.ArgumentSpec) == 0 {
		return [][]any{{processors.ArgumentName(meta.HandlerType), "list"}}
	}
	spec := make([][]any, len(meta.ArgumentSpec))
	for i, a := range meta.ArgumentSpec {
		var typ any
		if a.Type != "" {
			typ = a.Type
		}
		spec[i] = []any{a.Name, typ}
	}
	return spec
}

// HandlerOptions returns jobx's handler options for a parsed header of the
// file at relPath.
func HandlerOptions(relPath string, meta *processors.Meta) kvmodel.HandlerOptions {
	o := kvmodel.HandlerOptions{
		File:      relPath,
		Memory:    meta.Memory,
		CPU:       meta.CPU,
		Pids:      meta.Pids,
		Network:   meta.Network,
		MaxOutput: meta.MaxOutput,
		Scratch:   meta.Scratch,
		Retries:   meta.Retries.Count,
		Image:     meta.Image,
		Reuse:     meta.Reuse,
	}
	if meta.Timeout > 0 {
		o.Timeout = meta.Timeout.String()
	}
	if meta.Retries.Backoff > 0 {
		o.RetryBackoff = meta.Retries.Backoff.String()
	}
	return o
}

// stepUses maps each handler name to the steps that use it, and returns the
// highest revision among the steps.
func stepUses(steps []*kvmodel.Step) (map[string][]string, int64) {
	uses := map[string][]string{}
	var rev int64
	for _, s := range steps {
		rev = max(rev, s.Revision())
		for r, name := range s.Roles() {
			if name != "" {
				uses[name] = append(uses[name], fmt.Sprintf("%s (%s)", s.Name, r.Name))
			}
		}
	}
	return uses, rev
}

// typeWarnings flags steps that will use a handler of the wrong type.
func typeWarnings(steps []*kvmodel.Step, want []loaded, have map[string]*kvmodel.Handler) []string {
	handlers := make(map[string]*kvmodel.Handler, len(have)+len(want))
	maps.Copy(handlers, have)
	for _, l := range want {
		handlers[l.handler.Name] = l.handler
	}
	var out []string
	for _, s := range steps {
		for r, name := range s.Roles() {
			if h, ok := handlers[name]; ok {
				if err := s.CheckRole(r, h); err != nil {
					out = append(out, err.Error())
				}
			}
		}
	}
	return out
}

// HandlersState returns JobX's handlers_state for a set of handler
// versions: the hex SHA-1 of the sorted versions joined with ",".
func HandlersState(versions []string) string {
	v := slices.Clone(versions)
	slices.Sort(v)
	sum := sha1.Sum([]byte(strings.Join(v, ",")))
	return hex.EncodeToString(sum[:])
}

// UpdateHandlersState recomputes the workflow's handlers_state from its
// handlers and stores it with a compare-and-swap, retrying when the workflow
// or its handlers change meanwhile. It returns the new state. Anything that
// creates, updates or deletes handlers should call it afterwards.
func UpdateHandlersState(ctx context.Context, store *kvmodel.Store, workflow string) (string, error) {
	const attempts = 5
	for i := 0; ; i++ {
		wf := &kvmodel.Workflow{Name: workflow}
		if err := store.Get(ctx, wf); err != nil {
			return "", err
		}
		hs, err := kvmodel.List[kvmodel.Handler](ctx, store, workflow)
		if err != nil {
			return "", err
		}
		versions := make([]string, len(hs))
		for j, h := range hs {
			versions[j] = h.Version
		}
		state := HandlersState(versions)
		if wf.HandlersState == state {
			return state, nil
		}
		wf.HandlersState = state
		err = store.UpdateCAS(ctx, wf)
		if err == nil || !errors.Is(err, kvmodel.ErrConflict) || i+1 == attempts {
			if err != nil {
				return "", fmt.Errorf("update handlers_state of workflow %s: %w", workflow, err)
			}
			return state, nil
		}
	}
}

// listErrors formats a multierror as one problem per line.
func listErrors(errs []error) string {
	lines := make([]string, 0, len(errs))
	for _, err := range errs {
		var m *multierror.Error
		if errors.As(err, &m) {
			lines = append(lines, listErrors(m.Errors))
			continue
		}
		lines = append(lines, err.Error())
	}
	if len(lines) == 1 {
		return lines[0]
	}
	return fmt.Sprintf("%d problems:\n  %s", len(lines), strings.Join(lines, "\n  "))
}

func short(v string) string {
	if v == "" {
		return "(none)"
	}
	return v[:min(len(v), 8)]
}

func orNone(s string) string { return cmp.Or(s, "(none)") }
