package writers_test

import (
	"context"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jobx/jobx/internal/testenv"
	"github.com/jobx/jobx/internal/writers"
	"github.com/jobx/jobx/kvmodel"
)

var res = writers.Result{RequestID: "r1", Workflow: "wf", Job: "j", Pairs: []json.RawMessage{
	json.RawMessage(`["a key with spaces","a value with spaces"]`),
	json.RawMessage(`["../etc/passwd",{"nested":[1,2,"ü"]}]`),
	json.RawMessage(`[3,null]`),
}}

func TestFileWriterRoundTripsAnyJSON(t *testing.T) {
	dir := t.TempDir()
	st := writers.Write(context.Background(), kvmodel.WriterConfig{Kind: "file", Path: dir}, writers.Server{}, res)
	if st.State != "written" || st.Location != filepath.Join(dir, "wf", "r1.json") {
		t.Fatalf("status %+v", st)
	}
	b, _ := os.ReadFile(st.Location)
	var got [][]any
	if err := json.Unmarshal(b, &got); err != nil || len(got) != 3 || got[0][1] != "a value with spaces" {
		t.Fatalf("file %s: %v", b, err)
	}
	st = writers.Write(context.Background(), kvmodel.WriterConfig{Kind: "file", Path: dir, AsDirectory: true}, writers.Server{}, res)
	entries, _ := os.ReadDir(st.Location)
	if st.State != "written" || len(entries) != 3 {
		t.Fatalf("directory %+v: %v", st, entries)
	}
	for _, p := range res.Pairs {
		var kv []json.RawMessage
		json.Unmarshal(p, &kv)
		v, err := os.ReadFile(filepath.Join(st.Location, writers.EscapeName(kv[0])))
		if err != nil || string(v) != string(kv[1]) {
			t.Fatalf("key %s: %q %v", kv[0], v, err)
		}
		if strings.ContainsAny(writers.EscapeName(kv[0]), "/ ") {
			t.Fatalf("unsafe name %q", writers.EscapeName(kv[0]))
		}
	}
}

func TestEmailWriterSendsTheResultAsAnAttachment(t *testing.T) {
	smtp := testenv.SMTP(t)
	srv := writers.Server{SMTPAddr: smtp.Addr, SMTPFrom: "jobx@example.com"}
	st := writers.Write(context.Background(), kvmodel.WriterConfig{Kind: "email", To: []string{"ops@example.com"}}, srv, res)
	if st.State != "written" {
		t.Fatalf("status %+v", st)
	}
	inbox := smtp.Inbox()
	if len(inbox) != 1 || inbox[0].To[0] != "ops@example.com" {
		t.Fatalf("inbox %+v", inbox)
	}
	msg, err := mail.ReadMessage(strings.NewReader(string(inbox[0].Data)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(msg.Header.Get("Subject"), "job [j] (workflow [wf])") {
		t.Fatalf("subject %q", msg.Header.Get("Subject"))
	}
	_, params, _ := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	mr := multipart.NewReader(msg.Body, params["boundary"])
	var attachment []byte
	for {
		p, err := mr.NextPart()
		if err != nil {
			break
		}
		if p.FileName() == "result.json" {
			attachment, _ = io.ReadAll(p)
		}
	}
	var pairs []json.RawMessage
	if err := json.Unmarshal(attachment, &pairs); err != nil || len(pairs) != 3 || string(pairs[1]) != string(res.Pairs[1]) {
		t.Fatalf("attachment %s: %v", attachment, err)
	}
	// No SMTP server: a clear failure, nothing lost.
	st = writers.Write(context.Background(), kvmodel.WriterConfig{Kind: "email", To: []string{"x@y"}}, writers.Server{}, res)
	if st.State != "failed" || !strings.Contains(st.Error, "no SMTP server") {
		t.Fatalf("status %+v", st)
	}
}

func TestHTTPWriterRetriesWithBackoff(t *testing.T) {
	var calls atomic.Int32
	var got []byte
	var headers http.Header
	flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) < 3 {
			http.Error(w, "try later", http.StatusServiceUnavailable)
			return
		}
		got, _ = io.ReadAll(r.Body)
		headers = r.Header
	}))
	defer flaky.Close()
	srv := writers.Server{Backoff: 10 * time.Millisecond}
	st := writers.Write(context.Background(), kvmodel.WriterConfig{Kind: "http", URL: flaky.URL}, srv, res)
	if st.State != "written" || st.Attempts != 3 || headers.Get("X-REQUEST-ID") != "r1" || headers.Get("X-WORKFLOW-NAME") != "wf" || headers.Get("X-JOB-NAME") != "j" {
		t.Fatalf("status %+v headers %v", st, headers)
	}
	var pairs []json.RawMessage
	if json.Unmarshal(got, &pairs) != nil || len(pairs) != 3 {
		t.Fatalf("body %s", got)
	}
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", 500) }))
	defer down.Close()
	st = writers.Write(context.Background(), kvmodel.WriterConfig{Kind: "http", URL: down.URL}, writers.Server{Retries: 2, Backoff: time.Millisecond}, res)
	if st.State != "failed" || st.Attempts != 3 || !strings.Contains(st.Error, down.URL) {
		t.Fatalf("status %+v", st)
	}
}

func TestValidateNamesTheBadField(t *testing.T) {
	for _, c := range []struct {
		cfg  kvmodel.WriterConfig
		want string
	}{
		{kvmodel.WriterConfig{Kind: "s3"}, "result_writer.kind"},
		{kvmodel.WriterConfig{Kind: "email"}, "result_writer.to"},
		{kvmodel.WriterConfig{Kind: "http", URL: "ftp://x"}, "result_writer.url"},
		{kvmodel.WriterConfig{Kind: "file", Path: "rel"}, "result_writer.path"},
	} {
		if err := writers.Validate(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: want an error naming %s, got %v", c.cfg, c.want, err)
		}
	}
}
