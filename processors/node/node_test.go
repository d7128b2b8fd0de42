package node_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jobx/jobx/processors"
	"github.com/jobx/jobx/processors/internal/proctest"
	"github.com/jobx/jobx/processors/node"
)

const header = "/*\nTest handler.\n\n**\nhandler_type: %s\n*/\n"

func TestRunHandlers(t *testing.T) {
	tests := []struct {
		name, typ, body, stdin string
		env                    []string
		wantCode               int
		wantStdout             []string
		wantStderr             string
	}{
		{
			name: "a leaf mapper writes the return directive and its pairs",
			typ:  "mapper",
			body: `const jobx = require('jobx');
jobx.run(async (input) => {
  jobx.directiveReturn();
  for (const [k, v] of input) jobx.emit(k, v * 2);
  jobx.emit('scope', jobx.env.scope.test_scope_val);
});
`,
			stdin:      "[\"a\", 1]\n[\"b\", 2]\n",
			env:        []string{"JOBX_SCOPE_VARS=test_scope_val", "test_scope_val=99"},
			wantStdout: []string{`{"jobx":"return"}`, `["a",2]`, `["b",4]`, `["scope","99"]`},
		},
		{
			name: "scope values keep their JSON types",
			typ:  "mapper",
			body: `const jobx = require('jobx');
jobx.run(async (input) => {
  jobx.directiveReturn();
  jobx.emit('scope', jobx.env.scope.test_scope_val + 1);
});
`,
			stdin:      "[\"a\", 1]\n",
			env:        []string{"JOBX_SCOPE_VARS=test_scope_val", "test_scope_val=99", `JOBX_SCOPE_JSON={"test_scope_val":99}`},
			wantStdout: []string{`{"jobx":"return"}`, `["scope",100]`},
		},
		{
			name: "a branching mapper yields a map directive then pairs from a generator",
			typ:  "mapper",
			body: `const jobx = require('jobx');
jobx.run(function* (input) {
  const arg = Object.fromEntries(input).arg1;
  yield jobx.toMap('step7_chunk_argument');
  yield [0, Math.floor(arg / 2)];
  yield [1, Math.floor(arg / 2) + arg % 2];
});
`,
			stdin:      "[\"arg1\", 17]\n",
			wantStdout: []string{`{"jobx":"map","step":"step7_chunk_argument"}`, `[0,8]`, `[1,9]`},
		},
		{
			name: "a reducer returns an array of pairs",
			typ:  "reducer",
			body: `const jobx = require('jobx');
jobx.run((input) => input.map(([k, vs]) => [k, vs.reduce((a, b) => a + b, 0)]));
`,
			stdin:      "[\"a\", [1, 2, 3]]\n[\"b\", []]\n",
			wantStdout: []string{`["a",6]`, `["b",0]`},
		},
		{
			name: "a combiner emits a list of values per key",
			typ:  "combiner",
			body: `const jobx = require('jobx');
jobx.run(async (input) => { for (const [k, vs] of input) jobx.emit(k, [Math.max(...vs)]); });
`,
			stdin:      "[\"a\", [3, 9, 4]]\n",
			wantStdout: []string{`["a",[9]]`},
		},
		{
			name: "a handler that throws exits 1 with its stack on stderr",
			typ:  "reducer",
			body: `const jobx = require('jobx');
jobx.run(async (input) => {
  throw new Error('total too large');
});
`,
			wantCode:   1,
			wantStderr: "Error: total too large",
		},
		{
			name: "a mapper that emits before its directive fails",
			typ:  "mapper",
			body: `const jobx = require('jobx');
jobx.run(async () => { jobx.emit(1, 2); });
`,
			wantCode:   1,
			wantStderr: "must write its directive",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := strings.Replace(header, "%s", tt.typ, 1) + tt.body
			if _, err := processors.ParseHeader("h.js", []byte(src)); err != nil {
				t.Fatal(err)
			}
			res := proctest.Run(t, proctest.Install(t, node.Processor{}, "h", tt.typ, src), tt.stdin, tt.env...)
			if res.Code != tt.wantCode {
				t.Fatalf("exit code %d, want %d; stderr:\n%s", res.Code, tt.wantCode, res.Stderr)
			}
			if tt.wantCode == 0 && strings.Join(res.Stdout, "\n") != strings.Join(tt.wantStdout, "\n") {
				t.Errorf("stdout:\n%s\nwant:\n%s", strings.Join(res.Stdout, "\n"), strings.Join(tt.wantStdout, "\n"))
			}
			if !strings.Contains(res.Stderr, tt.wantStderr) {
				t.Errorf("stderr lacks %q:\n%s", tt.wantStderr, res.Stderr)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	ctx := context.Background()
	if err := (node.Processor{}).Check(ctx, "map/ok.js", []byte("const x = 1;\n")); err != nil {
		t.Errorf("valid source: %v", err)
	}
	err := (node.Processor{}).Check(ctx, "map/bad.js", []byte("const x = 1;\nfoo(;\n"))
	var ce *processors.CheckError
	if !errors.As(err, &ce) || ce.Line != 2 || !strings.Contains(err.Error(), "map/bad.js:2: SyntaxError") {
		t.Errorf("got %v", err)
	}
}
