package gateway

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/jobx/jobx/kvmodel"
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

func TestOversizedBodiesAndArgumentsNameTheirLimit(t *testing.T) {
	t.Run("an argument over the item limit", func(t *testing.T) {
		value := strings.Repeat("x", kvmodel.MaxItemBytes)
		_, err := decodeJobBody("application/json", strings.NewReader(`{"arguments": {"small": 1, "big": "`+value+`"}}`))
		want := fmt.Sprintf(`the [name, value] item of argument "big" is %d bytes, over the %d-byte dataset item limit`, kvmodel.MaxItemBytes+10, kvmodel.MaxItemBytes)
		var ae *apiError
		if !errors.As(err, &ae) || ae.status != 413 || ae.msg != want {
			t.Fatalf("want 413 %q, got %v", want, err)
		}
	})
	t.Run("a body over --max-body", func(t *testing.T) {
		rec := httptest.NewRecorder()
		r := http.MaxBytesReader(rec, io.NopCloser(strings.NewReader(`{"arguments": {"x": "`+strings.Repeat("x", 100)+`"}}`)), 64)
		_, err := decodeJobBody("application/json", r)
		want := "request body is more than 64 bytes, over the 64-byte request body limit (set by jobx gateway --max-body)"
		var ae *apiError
		if !errors.As(err, &ae) || ae.status != 413 || ae.msg != want {
			t.Fatalf("want 413 %q, got %v", want, err)
		}
	})
}
