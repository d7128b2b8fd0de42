package runner

import (
	"fmt"
	"path/filepath"
	"sync"

	"github.com/jobx/jobx/kvmodel"
	"github.com/jobx/jobx/processors"
)

// programs installs each handler version once and remembers how to run it.
// Handler versions are immutable, so a changed handler installs anew and
// the old program is simply no longer asked for.
type programs struct {
	dir string
	m   sync.Map // workflow/name@version -> processors.Program
}

func (p *programs) get(h *kvmodel.Handler) (processors.Program, error) {
	version := h.ContentVersion()
	key := h.WorkflowName + "/" + h.Name + "@" + version
	if v, ok := p.m.Load(key); ok {
		return v.(processors.Program), nil
	}
	proc, ok := processors.ByName(h.SourceType)
	if !ok {
		return processors.Program{}, fmt.Errorf("handler %s: no processor for source type %q", h.Name, h.SourceType)
	}
	prog, err := proc.Install(filepath.Join(p.dir, h.WorkflowName), processors.Handler{
		Workflow: h.WorkflowName, Name: h.Name, Type: h.HandlerType,
		SourceType: h.SourceType, Source: h.SourceCode, Version: version,
	})
	if err != nil {
		return processors.Program{}, fmt.Errorf("install handler %s: %w", h.Name, err)
	}
	p.m.Store(key, prog)
	return prog, nil
}
