package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestNotifyListenPrintsJobXLines(t *testing.T) {
	var out syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	env := map[string]string{"HTTP_LISTEN_HOSTNAME": "127.0.0.1", "HTTP_LISTEN_PORT": "0"}
	go func() {
		done <- run(ctx, []string{"notify", "listen"}, strings.NewReader(""), &out, &out, func(k string) string { return env[k] })
	}()
	banner := regexp.MustCompile(`^Listening on \[127\.0\.0\.1\]:\((\d+)\)\.\n`)
	var port string
	for deadline := time.Now().Add(5 * time.Second); port == ""; time.Sleep(10 * time.Millisecond) {
		if m := banner.FindStringSubmatch(out.String()); m != nil {
			port = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("no banner: %q", out.String())
		}
	}
	u := "http://127.0.0.1:" + port + "/"
	resp, err := http.Post(u, "application/json", strings.NewReader(`{"created": 0, "name": "jobx.request", "levelname": "ERROR", "msg": "request r1 failed"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = http.PostForm(u, url.Values{"created": {"0"}, "name": {"MR_HANDLER.HTTP"}, "levelname": {"INFO"}, "msg": {"form body"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d: %s", code, out.String())
	}
	ts := time.Unix(0, 0).Format("2006-01-02 15:04:05")
	jobx := "%s  %-40s  %9s  %s\n" // mr_http_notification_listen's format
	want := fmt.Sprintf(jobx, ts, "jobx.request", "ERROR", "request r1 failed") + fmt.Sprintf(jobx, ts, "MR_HANDLER.HTTP", "INFO", "form body")
	if got := banner.ReplaceAllString(out.String(), ""); got != want {
		t.Fatalf("printed:\n%q\nwant:\n%q", got, want)
	}
}
