package gateway

import (
	"errors"
	"strings"
	"testing"
)

func TestJobBodyKeepsArgumentOrderAndValues(t *testing.T) {
	body, err := decodeJobBody("application/json; charset=utf-8", strings.NewReader(`{"arguments": {"z": 1, "a": {"nested": [1, 2]}, "m": "text"}, "keep": true}`))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range body.Arguments {
		got = append(got, string(p.Key)+"="+string(p.Value))
	}
	if strings.Join(got, " ") != `"z"=1 "a"={"nested":[1,2]} "m"="text"` || !body.Keep {
		t.Fatalf("got %v keep=%v", got, body.Keep)
	}
}

func TestJobBodyErrorsNameTheProblem(t *testing.T) {
	for _, tc := range []struct {
		name, ctype, body, want string
		status                  int
	}{
		{"no content type", "", `{}`, "missing Content-Type", 400},
		{"form content type", "application/x-www-form-urlencoded", `a=1`, `is not "application/json"`, 415},
		{"empty body", "application/json", ``, "empty body", 400},
		{"truncated JSON", "application/json", `{"arguments": {`, "not valid JSON", 400},
		{"top level array", "application/json", `[1]`, "must be a JSON object", 400},
		{"null arguments", "application/json", `{"arguments": null}`, `"arguments" must be a JSON object`, 400},
		{"string arguments", "application/json", `{"arguments": "x"}`, `"arguments" must be a JSON object`, 400},
		{"keep not a bool", "application/json", `{"arguments": {}, "keep": "yes"}`, `"keep" must be true or false`, 400},
		{"unknown field", "application/json", `{"arguments": {}, "args": {}}`, `unknown field "args"`, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeJobBody(tc.ctype, strings.NewReader(tc.body))
			var ae *apiError
			if !errors.As(err, &ae) || ae.status != tc.status || !strings.Contains(ae.msg, tc.want) {
				t.Fatalf("want %d mentioning %q, got %v", tc.status, tc.want, err)
			}
		})
	}
}
