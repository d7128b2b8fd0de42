package main

import (
	"context"
	"embed"
	"fmt"
	"io/fs"

	"github.com/jobx/jobx/internal/handlersync"
	"github.com/jobx/jobx/kvmodel"
	"github.com/jobx/jobx/processors"
)

// The benchmark workflow.
const (
	workflowName = "bench"
	trivialJob   = "trivial"      // step echo: leaf mapper -> default combiner -> reducer, both reuse: handler
	trivialFork  = "trivial_fork" // step echo_fork: the same handlers without reuse: a fresh process per invocation
	wordcountJob = "wordcount"    // step wordcount branches to step count, one child per document
)

//go:embed handlers/*.py
var handlerFiles embed.FS

// steps are the workflow's steps, as the baseline driver also takes them.
var steps = map[string]stepDef{
	"echo":      {Map: "map_echo", Reduce: "reduce_sum_warm"},
	"echo_fork": {Map: "map_echo_fork", Reduce: "reduce_sum_fork"},
	"wordcount": {Map: "map_split_docs", Reduce: "reduce_sum"},
	"count":     {Map: "map_count_words", Reduce: "reduce_sum"},
}

var jobs = map[string]string{trivialJob: "echo", trivialFork: "echo_fork", wordcountJob: "wordcount"}

type stepDef struct {
	Map     string `json:"map"`
	Combine string `json:"combine"`
	Reduce  string `json:"reduce"`
}

// handlerSource is one embedded handler file.
type handlerSource struct {
	Name, File string
	Src        []byte
	Meta       *processors.Meta
}

// handlers returns the embedded handlers with their parsed headers.
func handlers() ([]handlerSource, error) {
	ents, err := fs.ReadDir(handlerFiles, "handlers")
	if err != nil {
		return nil, err
	}
	var out []handlerSource
	for _, e := range ents {
		src, err := handlerFiles.ReadFile("handlers/" + e.Name())
		if err != nil {
			return nil, err
		}
		name, err := processors.HandlerName(e.Name())
		if err != nil {
			return nil, err
		}
		meta, err := processors.ParseHeader(e.Name(), src)
		if err != nil {
			return nil, err
		}
		out = append(out, handlerSource{Name: name, File: e.Name(), Src: src, Meta: meta})
	}
	return out, nil
}

// loadWorkflow writes the benchmark workflow's entities, as handler sync
// and `jobx apply` would.
func loadWorkflow(ctx context.Context, store *kvmodel.Store) error {
	if err := store.Create(ctx, &kvmodel.Workflow{Name: workflowName, Description: "jobx benchmark"}); err != nil {
		return err
	}
	hs, err := handlers()
	if err != nil {
		return err
	}
	for _, h := range hs {
		proc, ok := processors.ForFile(h.File, h.Src)
		if !ok {
			return fmt.Errorf("no processor for %s", h.File)
		}
		if err := proc.Check(ctx, h.File, h.Src); err != nil {
			return fmt.Errorf("check %s: %w", h.File, err)
		}
		m := h.Meta
		e := &kvmodel.Handler{
			Name: h.Name, WorkflowName: workflowName, Description: m.Description, SourceType: proc.Name(),
			SourceCode: string(h.Src), Version: processors.Version(h.Src), HandlerType: m.HandlerType,
			RequiredCapability: m.RequiredCapability,
			Options:            handlersync.HandlerOptions(h.File, m),
		}
		if err := store.Create(ctx, e); err != nil {
			return err
		}
	}
	for name, s := range steps {
		if err := store.Create(ctx, &kvmodel.Step{Name: name, WorkflowName: workflowName, Description: "bench step " + name,
			MapHandlerName: s.Map, CombineHandlerName: s.Combine, ReduceHandlerName: s.Reduce}); err != nil {
			return err
		}
	}
	for name, step := range jobs {
		if err := store.Create(ctx, &kvmodel.Job{Name: name, WorkflowName: workflowName, Description: "bench job " + name, InitialStepName: step}); err != nil {
			return err
		}
	}
	return nil
}
