// Package writers delivers a finished request's result: inline (the
// gateway returns it), to a file, by email (SMTP) or by an HTTP POST. A
// writer never loses the result: it stays in etcd for GET /request whatever
// the writer does, and a failure is reported in the returned status.
package writers

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/mail"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"text/template"
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
	SMTPAddr     string // host:port
	SMTPFrom     string // envelope sender and From address
	SMTPUser     string // PLAIN auth when set
	SMTPPassword string
	SMTPTLS      *tls.Config   // STARTTLS settings (nil: system roots, the server's host name)
	SMTPTimeout  time.Duration // bound of one SMTP exchange (default 30s)
	HTTPClient   *http.Client
	Retries      int           // HTTP attempts after the first (default 4; negative: none)
	Backoff      time.Duration // first HTTP retry delay, doubled each time up to 30s (default 500ms)
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
		for _, a := range c.To {
			if err := ValidateAddress(a); err != nil {
				return fmt.Errorf("result_writer.to: %w", err)
			}
		}
		if _, err := subjectTemplate(c.Subject); err != nil {
			return fmt.Errorf("result_writer.subject: %w", err)
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

// ValidateAddress accepts a bare address such as ops@example.com.
func ValidateAddress(a string) error {
	if p, err := mail.ParseAddress(a); err != nil || p.Address != a {
		return fmt.Errorf("%q is not an email address (want name@domain)", a)
	}
	return nil
}

// DefaultSubject is JobX's subject; Subject is a text/template over
// {{.RequestID}}, {{.Workflow}} and {{.Job}} (JobX's %(request_id)s,
// %(workflow_name)s and %(job_name)s work too).
const DefaultSubject = "Request has completed under job [{{.Job}}] (workflow [{{.Workflow}}])"

var jobxPlaceholders = strings.NewReplacer("%(request_id)s", "{{.RequestID}}", "%(workflow_name)s", "{{.Workflow}}", "%(job_name)s", "{{.Job}}")

func subjectTemplate(s string) (*template.Template, error) {
	t, err := template.New("subject").Option("missingkey=error").Parse(jobxPlaceholders.Replace(cmp.Or(s, DefaultSubject)))
	if err == nil {
		err = t.Execute(io.Discard, Result{}) // unknown fields fail here, not at delivery
	}
	return t, err
}

// Write delivers res as c says and reports what happened.
func Write(ctx context.Context, c kvmodel.WriterConfig, srv Server, res Result) kvmodel.WriterStatus {
	st := kvmodel.WriterStatus{Kind: c.Kind, State: "written", Attempts: 1, At: kvmodel.Now()}
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
			st.Location, err = sendMail(ctx, c, srv, res)
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
	seen := map[string]int{}
	for _, p := range res.Pairs {
		var kv []json.RawMessage
		if err := json.Unmarshal(p, &kv); err != nil || len(kv) != 2 {
			return "", fmt.Errorf("result pair %s is not [key, value]", p)
		}
		name := EscapeName(kv[0])
		if seen[name]++; seen[name] > 1 {
			name += fmt.Sprintf("~%d", seen[name])
		}
		if err := os.WriteFile(filepath.Join(tmp, name), kv[1], 0o644); err != nil {
			return "", err
		}
	}
	os.RemoveAll(out)
	return out, os.Rename(tmp, out)
}

// maxEscaped bounds the escaped part of a file name, leaving room for the
// hash and a duplicate suffix within the usual 255-byte limit.
const maxEscaped = 200

// EscapeName turns a key's JSON into a file name: bytes outside
// [A-Za-z0-9._-] become %XX (so '/', '%' and '~' never appear raw), and
// names that would be "", "." or ".." are prefixed with "%". A name longer
// than 200 bytes is cut (never inside a %XX) and followed by "~" and the
// first 32 hex digits of the key JSON's SHA-256. The directory writer
// appends "~2", "~3", ... to the second, third, ... pair with the same key.
// Hence the part before the first "~" unescapes to the key's JSON (or, for
// a long key, to its first bytes).
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
	if len(name) > maxEscaped {
		cut := maxEscaped
		if i := strings.LastIndexByte(name[:cut], '%'); i >= cut-2 {
			cut = i
		}
		sum := sha256.Sum256(key)
		name = name[:cut] + "~" + hex.EncodeToString(sum[:16])
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

// sendMail sends a multipart mail: JobX's text, and the result attached
// as result.json (both quoted-printable, so no line exceeds SMTP's
// limit and the JSON stays readable in the raw message).
func sendMail(ctx context.Context, c kvmodel.WriterConfig, srv Server, res Result) (string, error) {
	tmpl, err := subjectTemplate(c.Subject)
	if err != nil {
		return "", fmt.Errorf("subject: %w", err)
	}
	var subject strings.Builder
	if err := tmpl.Execute(&subject, res); err != nil {
		return "", fmt.Errorf("subject: %w", err)
	}
	var body bytes.Buffer
	body.Write(Header("JobX Result", srv.SMTPFrom, c.To, subject.String(), res.RequestID))
	mw := multipart.NewWriter(&body)
	fmt.Fprintf(&body, "Content-Type: multipart/mixed; boundary=%s\r\n\r\n", mw.Boundary())
	text, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"text/plain; charset=utf-8"}, "Content-Transfer-Encoding": {"quoted-printable"}})
	text.Write(QuotedPrintable(fmt.Sprintf("Request ID: %s\nWorkflow: %s\nJob: %s\n\nThe result is attached.\n", res.RequestID, res.Workflow, res.Job)))
	att, _ := mw.CreatePart(textproto.MIMEHeader{
		"Content-Type":              {"application/json"},
		"Content-Disposition":       {`attachment; filename="result.json"`},
		"Content-Transfer-Encoding": {"quoted-printable"},
	})
	att.Write(QuotedPrintable(string(res.json())))
	mw.Close()
	to := strings.Join(c.To, ",")
	if err := SendMail(ctx, srv, c.To, body.Bytes()); err != nil {
		if errors.Is(err, ErrNoSMTP) {
			return "", err
		}
		return "", fmt.Errorf("send to %s via %s: %w", to, srv.SMTPAddr, err)
	}
	return to, nil
}

// post POSTs the pairs to c.URL with JobX's headers, retrying with
// exponential back-off. It returns the number of attempts.
func post(ctx context.Context, c kvmodel.WriterConfig, srv Server, res Result) (int, error) {
	client := srv.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	retries, backoff := srv.Retries, srv.Backoff
	switch {
	case retries == 0:
		retries = 4
	case retries < 0:
		retries = 0
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
		case <-time.After(min(backoff<<min(attempt-1, 16), 30*time.Second)):
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
