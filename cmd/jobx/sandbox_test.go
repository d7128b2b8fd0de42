package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jobx/jobx/internal/testenv"
)

// Where neither containerd nor bubblewrap can run, --sandbox auto stops the
// runner with both reasons and their fixes; it never falls back to running
// handlers unisolated.
func TestAutoWithNoIsolatingSandboxIsAnErrorThatSaysWhyAndHowToFix(t *testing.T) {
	agent := testenv.Agent(t)
	t.Setenv("PATH", t.TempDir()) // no bwrap, no containerd
	var stdout, stderr syncBuffer
	env := func(k string) string {
		if k == "JOBX_AGENT" {
			return agent
		}
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code := run(ctx, []string{"runner", "--etcd", "127.0.0.1:1", "--nsqd", "127.0.0.1:1", "--dir", t.TempDir(),
		"--containerd", filepath.Join(t.TempDir(), "none.sock")}, strings.NewReader(""), &stdout, &stderr, env)
	if code == 0 {
		t.Fatalf("the runner started without an isolating sandbox:\n%s", stderr.String())
	}
	mustContain(t, "stderr", stderr.String(), "no sandbox can isolate handlers here",
		"containerd: no containerd answers at", "--containerd-dir",
		"namespace: the namespace sandbox cannot run here: bubblewrap (bwrap) is not installed", "apt-get install bubblewrap",
		"--sandbox none")
	if strings.Contains(stderr.String(), "runner started") {
		t.Fatalf("a runner started:\n%s", stderr.String())
	}
}

// --sandbox none runs handlers only when asked for by name, and says so.
func TestSandboxNoneSaysItIsUnisolated(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"up", "--data-dir", t.TempDir(), "--http", "127.0.0.1:0", "--etcd-listen", "127.0.0.1:0",
			"--nsqd-listen", "127.0.0.1:0", "--sandbox", "none", "--log-level", "warn"},
			strings.NewReader(""), &stdout, &stderr, func(string) string { return "" })
	}()
	deadline := time.After(60 * time.Second)
	for !strings.Contains(stdout.String(), "jobx is up") {
		select {
		case code := <-done:
			t.Fatalf("up exited %d:\n%s", code, stderr.String())
		case <-deadline:
			t.Fatalf("up did not come up:\n%s", stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	cancel()
	<-done
	mustContain(t, "stderr", stderr.String(), "--sandbox none: handlers run UNISOLATED")
}
