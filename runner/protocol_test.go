package runner

import (
	"strings"
	"testing"
)

func TestLineWriterSplitsAcrossWrites(t *testing.T) {
	var got []string
	w := &lineWriter{fn: func(n int, line []byte) error { got = append(got, string(line)); return nil }}
	for _, chunk := range []string{`{"jo`, "bx\":\"return\"}\n[1,", "2]\n\n[3,4]"} {
		w.Write([]byte(chunk))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, "|") != `{"jobx":"return"}|[1,2]|[3,4]` {
		t.Fatalf("got %q", got)
	}
}

func TestMapperOutputRules(t *testing.T) {
	for _, tc := range []struct {
		name, out, wantErr string
		pairs              int
	}{
		{"a leaf", "{\"jobx\":\"return\"}\n[\"a\",1]\n[\"b\",[1,2]]\n", "", 2},
		{"a branch", "{\"jobx\":\"map\",\"step\":\"s\"}\n[0,5]\n", "", 1},
		{"no directive", "[\"a\",1]\n", "first line must be", 0},
		{"a branch without a step", "{\"jobx\":\"map\"}\n", `must name its "step"`, 0},
		{"invalid JSON", "{\"jobx\":\"return\"}\n[\"a\",\n", "line 2", 0},
		{"not a pair", "{\"jobx\":\"return\"}\n[1,2,3]\n", "array of 3", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := &mapperOutput{}
			w := &lineWriter{fn: o.line}
			w.Write([]byte(tc.out))
			err := w.Close()
			if tc.wantErr == "" {
				if err != nil || len(o.pairs) != tc.pairs {
					t.Fatalf("err %v, %d pairs", err, len(o.pairs))
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("want an error mentioning %q, got %v", tc.wantErr, err)
			}
		})
	}
}

func TestGroupsAndPairsRender(t *testing.T) {
	g := &groupsOutput{}
	if err := g.line(1, []byte(`["k", [1, 2]]`)); err != nil {
		t.Fatal(err)
	}
	if got := string(groupLines(g.groups)); got != "[\"k\",[1,2]]\n" {
		t.Fatalf("got %q", got)
	}
	if err := g.line(2, []byte(`["k", 1]`)); err == nil {
		t.Fatal("a combiner line without a value list was accepted")
	}
}
