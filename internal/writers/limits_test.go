package writers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jobx/jobx/internal/testenv"
	"github.com/jobx/jobx/internal/writers"
	"github.com/jobx/jobx/kvmodel"
)

func bigResult(n int) writers.Result {
	r := writers.Result{RequestID: "r1", Workflow: "wf", Job: "j"}
	for i := range n {
		r.Pairs = append(r.Pairs, json.RawMessage(fmt.Sprintf(`["key %d","value %d with ünïcode"]`, i, i)))
	}
	return r
}

func TestEmailWriterSendsALargeResult(t *testing.T) {
	smtp := testenv.SMTP(t)
	st := writers.Write(context.Background(), kvmodel.WriterConfig{Kind: "email", To: []string{"ops@example.com"}},
		writers.Server{SMTPAddr: smtp.Addr, SMTPFrom: "jobx@example.com"}, bigResult(500))
	if st.State != "written" {
		t.Fatalf("a 500-pair result was not mailed: %+v", st)
	}
}

func TestEmailWriterGivesUpOnAHungServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // accepts, never greets
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	done := make(chan kvmodel.WriterStatus, 1)
	go func() {
		done <- writers.Write(ctx, kvmodel.WriterConfig{Kind: "email", To: []string{"ops@example.com"}}, writers.Server{SMTPAddr: ln.Addr().String(), SMTPFrom: "jobx@example.com"}, res)
	}()
	select {
	case st := <-done:
		if st.State != "failed" {
			t.Fatalf("%+v", st)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the email writer ignored its context: still blocked on a silent SMTP server after 5s")
	}
}

func TestEmailSubjectCannotInjectHeaders(t *testing.T) {
	smtp := testenv.SMTP(t)
	st := writers.Write(context.Background(), kvmodel.WriterConfig{Kind: "email", To: []string{"ops@example.com"}, Subject: "Résultat\r\nBcc: victim@example.com"},
		writers.Server{SMTPAddr: smtp.Addr, SMTPFrom: "jobx@example.com"}, res)
	for _, m := range smtp.Inbox() {
		msg, err := mail.ReadMessage(strings.NewReader(string(m.Data)))
		if err == nil && msg.Header.Get("Bcc") != "" {
			t.Fatalf("subject injected a Bcc header (%+v)", st)
		}
	}
}

func TestEmailSubjectTemplate(t *testing.T) {
	smtp := testenv.SMTP(t)
	writers.Write(context.Background(), kvmodel.WriterConfig{Kind: "email", To: []string{"ops@example.com"}, Subject: "done: {{.RequestID}} {{.Workflow}}/{{.Job}}"},
		writers.Server{SMTPAddr: smtp.Addr, SMTPFrom: "jobx@example.com"}, res)
	in := smtp.Inbox()
	if len(in) != 1 {
		t.Fatalf("inbox %d", len(in))
	}
	msg, _ := mail.ReadMessage(strings.NewReader(string(in[0].Data)))
	if got := msg.Header.Get("Subject"); got != "done: r1 wf/j" {
		t.Fatalf("subject %q", got)
	}
}

func TestDirectoryWriterLongAndDuplicateKeys(t *testing.T) {
	dir := t.TempDir()
	long := strings.Repeat("ü", 100)
	r := writers.Result{RequestID: "r2", Workflow: "wf", Pairs: []json.RawMessage{
		json.RawMessage(`["` + long + `",1]`),
		json.RawMessage(`["dup",1]`), json.RawMessage(`["dup",2]`),
	}}
	st := writers.Write(context.Background(), kvmodel.WriterConfig{Kind: "file", Path: dir, AsDirectory: true}, writers.Server{}, r)
	if st.State != "written" {
		t.Fatalf("long key: %+v", st)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "wf", "r2"))
	if len(entries) != 3 {
		t.Fatalf("want 3 files (no pair lost), got %v", entries)
	}
}
