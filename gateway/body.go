package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"

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
	if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
		return nil, &tooLargeBody{mbe, bodyTooLarge(-1, mbe.Limit)}
	}
	if err != nil {
		return nil, err
	}
	return parseJobBody(raw)
}

// tooLargeBody is a body cut off at --max-body: an apiError that also
// matches *http.MaxBytesError, so that the caller knows to discard the rest.
type tooLargeBody struct {
	mbe *http.MaxBytesError
	err error
}

func (e *tooLargeBody) Error() string   { return e.err.Error() }
func (e *tooLargeBody) Unwrap() []error { return []error{e.err, e.mbe} }

// Limits on what discardBody reads of a body it refuses.
const (
	maxDiscard  = 64 << 20
	discardTime = 10 * time.Second
)

// discardBody reads and drops what is left of a refused body of
// contentLength bytes (negative: unknown), at most maxDiscard bytes for at
// most discardTime, before the answer goes out: a client that sends its
// whole body before reading (Python's http.client) then gets the answer,
// not a broken pipe. A larger body is cut off at once.
func discardBody(w http.ResponseWriter, body io.Reader, contentLength int64) {
	if contentLength > maxDiscard {
		return
	}
	http.NewResponseController(w).SetReadDeadline(time.Now().Add(discardTime))
	io.CopyN(io.Discard, body, maxDiscard)
}

// bodyTooLarge is the error for a body of size bytes (negative: unknown,
// cut off) over the limit of --max-body.
func bodyTooLarge(size, limit int64) error {
	err := &kvmodel.LimitError{What: "request body", Size: size, Limit: limit, Name: "request body", SetBy: "jobx gateway --max-body"}
	return &apiError{http.StatusRequestEntityTooLarge, "too_large", err.Error()}
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
		p := kvmodel.Pair{Key: key, Value: compactJSON(v)}
		if err := kvmodel.CheckItem(fmt.Sprintf("the [name, value] item of argument %q", tok), int64(len(p.Key)+len(p.Value)+3)); err != nil {
			return nil, &apiError{http.StatusRequestEntityTooLarge, "too_large", err.Error()}
		}
		body.Arguments = append(body.Arguments, p)
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
