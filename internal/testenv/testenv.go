// Package testenv starts real etcd and nsqd servers for tests, on loopback
// ports chosen by the kernel, in the test's temporary directory. It imports
// no sandbox implementation, so that every package's tests (the sandboxes'
// and the runner's included) can use it; the sandboxes tests run handlers
// in, and a private containerd, are testbox's.
package testenv

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jobx/jobx/internal/embedded"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Etcd starts an embedded etcd (fast ticks, no fsync) on loopback ports
// the kernel picks and returns its endpoint and a client; both are closed
// when the test ends.
func Etcd(t testing.TB) (string, *clientv3.Client) {
	t.Helper()
	return EtcdWithQuota(t, 0)
}

// EtcdWithQuota is Etcd with etcd's --quota-backend-bytes set to quota
// (0: etcd's default, 2 GiB), for tests of a full etcd (NOSPACE).
func EtcdWithQuota(t testing.TB, quota int64) (string, *clientv3.Client) {
	t.Helper()
	e, err := embedded.StartEtcd(context.Background(), embedded.EtcdOptions{
		Dir: t.TempDir(), ClientAddr: "127.0.0.1:0", PeerAddr: "127.0.0.1:0", Fast: true, QuotaBackendBytes: quota,
	})
	if err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	t.Cleanup(e.Close)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{e.Endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return e.Endpoint, cli
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
