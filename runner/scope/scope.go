// Package scope is the runner side of JobX's scope factories: variables
// injected into handlers' environments, chosen by handler name, from a
// runner-side source so that secrets never sit in etcd.
//
//	f := scope.New(scope.Options{Dir: dir, TTL: time.Minute})
//	vars, err := f.Vars(ctx, h) // nil when the workflow has no factory
//	env, err := scope.Env(vars)
package scope

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jobx/jobx/kvmodel"
	"github.com/jobx/jobx/processors"
	"gopkg.in/yaml.v3"
)

// Factories finds and runs the scope factories of the workflows. For
// workflow wf it looks in its directory for:
//
//   - wf.yaml, wf.yml or wf.json: static variables,
//     {"all": {"NAME": "value"}, "handlers": {"map_deploy": {"TOKEN": "..."}}}
//   - wf (an executable, any language): run with the handler's name as its
//     argument and the handler's metadata as JSON on stdin; it prints a JSON
//     object of variables. Its answers are cached per handler version for
//     the scope TTL.
//
// A value keeps its JSON type (a number stays a number, as JobX's scope
// factories gave Python objects): Python and Node handlers get the typed
// values from JOBX_SCOPE_JSON, and every handler gets each one as an
// environment variable too, a string as it is and anything else as JSON.
//
// Vars is safe for concurrent use.
type Factories struct {
	dir string
	// command, with env, is the factory of the workflows that have none
	// in dir; nil: none.
	command, env []string
	ttl          time.Duration

	mu    sync.Mutex // guards cache
	cache map[string]scopeEntry
}

// Options configure Factories.
type Options struct {
	// Dir holds a file or an executable per workflow (see Factories);
	// "": none.
	Dir string
	// Command, run with Env added to the runner's environment, is the
	// factory of the workflows that have none in Dir; nil: none.
	Command, Env []string
	// TTL is how long a factory's answer is kept per handler version.
	TTL time.Duration
}

// New returns the factories o describes.
func New(o Options) *Factories {
	return &Factories{dir: o.Dir, command: o.Command, env: o.Env, ttl: o.TTL, cache: map[string]scopeEntry{}}
}

type scopeEntry struct {
	vars    map[string]any
	expires time.Time
}

type scopeFile struct {
	All      map[string]any            `json:"all" yaml:"all"`
	Handlers map[string]map[string]any `json:"handlers" yaml:"handlers"`
}

var scopeVarName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// reservedVar reports names a scope may not set: jobx's own and the ones
// the sandbox controls.
func reservedVar(name string) bool {
	switch name {
	case "PATH", "HOME", "TMPDIR", "LANG", "PWD", "NODE_PATH", "PYTHONPATH":
		return true
	}
	return strings.HasPrefix(name, "JOBX_")
}

// Vars returns the scope variables of handler h, nil when the workflow has
// no scope factory.
func (s *Factories) Vars(ctx context.Context, h *kvmodel.Handler) (map[string]any, error) {
	if s == nil || (s.dir == "" && s.command == nil) {
		return nil, nil
	}
	key := h.WorkflowName + "/" + h.Name + "@" + h.ContentVersion()
	s.mu.Lock()
	e, ok := s.cache[key]
	s.mu.Unlock()
	if ok && time.Now().Before(e.expires) {
		return e.vars, nil
	}
	vars, err := s.load(ctx, h)
	if err != nil {
		return nil, err
	}
	for name := range vars {
		if !scopeVarName.MatchString(name) || reservedVar(name) {
			return nil, fmt.Errorf("scope of workflow %s: variable name %q is not allowed (want [A-Za-z_][A-Za-z0-9_]*, not JOBX_* or PATH, HOME, ...)", h.WorkflowName, name)
		}
	}
	s.mu.Lock()
	s.cache[key] = scopeEntry{vars: vars, expires: time.Now().Add(s.ttl)}
	s.mu.Unlock()
	return vars, nil
}

func (s *Factories) load(ctx context.Context, h *kvmodel.Handler) (map[string]any, error) {
	if s.dir == "" {
		return s.runCommand(ctx, h)
	}
	base := filepath.Join(s.dir, h.WorkflowName)
	for _, ext := range []string{".yaml", ".yml", ".json"} {
		raw, err := os.ReadFile(base + ext)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("scope file: %w", err)
		}
		var f scopeFile
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		dec.KnownFields(true)
		if err := dec.Decode(&f); err != nil {
			return nil, fmt.Errorf("scope file %s: %w", base+ext, err)
		}
		out := map[string]any{}
		for k, v := range f.All {
			out[k] = v
		}
		for k, v := range f.Handlers[h.Name] {
			out[k] = v
		}
		// YAML may decode values JSON cannot carry (a map with non-string
		// keys): refuse them here, naming the file.
		if _, err := json.Marshal(out); err != nil {
			return nil, fmt.Errorf("scope file %s: a value is not JSON: %w", base+ext, err)
		}
		return out, nil
	}
	st, err := os.Stat(base)
	if errors.Is(err, os.ErrNotExist) {
		if s.command != nil {
			return s.runCommand(ctx, h)
		}
		return nil, nil
	}
	if err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		return nil, fmt.Errorf("scope factory %s: not an executable file", base)
	}
	return s.run(ctx, h, "scope factory "+base, []string{base, h.Name})
}

// runCommand runs the scope command (Options.Command) for handler h.
func (s *Factories) runCommand(ctx context.Context, h *kvmodel.Handler) (map[string]any, error) {
	argv := append(s.command[:len(s.command):len(s.command)], h.WorkflowName, h.Name)
	return s.run(ctx, h, "scope factory "+s.command[len(s.command)-1], argv)
}

// run runs a factory command (argv) for handler h, its metadata as JSON on
// stdin, and decodes the JSON object it prints; what names it in errors.
func (s *Factories) run(ctx context.Context, h *kvmodel.Handler, what string, argv []string) (map[string]any, error) {
	meta, _ := json.Marshal(map[string]any{
		"workflow": h.WorkflowName, "handler": h.Name, "handler_type": h.HandlerType, "version": h.ContentVersion(),
		"description": h.Description, "required_capability": h.RequiredCapability, "source_type": h.SourceType,
		"source_code": h.SourceCode, "argument_spec": h.ArgumentSpec,
	})
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), s.env...)
	cmd.Stdin = bytes.NewReader(meta)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s for handler %s: %v: %s", what, h.Name, err, strings.TrimSpace(stderr.String()))
	}
	vars := map[string]any{}
	if err := json.Unmarshal(out, &vars); err != nil {
		return nil, fmt.Errorf("%s for handler %s: want a JSON object: %w", what, h.Name, err)
	}
	return vars, nil
}

// Env renders vars as KEY=value entries (a string as it is, any
// other value as JSON), JOBX_SCOPE_VARS (their names) and JOBX_SCOPE_JSON
// (the values with their types).
func Env(vars map[string]any) ([]string, error) {
	if len(vars) == 0 {
		return nil, nil
	}
	names := make([]string, 0, len(vars))
	for k := range vars {
		names = append(names, k)
	}
	sort.Strings(names)
	env := make([]string, 0, len(names)+2)
	for _, k := range names {
		v, ok := vars[k].(string)
		if !ok {
			b, err := json.Marshal(vars[k])
			if err != nil {
				return nil, fmt.Errorf("scope variable %s: %w", k, err)
			}
			v = string(b)
		}
		if strings.IndexByte(v, 0) >= 0 {
			return nil, fmt.Errorf("scope variable %s holds a NUL byte, which no environment variable can", k)
		}
		env = append(env, k+"="+v)
	}
	typed, err := json.Marshal(vars)
	if err != nil {
		return nil, fmt.Errorf("scope variables: %w", err)
	}
	return append(env, processors.EnvScopeVars+"="+strings.Join(names, ","), processors.EnvScopeJSON+"="+string(typed)), nil
}
