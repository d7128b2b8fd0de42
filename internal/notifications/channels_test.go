package notifications_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jobx/jobx/internal/notifications"
	"github.com/jobx/jobx/internal/testenv"
	"github.com/jobx/jobx/kvmodel"
)

func TestListenAcceptsJSONWithACharset(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var out testenv.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- notifications.Listen(ctx, ln, &out) }()
	resp, err := http.Post("http://"+ln.Addr().String()+"/", "application/json; charset=utf-8",
		strings.NewReader(`{"created": 1767322800, "name": "jobx.request", "levelname": "ERROR", "msg": "request r1 failed"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cancel()
	<-done
	if resp.StatusCode != 200 || !strings.HasSuffix(strings.TrimSpace(out.String()), "ERROR  request r1 failed") {
		t.Fatalf("status %d, printed %q", resp.StatusCode, out.String())
	}
}

func TestValidateNamesTheBadField(t *testing.T) {
	for cfg, want := range map[*kvmodel.NotifyConfig]string{
		{HTTP: "ftp://x"}:                    "notifications.http",
		{HTTP: "http://"}:                    "notifications.http",
		{Email: []string{"a@b\r\nBcc: c@d"}}: "notifications.email",
	} {
		if err := notifications.Validate(cfg); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%+v: want an error naming %s, got %v", cfg, want, err)
		}
	}
	if err := notifications.Validate(&kvmodel.NotifyConfig{HTTP: "http://127.0.0.1:3333/", Email: []string{"ops@example.com"}}); err != nil {
		t.Fatal(err)
	}
}

func TestEventsCarryJobXAndISOTimes(t *testing.T) {
	got := make(chan map[string]any, 1)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		json.NewDecoder(r.Body).Decode(&m)
		got <- m
	}))
	defer recv.Close()
	s := &notifications.Sender{Log: testenv.Logger(t)}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := s.Send(context.Background(), &kvmodel.NotifyConfig{HTTP: recv.URL}, notifications.Event{Time: at, Kind: notifications.Handler, Workflow: "wf", Name: "MR_HANDLER.h", Level: "warning", Message: "m", Handler: "h", Fields: map[string]any{"n": 1}}); err != nil {
		t.Fatal(err)
	}
	m := <-got
	if m["time"] != "2026-01-02T03:04:05Z" || m["created"] != float64(at.Unix()) || m["levelname"] != "WARNING" || m["name"] != "MR_HANDLER.h" || m["msg"] != "m" || m["kind"] != "handler" || m["workflow"] != "wf" {
		t.Fatalf("event %v", m)
	}
}
