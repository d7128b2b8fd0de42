package runner

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jobx/jobx/kvmodel"
	"github.com/jobx/jobx/sandbox"
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

// A line over the item limit is not kept, wherever the writes split it:
// the output fails with its real size and the limit, and the lines around
// it are still numbered as written.
func TestLineWriterRefusesALineOverTheItemLimit(t *testing.T) {
	out := "{\"jobx\":\"return\"}\n[\"k\",\"" + strings.Repeat("x", 40) + "\"]\n[\"a\",1]\n"
	for _, split := range []int{1, 7, 30, len(out)} {
		o := &mapperOutput{}
		w := &lineWriter{fn: o.line, max: 32}
		for rest := out; rest != ""; {
			n := min(split, len(rest))
			w.Write([]byte(rest[:n]))
			rest = rest[n:]
			if len(w.partial) > 32 {
				t.Fatalf("writes of %d bytes: %d bytes of a line kept", split, len(w.partial))
			}
		}
		err := w.Close()
		var le *kvmodel.LimitError
		if !errors.As(err, &le) || err.Error() != "stdout line 2 is 48 bytes, over the 32-byte dataset item limit" {
			t.Fatalf("writes of %d bytes: got %v", split, err)
		}
		if len(o.pairs) != 0 {
			t.Fatalf("writes of %d bytes: %d pairs kept after the error", split, len(o.pairs))
		}
	}
	// The limit is inclusive, and a last line without a newline counts.
	w := &lineWriter{fn: (&pairsOutput{}).line, max: 8}
	w.Write([]byte("[\"k\",12]\n[\"k\",123]"))
	if err := w.Close(); err == nil || err.Error() != "stdout line 2 is 9 bytes, over the 8-byte dataset item limit" {
		t.Fatalf("got %v", err)
	}
}

func TestAnItemOverTheLimitFailsAsItemLimit(t *testing.T) {
	h := &kvmodel.Handler{Name: "map_big"}
	w := &lineWriter{fn: (&pairsOutput{}).line, max: kvmodel.MaxItemBytes}
	w.Write([]byte(`["k","` + strings.Repeat("x", kvmodel.MaxItemBytes) + "\"]\n"))
	f := failureOf(h, &sandbox.Outcome{}, w.Close(), sandbox.Limits{})
	want := fmt.Sprintf("handler map_big wrote a dataset item over its limit: stdout line 1 is %d bytes, over the %d-byte dataset item limit", kvmodel.MaxItemBytes+8, kvmodel.MaxItemBytes)
	if f == nil || f.Kind != kvmodel.FailureItemLimit || f.Message != want {
		t.Fatalf("want item_limit %q, got %+v", want, f)
	}
}
