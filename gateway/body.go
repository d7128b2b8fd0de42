package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"

	"github.com/jobx/jobx/kvmodel"
)

// jobBody is a decoded POST /job body.
type jobBody struct {
	Arguments []kvmodel.Pair // in the body's order
	Keep      bool
}

// decodeJobBody parses {"arguments": {...}, "keep": bool}. Argument order is
// kept (it becomes the root mapper's input order). Every error names what
// is wrong with the body.
func decodeJobBody(contentType string, r io.Reader) (*jobBody, error) {
	if contentType == "" {
		return nil, badRequest(`missing Content-Type: send the body as "application/json"`)
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "application/json" {
		return nil, &apiError{415, "unsupported_media_type", fmt.Sprintf(`Content-Type %q is not "application/json"`, contentType)}
	}
	raw, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	return parseJobBody(raw)
}

func parseJobBody(raw []byte) (*jobBody, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, badRequest(`empty body: want {"arguments": {...}}`)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, badRequest(fmt.Sprintf("body is not valid JSON at byte %d: %v", se.Offset, err))
		}
		return nil, badRequest(`body must be a JSON object {"arguments": {...}}: ` + err.Error())
	}
	body := &jobBody{}
	for k, v := range top {
		switch k {
		case "arguments":
		case "keep":
			if err := json.Unmarshal(v, &body.Keep); err != nil {
				return nil, badRequest(`"keep" must be true or false`)
			}
		default:
			return nil, badRequest(fmt.Sprintf(`unknown field %q in body: want {"arguments": {...}} (and optionally "keep")`, k))
		}
	}
	args, ok := top["arguments"]
	if !ok {
		return nil, badRequest(`body lacks "arguments": want {"arguments": {...}}`)
	}
	dec := json.NewDecoder(bytes.NewReader(args))
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return nil, badRequest(`"arguments" must be a JSON object of name: value`)
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, badRequest(`"arguments": ` + err.Error())
		}
		key, _ := json.Marshal(tok.(string))
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, badRequest(fmt.Sprintf(`"arguments" %q: %v`, tok, err))
		}
		body.Arguments = append(body.Arguments, kvmodel.Pair{Key: key, Value: compactJSON(v)})
	}
	return body, nil
}

func compactJSON(raw json.RawMessage) json.RawMessage {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return raw
	}
	return b.Bytes()
}
