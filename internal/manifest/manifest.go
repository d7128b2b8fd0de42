// Package manifest loads a workflow directory into etcd: a workflow.yaml
// naming the workflow, its steps and its jobs, and a handlers/ tree of
// handler files.
//
//	workflow: dev
//	description: JobX's development jobs
//	steps:
//	  step6_split_argument_1:
//	    description: split an argument in two
//	    map: map_test_split
//	    combine: ""          # optional
//	    reduce: reduce_test_noop
//	jobs:
//	  job4:
//	    description: two-level split and sum
//	    initial_step: step6_split_argument_1
//	    example_arguments: {arg1: 17413412}   # optional; shown by jobx up;
//	                                          # "${dir}" in a string is the manifest's directory
//
// Apply is idempotent: applying the same directory twice changes nothing
// the second time. It never deletes steps or jobs that the manifest does not
// name.
package manifest

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"github.com/jobx/jobx/internal/notifications"
	"github.com/jobx/jobx/internal/writers"
	"github.com/jobx/jobx/kvmodel"
	"github.com/jobx/jobx/processors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// FileName is the manifest's file name inside a workflow directory.
const FileName = "workflow.yaml"

// HandlersDir is the default handler directory inside a workflow directory.
const HandlersDir = "handlers"

// Manifest is a parsed workflow.yaml.
type Manifest struct {
	Workflow    string `yaml:"workflow"`
	Description string `yaml:"description"`
	// Handlers is the handler directory, relative to the manifest
	// (default "handlers").
	Handlers string `yaml:"handlers"`
	// Steps and Jobs keep the file's order.
	Steps []Step `yaml:"-"`
	Jobs  []Job  `yaml:"-"`
	// Path is the manifest file read.
	Path string `yaml:"-"`
	// Notifications are the workflow's notification channels.
	Notifications *kvmodel.NotifyConfig `yaml:"-"`
	// Defaults are the workflow's sandbox defaults.
	Defaults *kvmodel.HandlerOptions `yaml:"-"`
}

// Step is one entry of steps:.
type Step struct {
	Name        string `yaml:"-"`
	Line        int    `yaml:"-"`
	Description string `yaml:"description"`
	Map         string `yaml:"map"`
	Combine     string `yaml:"combine"`
	Reduce      string `yaml:"reduce"`
}

// step returns s as the kvmodel.Step of workflow wf; an empty description
// is the step's name.
func (s Step) step(wf string) *kvmodel.Step {
	return &kvmodel.Step{
		Name: s.Name, WorkflowName: wf, Description: cmp.Or(s.Description, s.Name),
		MapHandlerName: s.Map, CombineHandlerName: s.Combine, ReduceHandlerName: s.Reduce,
	}
}

// Job is one entry of jobs:.
type Job struct {
	Name        string `yaml:"-"`
	Line        int    `yaml:"-"`
	Description string `yaml:"description"`
	InitialStep string `yaml:"initial_step"`
	// ExampleArguments, in the file's order, are shown by `jobx up` in a
	// ready-to-paste submission.
	ExampleArguments []Argument `yaml:"-"`
	// ResultWriter is the job's result writer (nil: the runners' default).
	ResultWriter *kvmodel.WriterConfig `yaml:"-"`
}

// Argument is one example argument: a key and a JSON-encodable value.
type Argument struct {
	Key   string
	Value any
}

type manifestWire struct {
	Workflow      string                `yaml:"workflow"`
	Description   string                `yaml:"description"`
	Notifications *kvmodel.NotifyConfig `yaml:"notifications"`
	Defaults      *defaultsWire         `yaml:"defaults"`
	Handlers      string                `yaml:"handlers"`
	Steps         yaml.Node             `yaml:"steps"`
	Jobs          yaml.Node             `yaml:"jobs"`
}

// defaultsWire is the workflow's sandbox defaults in workflow.yaml:
// timeout (duration), memory, max_output and scratch (sizes: 256Mi), cpu,
// pids, network (none or host).
type defaultsWire struct {
	Timeout   string  `yaml:"timeout"`
	Memory    string  `yaml:"memory"`
	CPU       float64 `yaml:"cpu"`
	Pids      int64   `yaml:"pids"`
	Network   string  `yaml:"network"`
	MaxOutput string  `yaml:"max_output"`
	Scratch   string  `yaml:"scratch"`
}

func (d *defaultsWire) options() (*kvmodel.HandlerOptions, error) {
	if d == nil {
		return nil, nil
	}
	o := &kvmodel.HandlerOptions{Timeout: d.Timeout, CPU: d.CPU, Pids: d.Pids, Network: d.Network}
	if d.Timeout != "" {
		if _, err := time.ParseDuration(d.Timeout); err != nil {
			return nil, fmt.Errorf("defaults.timeout %q: %w", d.Timeout, err)
		}
	}
	if d.Network != "" && d.Network != "none" && d.Network != "host" {
		return nil, fmt.Errorf("defaults.network %q: want none or host", d.Network)
	}
	var err error
	if d.Memory != "" {
		if o.Memory, err = processors.ParseSize(d.Memory); err != nil {
			return nil, fmt.Errorf("defaults.memory: %w", err)
		}
	}
	if d.MaxOutput != "" {
		if o.MaxOutput, err = processors.ParseSize(d.MaxOutput); err != nil {
			return nil, fmt.Errorf("defaults.max_output: %w", err)
		}
	}
	if d.Scratch != "" {
		if o.Scratch, err = processors.ParseSize(d.Scratch); err != nil {
			return nil, fmt.Errorf("defaults.scratch: %w", err)
		}
	}
	return o, nil
}

type jobWire struct {
	Description      string                `yaml:"description"`
	InitialStep      string                `yaml:"initial_step"`
	ExampleArguments yaml.Node             `yaml:"example_arguments"`
	ResultWriter     *kvmodel.WriterConfig `yaml:"result_writer"`
}

// Load reads dir/workflow.yaml. Errors name the file, the line and the
// offending key or entry.
func Load(dir string) (*Manifest, error) {
	path := filepath.Join(dir, FileName)
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	fail := func(line int, format string, args ...any) error {
		if line > 0 {
			return fmt.Errorf("%s:%d: %s", path, line, fmt.Sprintf(format, args...))
		}
		return fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...))
	}
	absDir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	var w manifestWire
	if err := strictDecode(raw, &w); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if w.Workflow == "" {
		return nil, fail(0, `missing "workflow" (the workflow's name)`)
	}
	if err := notifications.Validate(w.Notifications); err != nil {
		return nil, fail(0, "%v", err)
	}
	m := &Manifest{Workflow: w.Workflow, Description: w.Description, Handlers: w.Handlers, Path: path, Notifications: w.Notifications}
	if m.Defaults, err = w.Defaults.options(); err != nil {
		return nil, fail(0, "%v", err)
	}
	if m.Description == "" {
		m.Description = m.Workflow
	}
	if m.Handlers == "" {
		m.Handlers = HandlersDir
	}
	err = eachEntry(&w.Steps, "steps", path+":", func(name string, line int, v *yaml.Node) error {
		s := Step{Name: name, Line: line}
		if at, err := decodeEntry(v, &s, "description", "map", "combine", "reduce"); err != nil {
			return fail(cmp.Or(at, line), "step %s: %v", name, err)
		}
		m.Steps = append(m.Steps, s)
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = eachEntry(&w.Jobs, "jobs", path+":", func(name string, line int, v *yaml.Node) error {
		var jw jobWire
		if at, err := decodeEntry(v, &jw, "description", "initial_step", "example_arguments", "result_writer"); err != nil {
			return fail(cmp.Or(at, line), "job %s: %v", name, err)
		}
		j := Job{Name: name, Line: line, Description: jw.Description, InitialStep: jw.InitialStep, ResultWriter: jw.ResultWriter}
		if j.ResultWriter != nil {
			if err := writers.Validate(*j.ResultWriter); err != nil {
				return fail(line, "job %s: %v", name, err)
			}
		}
		err := eachEntry(&jw.ExampleArguments, "example_arguments", "line ", func(key string, _ int, v *yaml.Node) error {
			var val any
			if err := v.Decode(&val); err != nil {
				return err
			}
			if str, ok := val.(string); ok {
				val = strings.ReplaceAll(str, "${dir}", absDir)
			}
			j.ExampleArguments = append(j.ExampleArguments, Argument{Key: key, Value: val})
			return nil
		})
		if err != nil {
			return fail(line, "job %s: %v", name, err)
		}
		m.Jobs = append(m.Jobs, j)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// eachEntry calls fn for every key of a mapping node, in order. A missing
// node (zero Kind) has no entries.
// at prefixes the line number in eachEntry's own error ("file.yaml:" or
// "line ").
func eachEntry(n *yaml.Node, what, at string, fn func(key string, line int, v *yaml.Node) error) error {
	if n.Kind == 0 || n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("%s%d: %s must be a mapping of names to entries", at, n.Line, what)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if err := fn(n.Content[i].Value, n.Content[i].Line, n.Content[i+1]); err != nil {
			return err
		}
	}
	return nil
}

var unknownFieldRE = regexp.MustCompile(`field (\S+) not found in type \S+`)

// strictDecode decodes raw into v, rejecting unknown keys with an error
// that names them.
func strictDecode(raw []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		return yamlError(err)
	}
	return nil
}

// decodeEntry decodes a mapping node into v after checking that its keys
// are among allowed; an error carries the line of the offending key or
// value.
func decodeEntry(n *yaml.Node, v any, allowed ...string) (int, error) {
	if n.Kind != yaml.MappingNode {
		return n.Line, fmt.Errorf("must be a mapping of keys to values")
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if !slices.Contains(allowed, k.Value) {
			return k.Line, fmt.Errorf("unknown key %q (want %s)", k.Value, strings.Join(allowed, ", "))
		}
	}
	if err := n.Decode(v); err != nil {
		return n.Line, yamlError(err)
	}
	return 0, nil
}

// yamlError rewrites yaml.v3's "field x not found in type T" as
// `unknown key "x"`.
func yamlError(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs := make([]string, len(te.Errors))
		for i, e := range te.Errors {
			msgs[i] = unknownFieldRE.ReplaceAllString(e, `unknown key "$1"`)
		}
		return errors.New(strings.Join(msgs, "; "))
	}
	return errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
}
