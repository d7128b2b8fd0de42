package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

// FuzzParseJobBody: any body either decodes into arguments that are each
// valid JSON (keys are strings) or fails with a 4xx apiError; never a panic.
func FuzzParseJobBody(f *testing.F) {
	for _, seed := range []string{
		`{"arguments":{"arg1":17413412}}`,
		`{"arguments":{"a":[1,{"b":null}],"c":"\u00e9"},"keep":true}`,
		`{"arguments":{}}`, `{"arguments":[]}`, `[]`, `null`, `{"argz":1}`, `{"arguments":{"a":1,"a":2}}`,
		"{\"arguments\":{\"\x00\":1}}", `{"arguments":{"a":1}`, ``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		body, err := parseJobBody(raw)
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) || ae.status < 400 || ae.status >= 500 || ae.msg == "" {
				t.Fatalf("error is not a 4xx apiError with a message: %#v", err)
			}
			return
		}
		for _, p := range body.Arguments {
			var k string
			if err := json.Unmarshal(p.Key, &k); err != nil {
				t.Fatalf("argument key %q is not a JSON string", p.Key)
			}
			if !json.Valid(p.Value) || bytes.ContainsAny(p.Value, "\n") {
				t.Fatalf("argument %s value %q is not compact JSON", k, p.Value)
			}
		}
	})
}
