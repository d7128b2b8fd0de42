package generic_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jobx/jobx/processors"
	"github.com/jobx/jobx/processors/generic"
	"github.com/jobx/jobx/processors/internal/proctest"
)

func TestRunHandlers(t *testing.T) {
	tests := []struct {
		name, typ, src, stdin string
		wantCode              int
		wantStdout            []string
		wantStderr            string
	}{
		{
			name: "a python script mapper returns its pairs",
			typ:  "mapper",
			src: `#!/usr/bin/env python3
# Double every value.
#
# **
# handler_type: mapper
import json, sys
print(json.dumps({"jobx": "return"}))
for line in sys.stdin:
    k, v = json.loads(line)
    print(json.dumps([k, v * 2]))
`,
			stdin:      "[\"a\", 1]\n",
			wantStdout: []string{`{"jobx": "return"}`, `["a", 2]`},
		},
		{
			name: "a node script mapper branches",
			typ:  "mapper",
			src: `#!/usr/bin/env node
// Branch.
//
// ** json
// {"handler_type": "mapper"}
const lines = require('fs').readFileSync(0, 'utf8').trim().split('\n').map(JSON.parse);
console.log(JSON.stringify({jobx: 'map', step: 'next'}));
for (const [k, v] of lines) console.log(JSON.stringify([k, v + 1]));
`,
			stdin:      "[\"a\", 1]\n",
			wantStdout: []string{`{"jobx":"map","step":"next"}`, `["a",2]`},
		},
		{
			name: "an awk reducer sums",
			typ:  "reducer",
			src: `#!/usr/bin/awk -f
# Sum.
# **
# handler_type: reducer
{ gsub(/[\[\]" ]/, ""); n = split($0, f, ","); s = 0; for (i = 2; i <= n; i++) s += f[i]; printf "[\"%s\",%d]\n", f[1], s }
`,
			stdin:      "[\"a\",[1,2,3]]\n",
			wantStdout: []string{`["a",6]`},
		},
		{
			name:       "a combiner in sh",
			typ:        "combiner",
			src:        "#!/bin/sh\n# **\n# handler_type: combiner\ncat\n",
			stdin:      "[\"a\",[1]]\n",
			wantStdout: []string{`["a",[1]]`},
		},
		{
			name:       "a failing script exits non-zero with its message",
			typ:        "reducer",
			src:        "#!/bin/sh\n# **\n# handler_type: reducer\necho broken >&2\nexit 5\n",
			wantCode:   5,
			wantStderr: "broken",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := processors.ParseHeader("h", []byte(tt.src)); err != nil {
				t.Fatal(err)
			}
			if err := (generic.Processor{}).Check(context.Background(), "h", []byte(tt.src)); err != nil {
				t.Fatal(err)
			}
			res := proctest.Run(t, proctest.Install(t, generic.Processor{}, "h", tt.typ, tt.src), tt.stdin)
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
	tests := []struct {
		name, src, wantErr string
	}{
		{"an existing absolute interpreter passes", "#!/bin/sh\n", ""},
		{"a program found through env passes", "#!/usr/bin/env -S python3 -u\n", ""},
		{"a missing interpreter fails", "#!/no/such/interp\n", `tool:1: interpreter "/no/such/interp": not found`},
		{"a program missing from PATH fails", "#!/usr/bin/env no-such-prog-jobx\n", `tool:1: interpreter "no-such-prog-jobx" not found in PATH`},
		{"a file without a #! line fails", "echo hi\n", "tool:1: no #! line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := (generic.Processor{}).Check(context.Background(), "tool", []byte(tt.src))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want %q", err, tt.wantErr)
			}
		})
	}
}
