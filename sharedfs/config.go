package sharedfs

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-multierror"
	"gopkg.in/yaml.v3"
)

// Backend names accepted in Config.Backend.
const (
	BackendLocal = "local"
	BackendTahoe = "tahoe"
)

// Config selects and configures the shared-filesystem backend of a
// deployment. It decodes from JSON and YAML:
//
//	{"backend": "local", "dir": "/var/lib/jobx/fs"}
//	{"backend": "tahoe", "gateway": "http://127.0.0.1:3456", "dircap": "URI:DIR2:...", "timeout": "30s"}
type Config struct {
	Backend string `json:"backend" yaml:"backend"`
	// Dir is the host directory of the local backend (absolute).
	Dir string `json:"dir,omitempty" yaml:"dir,omitempty"`
	// Gateway is the web-API URL of the Tahoe-LAFS node (tahoe backend).
	Gateway string `json:"gateway,omitempty" yaml:"gateway,omitempty"`
	// Dircap is the write cap of the Tahoe directory holding "/working".
	Dircap string `json:"dircap,omitempty" yaml:"dircap,omitempty"`
	// Timeout bounds each Tahoe request (default DefaultTahoeTimeout).
	Timeout Duration `json:"timeout,omitzero" yaml:"timeout,omitempty"`
}

// Duration is a time.Duration written as "30s" in JSON and YAML.
type Duration time.Duration

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalText formats d as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// ParseConfig decodes a YAML or JSON Config, refusing unknown keys, and
// validates it.
func ParseConfig(data []byte) (Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("sharedfs: config: %w", err)
	}
	return c, c.Validate()
}

// Validate reports every problem of c, each naming its field.
func (c Config) Validate() error {
	var errs *multierror.Error
	add := func(format string, args ...any) {
		errs = multierror.Append(errs, fmt.Errorf(format, args...))
	}
	switch c.Backend {
	case BackendLocal:
		if c.Dir == "" || !filepath.IsAbs(c.Dir) {
			add("dir: want an absolute host directory for the local backend, got %q", c.Dir)
		}
		if c.Gateway != "" || c.Dircap != "" {
			add("gateway, dircap: only for the tahoe backend")
		}
	case BackendTahoe:
		if _, err := NewTahoe(c.Gateway, c.Dircap, nil); err != nil {
			add("gateway, dircap: %v", err)
		}
		if c.Dir != "" {
			add("dir: only for the local backend")
		}
	default:
		add("backend: want %q or %q, got %q", BackendLocal, BackendTahoe, c.Backend)
	}
	if c.Timeout < 0 {
		add("timeout: must not be negative")
	}
	if errs == nil {
		return nil
	}
	return fmt.Errorf("sharedfs: invalid config: %w", errs.ErrorOrNil())
}

// Open returns the shared filesystem of workflow on the backend cfg
// describes, creating the workflow root if missing. The caller must Close it.
func Open(cfg Config, workflow string) (*FS, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	switch cfg.Backend {
	case BackendLocal:
		return New(NewLocal(cfg.Dir), workflow)
	case BackendTahoe:
		t, err := NewTahoe(cfg.Gateway, cfg.Dircap, &http.Client{}, TahoeTimeout(time.Duration(cfg.Timeout)))
		if err != nil {
			return nil, err
		}
		return New(t, workflow)
	}
	return nil, errors.New("sharedfs: unreachable backend")
}

// HostDir returns the host directory of workflow's root for the local
// backend (to bind-mount into sandboxes), and false for other backends or
// an invalid workflow name. It does not create the directory; Open does.
func HostDir(cfg Config, workflow string) (string, bool) {
	if cfg.Backend != BackendLocal || cfg.Dir == "" || validWorkflow(workflow) != nil {
		return "", false
	}
	return NewLocal(cfg.Dir).HostPath(workflow), true
}

// ConfigFor returns the backend config of workflow wf: that of its own
// config file in configDir (<wf>.yaml, .yml or .json) when there is one,
// else def. Runners and the jobx fs command resolve a workflow's
// filesystem alike.
func ConfigFor(configDir string, def Config, wf string) (Config, error) {
	if configDir != "" {
		for _, ext := range []string{".yaml", ".yml", ".json"} {
			raw, err := os.ReadFile(filepath.Join(configDir, wf+ext))
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return Config{}, err
			}
			cfg, err := ParseConfig(raw)
			if err != nil {
				return Config{}, fmt.Errorf("filesystem of workflow %s (%s): %w", wf, wf+ext, err)
			}
			return cfg, nil
		}
	}
	return def, nil
}
