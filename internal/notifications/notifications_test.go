package notifications_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jobx/jobx/internal/notifications"
	"github.com/jobx/jobx/internal/testenv"
	"github.com/jobx/jobx/internal/writers"
	"github.com/jobx/jobx/kvmodel"
)

func TestNoChannelMeansLogOnly(t *testing.T) {
	s := &notifications.Sender{Log: testenv.Logger(t)}
	if err := s.Send(context.Background(), nil, notifications.Event{Kind: notifications.RequestFailed, Message: "x"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Send(context.Background(), &kvmodel.NotifyConfig{}, notifications.Event{Kind: notifications.Handler, Message: "x"}); err != nil {
		t.Fatal(err)
	}
}

func TestHTTPAndEmailChannelsReceiveWhatTheConfigWants(t *testing.T) {
	var mu sync.Mutex
	var got []notifications.Event
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var e notifications.Event
		json.NewDecoder(r.Body).Decode(&e)
		mu.Lock()
		got = append(got, e)
		mu.Unlock()
	}))
	defer recv.Close()
	smtp := testenv.SMTP(t)
	s := &notifications.Sender{SMTP: writers.Server{SMTPAddr: smtp.Addr, SMTPFrom: "jobx@example.com"}, Log: testenv.Logger(t)}
	cfg := &kvmodel.NotifyConfig{HTTP: recv.URL, Email: []string{"ops@example.com"}}
	ctx := context.Background()
	s.Send(ctx, cfg, notifications.Event{Workflow: "wf", Kind: notifications.RequestFailed, Level: "error", Message: "request r1 failed", RequestID: "r1"})
	s.Send(ctx, cfg, notifications.Event{Workflow: "wf", Kind: notifications.RequestDone, Message: "request r2 done"}) // completion is opt-in
	if len(got) != 1 || got[0].Message != "request r1 failed" || got[0].Level != "ERROR" || got[0].RequestID != "r1" || got[0].Created == 0 {
		t.Fatalf("http channel got %+v", got)
	}
	inbox := smtp.Inbox()
	if len(inbox) != 1 || !strings.Contains(string(inbox[0].Data), "request r1 failed") {
		t.Fatalf("email channel got %+v", inbox)
	}
	cfg.OnCompletion = true
	s.Send(ctx, cfg, notifications.Event{Workflow: "wf", Kind: notifications.RequestDone, Message: "request r3 done"})
	if len(got) != 2 || len(smtp.Inbox()) != 2 {
		t.Fatalf("opted-in completion not sent: %d http, %d mail", len(got), len(smtp.Inbox()))
	}
	// Every channel down: an error naming them; one down: none.
	bad := &kvmodel.NotifyConfig{HTTP: "http://127.0.0.1:1/", Email: []string{"x@y"}}
	if err := (&notifications.Sender{Log: testenv.Logger(t)}).Send(ctx, bad, notifications.Event{Kind: notifications.Handler, Message: "m"}); err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("want an error naming the channel, got %v", err)
	}
}

func TestParseHandlerLine(t *testing.T) {
	e, ok := notifications.ParseHandlerLine(`JOBX-NOTIFY {"level": "warning", "message": "disk at 91%", "handler": "map_x", "workflow": "wf", "request_id": "r", "invocation_id": "i"}`)
	if !ok || e.Kind != notifications.Handler || e.Level != "warning" || e.Message != "disk at 91%" || e.Name != "MR_HANDLER.map_x" || e.InvocationID != "i" {
		t.Fatalf("%+v %v", e, ok)
	}
	if _, ok := notifications.ParseHandlerLine("an ordinary log line"); ok {
		t.Fatal("parsed an ordinary line")
	}
}

func TestListenPrintsJobXLines(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var out testenv.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- notifications.Listen(ctx, ln, &out) }()
	s := &notifications.Sender{Log: testenv.Logger(t)}
	u := "http://" + ln.Addr().String() + "/"
	s.Send(ctx, &kvmodel.NotifyConfig{HTTP: u}, notifications.Event{Kind: notifications.Handler, Name: "MR_HANDLER.map_x", Level: "info", Message: "hello from a handler", Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.Local)})
	form := url.Values{"name": {"MR_HANDLER.HTTP.legacy"}, "levelname": {"WARNING"}, "msg": {"from JobX"}, "created": {"1767322800.5"}}
	resp, err := http.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
	cancel()
	<-done
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || lines[0] != "2026-01-02 03:04:05  MR_HANDLER.map_x                               INFO  hello from a handler" ||
		!strings.Contains(lines[1], "MR_HANDLER.HTTP.legacy") || !strings.HasSuffix(lines[1], "  WARNING  from JobX") {
		t.Fatalf("lines:\n%s", out.String())
	}
}
