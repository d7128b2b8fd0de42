package processors_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jobx/jobx/processors"
)

const splitPy = `"""
Split an argument in half, and send to a downstream step.

**
argument_spec:
    - name: arguments
      type: list
handler_type: mapper
required_capability: none
"""
arg = dict(arguments)['arg1']
yield MrConfigureToMap('step7_chunk_argument')
`

func TestParseHeaderAccepts(t *testing.T) {
	tests := []struct {
		name string
		file string
		src  string
		want processors.Meta
	}{
		{
			name: "JobX's split.py docstring parses with its argument_spec",
			file: "map/test/split.py",
			src:  splitPy,
			want: processors.Meta{
				Description:        "Split an argument in half, and send to a downstream step.",
				HandlerType:        "mapper",
				RequiredCapability: "none",
				ArgumentSpec:       []processors.ArgSpec{{Name: "arguments", Type: "list"}},
			},
		},
		{
			name: "a python docstring after a #! line and comments, with all jobx keys",
			file: "reduce/sum.py",
			src: `#!/usr/bin/env python3
# comment

r'''Sum values.
Second line.
**  YAML
handler_type: reducer
required_capability: gpu_big
timeout: 1m30s
memory: 256Mi
cpu: 1.5
pids: 64
network: host
max_output: 64Mi
scratch: 64Mi
retries: {count: 3, backoff: 2s}
image: python:3.11
reuse: request
'''
return []
`,
			want: processors.Meta{
				Description: "Sum values.\nSecond line.", HandlerType: "reducer", RequiredCapability: "gpu_big",
				Timeout: 90 * time.Second, Memory: 256 << 20, CPU: 1.5, Pids: 64, Network: "host",
				MaxOutput: 64 << 20, Scratch: 64 << 20, Retries: processors.Retries{Count: 3, Backoff: 2 * time.Second}, Image: "python:3.11",
				Reuse: "request",
			},
		},
		{
			name: "a JSON header in a python docstring, memory in decimal megabytes",
			file: "c.py",
			src:  "\"\"\"Combine.\n** json\n{\"handler_type\": \"combiner\", \"memory\": \"512M\", \"argument_spec\": [{\"name\": \"results\", \"type\": null}]}\n\"\"\"\n",
			want: processors.Meta{Description: "Combine.", HandlerType: "combiner", RequiredCapability: "none",
				Memory: 512e6, ArgumentSpec: []processors.ArgSpec{{Name: "results"}}},
		},
		{
			name: "a shell header with a scratch quota in decimal megabytes",
			file: "s.sh",
			src:  "#!/bin/sh\n# Map.\n#\n# **\n# handler_type: mapper\n# scratch: 8M\n",
			want: processors.Meta{Description: "Map.", HandlerType: "mapper", RequiredCapability: "none", Scratch: 8e6},
		},
		{
			name: "a JSDoc block comment with star prefixes",
			file: "m.js",
			src:  "/**\n * Map.\n *\n * **\n * handler_type: mapper\n * memory: 1048576\n */\nconsole.log(1)\n",
			want: processors.Meta{Description: "Map.", HandlerType: "mapper", RequiredCapability: "none", Memory: 1 << 20},
		},
		{
			name: "a plain block comment after a #! line",
			file: "m.js",
			src:  "#!/usr/bin/env node\n/*\nMap.\n**\nhandler_type: mapper\n*/\n",
			want: processors.Meta{Description: "Map.", HandlerType: "mapper", RequiredCapability: "none"},
		},
		{
			name: "leading // lines",
			file: "m.js",
			src:  "// Map.\n// ** json\n// {\"handler_type\": \"reducer\",\n//  \"network\": \"none\"}\nx()\n",
			want: processors.Meta{Description: "Map.", HandlerType: "reducer", RequiredCapability: "none", Network: "none"},
		},
		{
			name: "a shell script's # lines after #!",
			file: "r.sh",
			src:  "#!/bin/sh\n# Reduce.\n#\n# **\n# handler_type: reducer\n# argument_spec:\n#   - name: results\n#     type: list\necho\n",
			want: processors.Meta{Description: "Reduce.", HandlerType: "reducer", RequiredCapability: "none",
				ArgumentSpec: []processors.ArgSpec{{Name: "results", Type: "list"}}},
		},
		{
			name: "a generic executable with // comments",
			file: "tool",
			src:  "#!/usr/bin/env node\n// Tool.\n// **\n// handler_type: mapper\n",
			want: processors.Meta{Description: "Tool.", HandlerType: "mapper", RequiredCapability: "none"},
		},
		{
			name: "a generic executable with # comments and a description-less header",
			file: "tool.rb",
			src:  "#!/usr/bin/env ruby\n# **\n# handler_type: mapper\n",
			want: processors.Meta{HandlerType: "mapper", RequiredCapability: "none"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := processors.ParseHeader(tt.file, []byte(tt.src))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", *got, tt.want)
			}
		})
	}
}

func TestParseHeaderRejects(t *testing.T) {
	const file = "map/test/split.py"
	tests := []struct {
		name     string
		file     string
		src      string
		wantLine int
		wantKey  string
		wantMsg  string
	}{
		{"a python file whose first statement is code has no header", file,
			"# comment\nx = 1\n", 2, "", "the first statement must be a docstring"},
		{"an empty file has no header", file, "", 1, "", "no metadata header"},
		{"a shell script without comments has no header", "a.sh", "#!/bin/sh\necho\n", 1, "", "no metadata header"},
		{"a file with an unknown extension and no #! has no header", "a.txt", "hello", 1, "", "unknown extension"},
		{"a header without a ** line", file, "\"\"\"\nJust a description.\nhandler_type: mapper\n\"\"\"\n", 1, "",
			`no "**" line`},
		{"an unknown format after **", file, "\"\"\"\n** toml\nhandler_type = 1\n\"\"\"\n", 2, "", `unknown metadata format "toml"`},
		{"bad YAML names the line", file, "\"\"\"\nd\n**\nhandler_type: mapper\n  required_capability: [\n\"\"\"\n", 5, "",
			"bad YAML metadata"},
		{"bad JSON names the line", file, "\"\"\"\n** json\n{\"handler_type\": \"mapper\",\n \"cpu\": }\n\"\"\"\n", 4, "",
			"bad JSON metadata"},
		{"a missing handler_type", file, "\"\"\"\nd\n**\nrequired_capability: none\n\"\"\"\n", 3, "handler_type",
			`missing required metadata key "handler_type"`},
		{"empty metadata", file, "\"\"\"\nd\n**\n\"\"\"\n", 3, "handler_type", `missing required key "handler_type"`},
		{"an invalid handler_type value", file, "\"\"\"\n**\nhandler_type: shuffler\n\"\"\"\n", 3, "handler_type",
			`invalid handler_type "shuffler"`},
		{"an unknown key", file, "\"\"\"\nd\n**\nhandler_type: mapper\nrequired_capability: none\n\n\nfoo: 1\n\"\"\"\n", 8, "foo",
			`unknown metadata key "foo"`},
		{"an unknown key under retries", file, "\"\"\"\n**\nhandler_type: mapper\nretries:\n  count: 1\n  jitter: 2s\n\"\"\"\n", 6,
			"retries.jitter", `unknown metadata key "retries.jitter"`},
		{"a description key in the metadata", file, "\"\"\"\n**\nhandler_type: mapper\ndescription: x\n\"\"\"\n", 4,
			"description", `unknown metadata key "description"`},
		{"a duplicate key", file, "\"\"\"\n**\nhandler_type: mapper\nhandler_type: reducer\n\"\"\"\n", 4, "handler_type",
			`duplicate metadata key "handler_type"`},
		{"a bad duration", file, "\"\"\"\n**\nhandler_type: mapper\ntimeout: soon\n\"\"\"\n", 4, "timeout", `invalid timeout "soon"`},
		{"a bare number is not a duration", file, "\"\"\"\n**\nhandler_type: mapper\ntimeout: 30\n\"\"\"\n", 4, "timeout", `invalid timeout "30"`},
		{"a bad retry backoff", file, "\"\"\"\n**\nhandler_type: mapper\nretries: {count: 2, backoff: -1s}\n\"\"\"\n", 4,
			"retries.backoff", `invalid retries.backoff "-1s"`},
		{"a bad size", file, "\"\"\"\n**\nhandler_type: mapper\nmemory: lots\n\"\"\"\n", 4, "memory", `invalid memory "lots"`},
		{"a bad scratch", file, "\"\"\"\n**\nhandler_type: mapper\nscratch: 0\n\"\"\"\n", 4, "scratch", `invalid scratch "0"`},
		{"a negative max_output", file, "\"\"\"\n**\nhandler_type: mapper\nmax_output: -5\n\"\"\"\n", 4, "max_output", `invalid max_output "-5"`},
		{"a bad cpu", file, "\"\"\"\n**\nhandler_type: mapper\ncpu: 0\n\"\"\"\n", 4, "cpu", `invalid cpu "0"`},
		{"a bad pids", file, "\"\"\"\n**\nhandler_type: mapper\npids: many\n\"\"\"\n", 4, "pids", `invalid pids "many"`},
		{"a bad reuse", file, "\"\"\"\n**\nhandler_type: mapper\nreuse: always\n\"\"\"\n", 4, "reuse", `invalid reuse "always"`},
		{"a bad network", file, "\"\"\"\n**\nhandler_type: mapper\nnetwork: bridge\n\"\"\"\n", 4, "network", `invalid network "bridge"`},
		{"a capability with a dot", file, "\"\"\"\n**\nhandler_type: mapper\nrequired_capability: a.b\n\"\"\"\n", 4,
			"required_capability", `invalid required_capability "a.b"`},
		{"a mapper's argument_spec must name arguments", file,
			"\"\"\"\n**\nhandler_type: mapper\nargument_spec:\n  - name: results\n    type: list\n\"\"\"\n", 4, "argument_spec",
			"argument_spec of a mapper must name exactly [arguments], got [results]"},
		{"a reducer's argument_spec must name only results", file,
			"\"\"\"\n**\nargument_spec: [{name: results}, {name: extra}]\nhandler_type: reducer\n\"\"\"\n", 3, "argument_spec",
			"must name exactly [results], got [results, extra]"},
		{"the key line is right in a JSON header of a JS file", "m.js",
			"/*\n** json\n{\n  \"handler_type\": \"mapper\",\n  \"colour\": \"red\"\n}\n*/\n", 5, "colour", `unknown metadata key "colour"`},
		{"the key line is right in a shell header", "a.sh",
			"#!/bin/sh\n# d\n# **\n# handler_type: mapper\n# colour: red\n", 5, "colour", `unknown metadata key "colour"`},
		{"an unterminated docstring", file, "\"\"\"\n**\nhandler_type: mapper\n", 1, "", "unterminated docstring"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := processors.ParseHeader(tt.file, []byte(tt.src))
			var he *processors.HeaderError
			if !errors.As(err, &he) {
				t.Fatalf("got %v, want a *HeaderError", err)
			}
			if he.File != tt.file || he.Line != tt.wantLine || he.Key != tt.wantKey {
				t.Errorf("got file %q line %d key %q, want %q %d %q (%v)", he.File, he.Line, he.Key, tt.file, tt.wantLine, tt.wantKey, err)
			}
			msg := err.Error()
			prefix := tt.file + ":"
			if tt.wantLine > 0 {
				prefix = tt.file + ":" + itoa(tt.wantLine) + ": "
			}
			if !strings.HasPrefix(msg, prefix) || !strings.Contains(msg, tt.wantMsg) || !strings.Contains(msg, tt.wantKey) {
				t.Errorf("message %q: want prefix %q, key %q and %q", msg, prefix, tt.wantKey, tt.wantMsg)
			}
		})
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestMetaJSONRoundTrip(t *testing.T) {
	m := processors.Meta{
		Description: "d", HandlerType: "reducer", RequiredCapability: "none",
		ArgumentSpec: []processors.ArgSpec{{Name: "results", Type: "list"}},
		Timeout:      30 * time.Second, Memory: 256 << 20, CPU: 0.5, Pids: 10, Network: "none",
		MaxOutput: 1 << 20, Scratch: 64 << 20, Retries: processors.Retries{Count: 2, Backoff: time.Second}, Image: "img",
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"description":"d","handler_type":"reducer","required_capability":"none","argument_spec":[{"name":"results","type":"list"}],"timeout":"30s","memory":268435456,"cpu":0.5,"pids":10,"network":"none","max_output":1048576,"scratch":67108864,"retries":{"count":2,"backoff":"1s"},"image":"img"}`
	if string(b) != want {
		t.Errorf("marshal:\n%s\nwant\n%s", b, want)
	}
	var got processors.Meta
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Errorf("round trip: %+v", got)
	}
	if err := json.Unmarshal([]byte(`{"handler_type":"mapper","bogus":1}`), &got); err == nil || !strings.Contains(err.Error(), `"bogus"`) {
		t.Errorf("unknown key: %v", err)
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"1024", 1024, true}, {"64Ki", 64 << 10, true}, {"256Mi", 256 << 20, true}, {"1Gi", 1 << 30, true},
		{"512M", 512e6, true}, {"2k", 2000, true}, {"64MiB", 64 << 20, true}, {"1.5Gi", 3 << 29, true},
		{"0", 0, false}, {"-1", 0, false}, {"lots", 0, false}, {"", 0, false}, {"99999999999Ti", 0, false},
	}
	for _, tt := range tests {
		got, err := processors.ParseSize(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}
