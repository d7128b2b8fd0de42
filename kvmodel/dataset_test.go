package kvmodel

import (
	"bytes"
	"testing"
)

var pairLines = []string{
	`["w",1]`, `["a,b",[1,2,{"x":[3]}]]`, `["q\"uo,te\\",{"k":"]"}]`, `[1,2]`, `[null,true]`,
	`["é\u2028",-1.5e3]`, `[[1,[2]],{"a":{"b":[]}}]`, `["x", 1]`, ` ["x",1]`, `["x",1] `,
	`["x"]`, `["x",1,2]`, `[]`, `["x",1`, `["x",]`, `{"p":1}`, `["unterminated,1]`, `[1 2]`,
	`["\\",1]`, `["a\\\"",[",",","]]`, `[{},[]]`, `["x",01]`, "[\"x\",\t1]",
}

// ParsePair splits the compact lines the runtimes write without
// encoding/json, and must give exactly what encoding/json gives for every
// line: the same key and value, or an error.
func TestParsePairMatchesEncodingJSON(t *testing.T) {
	for _, line := range pairLines {
		checkParsePair(t, []byte(line))
	}
}

func FuzzParsePair(f *testing.F) {
	for _, line := range pairLines {
		f.Add([]byte(line))
	}
	f.Fuzz(checkParsePair)
}

func checkParsePair(t *testing.T, line []byte) {
	got, err := ParsePair(line)
	want, wantErr := parsePairJSON(line)
	if (err == nil) != (wantErr == nil) {
		t.Fatalf("%q: error %v, encoding/json's %v", line, err, wantErr)
	}
	if err == nil && (!bytes.Equal(got.Key, want.Key) || !bytes.Equal(got.Value, want.Value)) {
		t.Fatalf("%q: got %s, %s; encoding/json gives %s, %s", line, got.Key, got.Value, want.Key, want.Value)
	}
	if err == nil && len(line) > 0 {
		orig := line[0]
		line[0] ^= 0xff // the pair must not share memory with the line
		if got2 := string(got.Key) + string(got.Value); got2 != string(want.Key)+string(want.Value) {
			t.Fatalf("%q: the pair changed with its line", line)
		}
		line[0] = orig
	}
}

func TestDecodePairItemsReadsWhatAppendPairItemWrites(t *testing.T) {
	var data []byte
	var pairs []Pair
	for _, line := range pairLines {
		if p, err := parsePairJSON([]byte(line)); err == nil {
			pairs = append(pairs, p)
			data = AppendPairItem(data, p)
		}
	}
	data = append(data, "{ \"p\" : [\"spaced\", 1] }\n"...) // written by hand: the slow path
	got, err := DecodePairItems(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(pairs)+1 || string(got[len(got)-1].Key) != `"spaced"` {
		t.Fatalf("decoded %d pairs, want %d: %v", len(got), len(pairs)+1, got)
	}
	for i, p := range pairs {
		if !bytes.Equal(got[i].Key, p.Key) || !bytes.Equal(got[i].Value, p.Value) {
			t.Fatalf("pair %d: got %s, %s; want %s, %s", i, got[i].Key, got[i].Value, p.Key, p.Value)
		}
	}
}

// DecodePairArrays gives a result's pairs as the API shows them: each
// item's [key, value], compact, an empty result as an empty list, and the
// items before a bad one with the error.
func TestDecodePairArraysGivesEachItemsArray(t *testing.T) {
	data := AppendPairItem(nil, Pair{Key: []byte(`"a"`), Value: []byte(`1`)})
	data = append(data, "{ \"p\" : [\"b\", [1, 2]] }\n"...)
	got, err := DecodePairArrays(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || string(got[0]) != `["a",1]` || string(got[1]) != `["b",[1,2]]` {
		t.Fatalf("got %q, want [\"a\",1] and [\"b\",[1,2]]", got)
	}
	if got, err := DecodePairArrays(nil); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("an empty dataset: got %q, %v; want an empty list", got, err)
	}
	got, err = DecodePairArrays(append(AppendPairItem(nil, Pair{Key: []byte(`"a"`), Value: []byte(`1`)}), "{\"p\":[\"x\"]}\n"...))
	if err == nil || len(got) != 1 || string(got[0]) != `["a",1]` {
		t.Fatalf("a bad second item: got %q, %v; want the first item and an error", got, err)
	}
}
