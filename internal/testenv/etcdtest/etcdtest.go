// Package etcdtest starts an embedded etcd for a test. It is testenv.Etcd
// for the packages testenv itself imports (the runner), which cannot
// import testenv.
package etcdtest

import (
	"context"
	"testing"
	"time"

	"github.com/jobx/jobx/internal/embedded"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Start starts an embedded etcd (fast ticks, no fsync) on loopback ports
// the kernel picks and returns its endpoint and a client; both are closed
// when the test ends.
func Start(t testing.TB) (string, *clientv3.Client) {
	t.Helper()
	return StartWithQuota(t, 0)
}

// StartWithQuota is Start with etcd's --quota-backend-bytes set to quota
// (0: etcd's default, 2 GiB), for tests of a full etcd (NOSPACE).
func StartWithQuota(t testing.TB, quota int64) (string, *clientv3.Client) {
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
