package runner

import (
	"encoding/json"
	"testing"
)

// FuzzMapperOutput: any stdout either parses into a directive and pairs of
// valid JSON, or is rejected with an error naming the line; never a panic.
func FuzzMapperOutput(f *testing.F) {
	for _, seed := range []string{
		"{\"jobx\":\"return\"}\n[\"a\",1]\n[2,[3]]\n",
		"{\"jobx\":\"map\",\"step\":\"s\"}\n[0,5]\n",
		"[1,2]\n", "{\"jobx\":\"map\"}\n", "{\"jobx\":\"return\"}\n[1,2,3]\n", "{\"jobx\":\"return\"}\n[1,\n",
		"\n\n{\"jobx\":\"return\"}", "{\"jobx\":\"return\"}\n[\"\\ud800\",1]\n",
	} {
		f.Add([]byte(seed), 7)
	}
	f.Fuzz(func(t *testing.T, out []byte, split int) {
		o := &mapperOutput{}
		w := &lineWriter{fn: o.line}
		if split < 0 {
			split = -split
		}
		if len(out) > 0 {
			split %= len(out) + 1
			w.Write(out[:split])
			w.Write(out[split:])
		}
		if err := w.Close(); err != nil {
			if _, ok := err.(*protocolError); !ok {
				t.Fatalf("error is not a protocolError: %v", err)
			}
			return
		}
		if len(o.pairs) > 0 && o.directive == nil {
			t.Fatal("pairs without a directive")
		}
		for _, p := range o.pairs {
			if !json.Valid(p.Key) || !json.Valid(p.Value) {
				t.Fatalf("pair %s %s is not valid JSON", p.Key, p.Value)
			}
		}
	})
}
