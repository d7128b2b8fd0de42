// Package testenv starts real etcd and nsqd servers for tests, on loopback
// ports chosen by the kernel, in the test's temporary directory.
package testenv

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/jobx/jobx/internal/embedded"
	"github.com/jobx/jobx/internal/testenv/etcdtest"
	"github.com/jobx/jobx/sandbox"
	"github.com/jobx/jobx/sandbox/namespace"
	"github.com/jobx/jobx/sandbox/none"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Etcd starts an embedded etcd (fast ticks, no fsync) and returns its
// endpoint and a client; both are closed when the test ends.
func Etcd(t testing.TB) (string, *clientv3.Client) {
	t.Helper()
	return etcdtest.Start(t)
}

// EtcdWithQuota is Etcd with etcd's --quota-backend-bytes set to quota,
// for tests of a full etcd (NOSPACE).
func EtcdWithQuota(t testing.TB, quota int64) (string, *clientv3.Client) {
	t.Helper()
	return etcdtest.StartWithQuota(t, quota)
}

// NSQD starts an in-process nsqd and returns its TCP address.
func NSQD(t testing.TB) string {
	t.Helper()
	tcp, _ := NSQDWithHTTP(t)
	return tcp
}

// NSQDWithHTTP is NSQD, also returning nsqd's HTTP address.
func NSQDWithHTTP(t testing.TB) (tcp, http string) {
	t.Helper()
	n, err := embedded.StartNSQD(context.Background(), embedded.NSQDOptions{
		Dir: t.TempDir(), TCPAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Log: Logger(t),
	})
	if err != nil {
		t.Fatalf("start nsqd: %v", err)
	}
	t.Cleanup(n.Close)
	return n.TCPAddr, n.HTTPAddr
}

// Logger returns a slog.Logger that writes to t.Log, so daemon logs show
// only when a test fails (or with -v).
// Lines written after the test has ended are dropped.
func Logger(t testing.TB) *slog.Logger {
	w := &tWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func (w *tWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

// Sandbox returns the sandbox a test runner uses when the test picks none:
// the namespace sandbox (the default of jobx up and jobx runner where no
// containerd answers) for a runner whose directory is runnerDir, closed
// when the test ends (after the runners the test stopped in its own
// cleanups registered later). Where bubblewrap cannot run it fails under
// CI=true and, elsewhere, falls back to the none sandbox with a note in the
// test's log.
func Sandbox(t testing.TB, runnerDir string) sandbox.Sandbox {
	t.Helper()
	if err := namespace.Check(context.Background(), "", 65534, 65534); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the namespace sandbox cannot run here, and CI must run it: %v", err)
		}
		t.Logf("the namespace sandbox cannot run here; this test's runner uses the none sandbox: %v", err)
		sb, err := none.New(none.Options{Dir: filepath.Join(runnerDir, "sandbox"), Zygotes: 2, Log: Logger(t)})
		if err != nil {
			t.Fatalf("sandbox: %v", err)
		}
		t.Cleanup(func() { sb.Close() })
		return sb
	}
	dir, err := os.MkdirTemp("", "jxn-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	o := namespace.NewOptions()
	o.Dir, o.HandlersDir, o.AgentPath, o.Log = dir, filepath.Join(runnerDir, "handlers"), Agent(t), Logger(t)
	sb, err := namespace.New(context.Background(), o)
	if err != nil {
		t.Fatalf("namespace sandbox: %v", err)
	}
	t.Cleanup(func() { sb.Close() })
	return sb
}
