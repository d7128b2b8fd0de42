package services

import (
	"fmt"
	"sync"

	"github.com/hashicorp/go-multierror"
	"github.com/jobx/jobx/sharedfs"
)

// Filesystems opens each workflow's shared filesystem once: the backend
// of the workflow's own config file (<configDir>/<wf>.yaml|.json) if
// there is one, else the default. It is safe for concurrent use; its owner
// calls Close.
type Filesystems struct {
	def       sharedfs.Config
	configDir string

	mu   sync.Mutex // guards fss and dirs
	fss  map[string]*sharedfs.FS
	dirs map[string]string // host directory of each opened local root
}

// NewFilesystems returns the filesystems of the workflows, each configured
// by its file in configDir ("" for none) or else by def.
func NewFilesystems(def sharedfs.Config, configDir string) *Filesystems {
	return &Filesystems{def: def, configDir: configDir, fss: map[string]*sharedfs.FS{}, dirs: map[string]string{}}
}

// Config returns the backend config of workflow wf.
func (f *Filesystems) Config(wf string) (sharedfs.Config, error) {
	return sharedfs.ConfigFor(f.configDir, f.def, wf)
}

// Open returns workflow wf's filesystem, or nil when none is configured.
func (f *Filesystems) Open(wf string) (*sharedfs.FS, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fsys, ok := f.fss[wf]; ok {
		return fsys, nil
	}
	cfg, err := f.Config(wf)
	if err != nil || cfg.Backend == "" {
		return nil, err
	}
	fsys, err := sharedfs.Open(cfg, wf)
	if err != nil {
		return nil, fmt.Errorf("filesystem of workflow %s: %w", wf, err)
	}
	f.fss[wf] = fsys
	if dir, ok := sharedfs.HostDir(cfg, wf); ok {
		f.dirs[wf] = dir
	}
	return fsys, nil
}

// HostDir returns the host directory of an opened workflow root whose
// backend is local, "" otherwise.
func (f *Filesystems) HostDir(wf string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dirs[wf]
}

// Close closes every opened filesystem; they reopen on the next Open.
func (f *Filesystems) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var errs error
	for wf, fsys := range f.fss {
		if err := fsys.Close(); err != nil {
			errs = multierror.Append(errs, err)
		}
		delete(f.fss, wf)
	}
	return errs
}
