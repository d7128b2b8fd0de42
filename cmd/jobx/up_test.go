package main

import (
	"context"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jobx/jobx/internal/testenv"
)

func TestUpServesThenShutsDownOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	agent := testenv.Agent(t)
	var stdout, stderr syncBuffer
	codec := make(chan int, 1)
	go func() {
		codec <- run(ctx, []string{"up", "--data-dir", t.TempDir(), "--http", "127.0.0.1:0", "--etcd-listen", "127.0.0.1:0",
			"--nsqd-listen", "127.0.0.1:0", "--load", filepath.Join("testdata", "dev"), "--grace", "2s", "--log-level", "warn",
			"--sandbox", "namespace"},
			strings.NewReader(""), &stdout, &stderr, func(k string) string {
				if k == "JOBX_AGENT" {
					return agent
				}
				return ""
			})
	}()

	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(stdout.String(), "jobx is up") {
		select {
		case code := <-codec:
			t.Fatalf("up exited %d early:\n%s\n%s", code, stdout.String(), stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("up did not come up:\n%s\n%s", stdout.String(), stderr.String())
		}
	}
	out := stdout.String()
	gw := regexp.MustCompile(`gateway: (\S+)`).FindStringSubmatch(out)
	if gw == nil {
		t.Fatalf("no gateway address in:\n%s", out)
	}
	mustContain(t, "up output", out, "(embedded)", "job demo/double", "curl -sS -X POST", gw[1]+"/job/demo/double?blocking=true",
		"jobx submit --gateway "+gw[1]+" demo double -a a=1 -a b=2")

	resp, err := http.Get(gw[1] + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz: %d", resp.StatusCode)
	}
	var sout, serr syncBuffer
	code := run(ctx, []string{"submit", "--gateway", gw[1], "demo", "double", "-a", "a=1", "-a", "b=2"},
		strings.NewReader(""), &sout, &serr, func(string) string { return "" })
	if code != 0 || sout.String() != "a\t2\nb\t4\n" {
		t.Errorf("submit through up: exit %d, %q %s", code, sout.String(), serr.String())
	}

	cancel()
	select {
	case code := <-codec:
		if code != 0 {
			t.Errorf("up exited %d after cancel:\n%s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("up did not stop within 30s of cancel")
	}
	if _, err := http.Get(gw[1] + "/healthz"); err == nil {
		t.Error("the gateway still answers after up stopped")
	}
}
