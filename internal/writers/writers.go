// Package writers delivers a finished request's result: inline (the
// gateway returns it), to a file, by email (SMTP) or by an HTTP POST. A
// writer never loses the result: it stays in etcd for GET /request whatever
// the writer does, and a failure is reported in the returned status.
package writers

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/smtp"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jobx/jobx/kvmodel"
)

// Kinds of writer.
const (
	Inline = "inline"
	File   = "file"
	Email  = "email"
	HTTP   = "http"
)

// DefaultPath is JobX's file writer root.
const DefaultPath = "/tmp/mr_results"

// Server holds the settings writers share, from the runner's flags.
type Server struct {
	SMTPAddr   string // host:port
	SMTPFrom   string
	HTTPClient *http.Client
	Retries    int           // HTTP attempts after the first (default 4)
	Backoff    time.Duration // first HTTP retry delay, doubled each time (default 500ms)
}

// Result is one request's result.
type Result struct {
	RequestID, Workflow, Job string
	Pairs                    []json.RawMessage // each a [key, value] array
}

func (r Result) json() []byte {
	b := []byte("[")
	for i, p := range r.Pairs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, p...)
	}
	return append(b, ']')
}

// Validate checks a writer config, naming the bad field.
func Validate(c kvmodel.WriterConfig) error {
	switch c.Kind {
	case "", Inline:
	case File:
		if c.Path != "" && !filepath.IsAbs(c.Path) {
			return fmt.Errorf("result_writer.path %q must be absolute", c.Path)
		}
	case Email:
		if len(c.To) == 0 {
			return fmt.Errorf("result_writer.to: the email writer needs at least one recipient")
		}
	case HTTP:
		if !strings.HasPrefix(c.URL, "http://") && !strings.HasPrefix(c.URL, "https://") {
			return fmt.Errorf("result_writer.url %q must be an http:// or https:// URL", c.URL)
		}
	default:
		return fmt.Errorf("result_writer.kind %q is not inline, file, email or http", c.Kind)
	}
	return nil
}

// Write delivers res as c says and reports what happened.
func Write(ctx context.Context, c kvmodel.WriterConfig, srv Server, res Result) kvmodel.WriterStatus {
	st := kvmodel.WriterStatus{Kind: c.Kind, State: "written", Attempts: 1}
	if st.Kind == "" {
		st.Kind = Inline
	}
	var err error
	if err = Validate(c); err == nil {
		switch st.Kind {
		case Inline:
		case File:
			st.Location, err = writeFile(c, res)
		case Email:
			st.Location, err = sendMail(c, srv, res)
		case HTTP:
			st.Location = c.URL
			st.Attempts, err = post(ctx, c, srv, res)
		}
	}
	if err != nil {
		st.State, st.Error = "failed", fmt.Sprintf("%s writer: %v", st.Kind, err)
	}
	return st
}

// writeFile writes <path>/<workflow>/<request>.json (the JSON array of
// pairs), or with AsDirectory one file per pair in <path>/<workflow>/<request>/,
// named by the escaped JSON of the key and holding the value's JSON. Files
// appear atomically.
func writeFile(c kvmodel.WriterConfig, res Result) (string, error) {
	root := c.Path
	if root == "" {
		root = DefaultPath
	}
	dir := filepath.Join(root, res.Workflow)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if !c.AsDirectory {
		path := filepath.Join(dir, res.RequestID+".json")
		return path, atomicWrite(path, res.json())
	}
	out := filepath.Join(dir, res.RequestID)
	tmp := out + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return "", err
	}
	for _, p := range res.Pairs {
		var kv []json.RawMessage
		if err := json.Unmarshal(p, &kv); err != nil || len(kv) != 2 {
			return "", fmt.Errorf("result pair %s is not [key, value]", p)
		}
		if err := os.WriteFile(filepath.Join(tmp, EscapeName(kv[0])), kv[1], 0o644); err != nil {
			return "", err
		}
	}
	os.RemoveAll(out)
	return out, os.Rename(tmp, out)
}

// EscapeName turns a key's JSON into a file name: bytes outside
// [A-Za-z0-9._-] become %XX, and names that would be "", "." or ".."
// are prefixed with "%", so every key maps to one safe name and back.
func EscapeName(key []byte) string {
	var b strings.Builder
	for _, c := range key {
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	name := b.String()
	if name == "" || name == "." || name == ".." {
		name = "%" + name
	}
	return name
}

func atomicWrite(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// sendMail sends a multipart mail with the result attached as result.json.
func sendMail(c kvmodel.WriterConfig, srv Server, res Result) (string, error) {
	if srv.SMTPAddr == "" || srv.SMTPFrom == "" {
		return "", fmt.Errorf("no SMTP server configured (runner --smtp-addr and --smtp-from)")
	}
	subject := c.Subject
	if subject == "" {
		subject = fmt.Sprintf("Request has completed under job [%s] (workflow [%s])", res.Job, res.Workflow)
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	var id [8]byte
	rand.Read(id[:])
	fmt.Fprintf(&body, "From: JobX Result <%s>\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%s.%s@jobx>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=%s\r\n\r\n",
		srv.SMTPFrom, strings.Join(c.To, ", "), subject, time.Now().UTC().Format(time.RFC1123Z), res.RequestID, hex.EncodeToString(id[:]), mw.Boundary())
	text, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"text/plain; charset=utf-8"}})
	fmt.Fprintf(text, "Request ID: %s\r\nWorkflow: %s\r\nJob: %s\r\n\r\nThe result is attached.\r\n", res.RequestID, res.Workflow, res.Job)
	att, _ := mw.CreatePart(textproto.MIMEHeader{
		"Content-Type":        {"application/json"},
		"Content-Disposition": {`attachment; filename="result.json"`},
	})
	att.Write(res.json())
	mw.Close()
	if err := smtp.SendMail(srv.SMTPAddr, nil, srv.SMTPFrom, c.To, body.Bytes()); err != nil {
		return "", fmt.Errorf("send to %s via %s: %w", strings.Join(c.To, ","), srv.SMTPAddr, err)
	}
	return strings.Join(c.To, ","), nil
}

// post POSTs the pairs to c.URL with JobX's headers, retrying with
// exponential back-off. It returns the number of attempts.
func post(ctx context.Context, c kvmodel.WriterConfig, srv Server, res Result) (int, error) {
	client := srv.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	retries, backoff := srv.Retries, srv.Backoff
	if retries <= 0 {
		retries = 4
	}
	if backoff <= 0 {
		backoff = 500 * time.Millisecond
	}
	var err error
	for attempt := 1; ; attempt++ {
		err = postOnce(ctx, client, c.URL, res)
		if err == nil || attempt > retries {
			return attempt, err
		}
		select {
		case <-ctx.Done():
			return attempt, ctx.Err()
		case <-time.After(backoff << (attempt - 1)):
		}
	}
}

func postOnce(ctx context.Context, client *http.Client, url string, res Result) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(res.json()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-REQUEST-ID", res.RequestID)
	req.Header.Set("X-WORKFLOW-NAME", res.Workflow)
	req.Header.Set("X-JOB-NAME", res.Job)
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("POST %s: %s %s", url, resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}
