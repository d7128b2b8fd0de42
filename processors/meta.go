package processors

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Handler types, the values of the handler_type metadata key.
const (
	TypeMapper   = "mapper"
	TypeCombiner = "combiner"
	TypeReducer  = "reducer"
)

// CapabilityNone is the default required_capability; it routes to the
// "general" capability.
const CapabilityNone = "none"

// Network modes for the network metadata key.
const (
	NetworkNone = "none"
	NetworkHost = "host"
)

// Meta is a handler's metadata, parsed from its header. Zero values of the
// limit fields (Timeout, Memory, CPU, Pids, Network, MaxOutput, Scratch,
// Image) mean "the runner's default".
type Meta struct {
	// Description is the header text before the "**" line.
	Description string
	// HandlerType is TypeMapper, TypeCombiner or TypeReducer.
	HandlerType string
	// RequiredCapability is a capability name, CapabilityNone by default.
	RequiredCapability string
	// ArgumentSpec is JobX's optional argument list; when given its only
	// name is ArgumentName(HandlerType).
	ArgumentSpec []ArgSpec
	Timeout      time.Duration
	// Memory and MaxOutput are in bytes.
	Memory    int64
	CPU       float64
	Pids      int64
	Network   string
	MaxOutput int64
	// Scratch bounds the bytes a run may write under its scratch directory.
	Scratch int64
	Retries Retries
	Image   string
	// Reuse is ReuseRequest or ReuseHandler when the handler lets one warm
	// process run several of its invocations; empty for a fresh process
	// per invocation.
	Reuse string
}

// ReuseRequest is the value of the reuse metadata key that lets a warm
// sandbox keep a handler's process between its invocations of one request,
// instead of forking a fresh one for each: faster, but those invocations
// then share module state, leftover processes and open files. Invocations of
// other requests or other handlers never share a process.
const ReuseRequest = "request"

// ReuseHandler is the value of the reuse metadata key that lets a warm
// sandbox keep a handler's process between its invocations across
// requests, as a function runtime keeps a warm instance: the runs of one
// version of one handler of one workflow then share module state, leftover
// processes and open files. Other handlers, and other versions of this
// one, never share its process.
const ReuseHandler = "handler"

// ArgSpec is one entry of JobX's argument_spec. Type is a Python builtin name
// such as "list", or empty for null.
type ArgSpec struct {
	Name string `json:"name" yaml:"name"`
	Type string `json:"type,omitempty" yaml:"type,omitempty"`
}

// Retries says how often a failed invocation of the handler is retried and
// how long to wait before each retry.
type Retries struct {
	Count   int
	Backoff time.Duration
}

// ArgumentName returns the name under which a handler of the given type
// receives its input: "arguments" for a mapper, "results" otherwise.
func ArgumentName(handlerType string) string {
	if handlerType == TypeMapper {
		return "arguments"
	}
	return "results"
}

// metaWire is Meta's JSON form.
type metaWire struct {
	Description        string       `json:"description,omitempty"`
	HandlerType        string       `json:"handler_type"`
	RequiredCapability string       `json:"required_capability"`
	ArgumentSpec       []ArgSpec    `json:"argument_spec,omitempty"`
	Timeout            string       `json:"timeout,omitempty"`
	Memory             int64        `json:"memory,omitempty"`
	CPU                float64      `json:"cpu,omitempty"`
	Pids               int64        `json:"pids,omitempty"`
	Network            string       `json:"network,omitempty"`
	MaxOutput          int64        `json:"max_output,omitempty"`
	Scratch            int64        `json:"scratch,omitempty"`
	Retries            *retriesWire `json:"retries,omitempty"`
	Image              string       `json:"image,omitempty"`
	Reuse              string       `json:"reuse,omitempty"`
}

type retriesWire struct {
	Count   int    `json:"count"`
	Backoff string `json:"backoff,omitempty"`
}

// MarshalJSON encodes m with the header's snake_case keys, durations as
// strings ("30s") and sizes as byte counts.
func (m Meta) MarshalJSON() ([]byte, error) {
	w := metaWire{
		Description: m.Description, HandlerType: m.HandlerType, RequiredCapability: m.RequiredCapability,
		ArgumentSpec: m.ArgumentSpec, Memory: m.Memory, CPU: m.CPU, Pids: m.Pids,
		Network: m.Network, MaxOutput: m.MaxOutput, Scratch: m.Scratch, Image: m.Image, Reuse: m.Reuse,
	}
	if m.Timeout != 0 {
		w.Timeout = m.Timeout.String()
	}
	if m.Retries != (Retries{}) {
		w.Retries = &retriesWire{Count: m.Retries.Count}
		if m.Retries.Backoff != 0 {
			w.Retries.Backoff = m.Retries.Backoff.String()
		}
	}
	return json.Marshal(w)
}

// UnmarshalJSON decodes and validates the form written by MarshalJSON (and
// accepts the header's own value forms, such as "256Mi").
func (m *Meta) UnmarshalJSON(data []byte) error {
	got, err := decodeMetadata("metadata", 1, 1, "json", data, true)
	if err != nil {
		return err
	}
	*m = *got
	return nil
}

var capabilityRE = regexp.MustCompile(`^[A-Za-z0-9_]+$`)

// metaDecoder decodes a metadata document, remapping line numbers to the
// file.
type metaDecoder struct {
	file      string
	firstLine int
}

func (d *metaDecoder) errf(n *yaml.Node, key, format string, args ...any) *HeaderError {
	line := 0
	if n != nil && n.Line > 0 {
		line = d.firstLine + n.Line - 1
	}
	return &HeaderError{File: d.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)}
}

var yamlLineRE = regexp.MustCompile(`line (\d+)`)

// decodeMetadata parses text (YAML or JSON) whose first line is line
// firstLine of file. pivotLine is reported for problems with the document as
// a whole. wire allows the "description" key.
func decodeMetadata(file string, firstLine, pivotLine int, format string, text []byte, wire bool) (*Meta, error) {
	d := &metaDecoder{file: file, firstLine: firstLine}
	if format == "json" {
		if strings.TrimSpace(string(text)) != "" {
			var v any
			if err := json.Unmarshal(text, &v); err != nil {
				line := pivotLine
				var se *json.SyntaxError
				if errors.As(err, &se) {
					line = firstLine + strings.Count(string(text[:min(int(se.Offset), len(text))]), "\n")
				}
				return nil, &HeaderError{File: file, Line: line, Msg: "bad JSON metadata: " + err.Error()}
			}
		}
		// Valid JSON is YAML once tabs (only legal outside strings) are spaces.
		text = []byte(strings.ReplaceAll(string(text), "\t", " "))
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(text, &doc); err != nil {
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		line := pivotLine
		if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
			n, _ := strconv.Atoi(m[1])
			line = firstLine + n - 1
			msg = strings.TrimSpace(strings.Replace(msg, m[0]+":", "", 1))
		}
		return nil, &HeaderError{File: file, Line: line, Msg: "bad YAML metadata: " + msg}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" || root.Kind == 0 {
		return nil, &HeaderError{File: file, Line: pivotLine, Key: "handler_type", Msg: `metadata is empty: missing required key "handler_type"`}
	}
	if root.Kind != yaml.MappingNode {
		return nil, d.errf(root, "", "metadata must be a mapping of keys to values")
	}

	m := &Meta{RequiredCapability: CapabilityNone}
	var specNode *yaml.Node
	seen := map[string]bool{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		key := k.Value
		if seen[key] {
			return nil, d.errf(k, key, "duplicate metadata key %q", key)
		}
		seen[key] = true
		var err error
		switch key {
		case "description":
			if !wire {
				return nil, d.errf(k, key, `unknown metadata key %q (the description goes before the "**" line)`, key)
			}
			m.Description, err = d.str(v, key)
		case "handler_type":
			m.HandlerType, err = d.str(v, key)
			if err == nil && m.HandlerType != TypeMapper && m.HandlerType != TypeCombiner && m.HandlerType != TypeReducer {
				err = d.errf(v, key, "invalid handler_type %q (want mapper, combiner or reducer)", m.HandlerType)
			}
		case "required_capability":
			m.RequiredCapability, err = d.str(v, key)
			if err == nil && !capabilityRE.MatchString(m.RequiredCapability) {
				err = d.errf(v, key, "invalid required_capability %q (want letters, digits and _)", m.RequiredCapability)
			}
		case "argument_spec":
			specNode = k
			m.ArgumentSpec, err = d.argSpec(v)
		case "timeout":
			m.Timeout, err = d.duration(v, key, false)
		case "memory":
			m.Memory, err = d.size(v, key)
		case "max_output":
			m.MaxOutput, err = d.size(v, key)
		case "scratch":
			m.Scratch, err = d.size(v, key)
		case "cpu":
			var f float64
			if err = v.Decode(&f); err != nil || v.Kind != yaml.ScalarNode || f <= 0 || math.IsInf(f, 0) || math.IsNaN(f) {
				err = d.errf(v, key, "invalid cpu %q (want a positive number of cores)", v.Value)
			}
			m.CPU = f
		case "pids":
			m.Pids, err = d.positiveInt(v, key)
		case "network":
			m.Network, err = d.str(v, key)
			if err == nil && m.Network != NetworkNone && m.Network != NetworkHost {
				err = d.errf(v, key, "invalid network %q (want none or host)", m.Network)
			}
		case "retries":
			m.Retries, err = d.retries(v)
		case "image":
			m.Image, err = d.str(v, key)
			if err == nil && strings.TrimSpace(m.Image) == "" {
				err = d.errf(v, key, "image must not be empty")
			}
		case "reuse":
			m.Reuse, err = d.str(v, key)
			if err == nil && m.Reuse != ReuseRequest && m.Reuse != ReuseHandler && m.Reuse != "none" {
				err = d.errf(v, key, "invalid reuse %q (want request, handler or none)", m.Reuse)
			}
			if m.Reuse == "none" {
				m.Reuse = ""
			}
		default:
			err = d.errf(k, key, "unknown metadata key %q", key)
		}
		if err != nil {
			return nil, err
		}
	}
	if m.HandlerType == "" {
		return nil, &HeaderError{File: file, Line: pivotLine, Key: "handler_type", Msg: `missing required metadata key "handler_type"`}
	}
	if specNode != nil {
		want := ArgumentName(m.HandlerType)
		if len(m.ArgumentSpec) != 1 || m.ArgumentSpec[0].Name != want {
			names := make([]string, len(m.ArgumentSpec))
			for i, a := range m.ArgumentSpec {
				names[i] = a.Name
			}
			return nil, d.errf(specNode, "argument_spec",
				"argument_spec of a %s must name exactly [%s], got [%s]", m.HandlerType, want, strings.Join(names, ", "))
		}
	}
	return m, nil
}

func (d *metaDecoder) str(v *yaml.Node, key string) (string, error) {
	if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
		return "", d.errf(v, key, "%s must be a string", key)
	}
	return v.Value, nil
}

func (d *metaDecoder) positiveInt(v *yaml.Node, key string) (int64, error) {
	var n int64
	if v.Kind != yaml.ScalarNode || v.Decode(&n) != nil || n <= 0 {
		return 0, d.errf(v, key, "invalid %s %q (want a positive integer)", key, v.Value)
	}
	return n, nil
}

func (d *metaDecoder) duration(v *yaml.Node, key string, zeroOK bool) (time.Duration, error) {
	if v.Kind == yaml.ScalarNode && v.Tag == "!!str" {
		dur, err := time.ParseDuration(v.Value)
		if err == nil && (dur > 0 || zeroOK && dur == 0) {
			return dur, nil
		}
	}
	return 0, d.errf(v, key, "invalid %s %q (want a positive duration such as \"30s\")", key, v.Value)
}

func (d *metaDecoder) size(v *yaml.Node, key string) (int64, error) {
	if v.Kind == yaml.ScalarNode {
		if n, err := ParseSize(v.Value); err == nil {
			return n, nil
		}
	}
	return 0, d.errf(v, key, "invalid %s %q (want bytes or a size such as \"256Mi\" or \"512M\")", key, v.Value)
}

func (d *metaDecoder) retries(v *yaml.Node) (Retries, error) {
	var r Retries
	if v.Kind != yaml.MappingNode {
		return r, d.errf(v, "retries", "retries must be a mapping with count and backoff")
	}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, val := v.Content[i], v.Content[i+1]
		key := "retries." + k.Value
		switch k.Value {
		case "count":
			if val.Kind != yaml.ScalarNode || val.Decode(&r.Count) != nil || r.Count < 0 {
				return r, d.errf(val, key, "invalid %s %q (want an integer >= 0)", key, val.Value)
			}
		case "backoff":
			b, err := d.duration(val, key, true)
			if err != nil {
				return r, err
			}
			r.Backoff = b
		default:
			return r, d.errf(k, key, "unknown metadata key %q", key)
		}
	}
	return r, nil
}

func (d *metaDecoder) argSpec(v *yaml.Node) ([]ArgSpec, error) {
	const key = "argument_spec"
	if v.Kind != yaml.SequenceNode {
		return nil, d.errf(v, key, "argument_spec must be a list of {name, type}")
	}
	spec := make([]ArgSpec, 0, len(v.Content))
	for i, item := range v.Content {
		if item.Kind != yaml.MappingNode {
			return nil, d.errf(item, key, "argument_spec[%d] must be a mapping with name and type", i)
		}
		var a ArgSpec
		for j := 0; j+1 < len(item.Content); j += 2 {
			k, val := item.Content[j], item.Content[j+1]
			switch k.Value {
			case "name":
				s, err := d.str(val, key+".name")
				if err != nil {
					return nil, err
				}
				a.Name = s
			case "type":
				if val.Tag != "!!null" {
					s, err := d.str(val, key+".type")
					if err != nil {
						return nil, err
					}
					a.Type = s
				}
			default:
				return nil, d.errf(k, key+"."+k.Value, "unknown metadata key %q in argument_spec[%d]", k.Value, i)
			}
		}
		if a.Name == "" {
			return nil, d.errf(item, key, "argument_spec[%d] has no name", i)
		}
		spec = append(spec, a)
	}
	return spec, nil
}
