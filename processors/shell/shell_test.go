package shell_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jobx/jobx/processors"
	"github.com/jobx/jobx/processors/internal/proctest"
	"github.com/jobx/jobx/processors/shell"
)

const header = "#!/bin/sh\n# Test handler.\n#\n# **\n# handler_type: %s\n\n. \"$JOBX_SH_HELPERS\"\n"

func TestRunHandlers(t *testing.T) {
	tests := []struct {
		name, typ, body, stdin string
		wantCode               int
		wantStdout             []string
		wantStderr             string
	}{
		{
			name: "a leaf mapper writes the return directive and its pairs",
			typ:  "mapper",
			body: `jobx_return
while IFS= read -r line; do
	[ -n "$line" ] || continue
	jobx_emit "$(jobx_pair_key "$line")" "$(( $(jobx_pair_value "$line") * 2 ))"
done
jobx_emit "$(jobx_string 'say "hi"')" "$(jobx_string "$JOBX_HANDLER")"
`,
			stdin:      "[\"a\", 1]\n[7,2]\n",
			wantStdout: []string{`{"jobx":"return"}`, `["a",2]`, `[7,4]`, `["say \"hi\"","h"]`},
		},
		{
			name: "a branching mapper writes a map directive",
			typ:  "mapper",
			body: `read -r line
arg=$(jobx_pair_value "$line")
jobx_map step7_chunk_argument
jobx_emit 0 $((arg / 2))
jobx_emit 1 $((arg / 2 + arg % 2))
`,
			stdin:      "[\"arg1\", 17]\n",
			wantStdout: []string{`{"jobx":"map","step":"step7_chunk_argument"}`, `[0,8]`, `[1,9]`},
		},
		{
			name: "a reducer sums each key's values",
			typ:  "reducer",
			body: `while IFS= read -r line; do
	vs=$(jobx_pair_value "$line"); vs=${vs#[}; vs=${vs%]}
	s=0; IFS=,
	for v in $vs; do s=$((s + v)); done
	unset IFS
	jobx_emit "$(jobx_pair_key "$line")" "$s"
done
`,
			stdin:      "[\"a\",[1,2,3]]\n[\"b\", [10, 5]]\n",
			wantStdout: []string{`["a",6]`, `["b",15]`},
		},
		{
			name: "a combiner passes lists through",
			typ:  "combiner",
			body: `while IFS= read -r line; do
	jobx_emit "$(jobx_pair_key "$line")" "$(jobx_pair_value "$line")"
done
`,
			stdin:      "[\"a\",[1,2]]\n",
			wantStdout: []string{`["a",[1,2]]`},
		},
		{
			name:       "a failing handler exits with its status and message",
			typ:        "reducer",
			body:       "jobx_log \"no such thing\"\nexit 3\n",
			wantCode:   3,
			wantStderr: "no such thing",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := strings.Replace(header, "%s", tt.typ, 1) + tt.body
			if _, err := processors.ParseHeader("h.sh", []byte(src)); err != nil {
				t.Fatal(err)
			}
			if err := (shell.Processor{}).Check(context.Background(), "h.sh", []byte(src)); err != nil {
				t.Fatal(err)
			}
			res := proctest.Run(t, proctest.Install(t, shell.Processor{}, "h", tt.typ, src), tt.stdin)
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
	err := (shell.Processor{}).Check(context.Background(), "reduce/bad.sh", []byte("#!/bin/sh\necho ok\nif true; then\n"))
	var ce *processors.CheckError
	if !errors.As(err, &ce) || ce.Line == 0 || !strings.HasPrefix(err.Error(), "reduce/bad.sh:") {
		t.Errorf("got %#v (%v)", err, err)
	}
}
