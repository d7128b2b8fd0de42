package integration

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jobx/jobx/internal/testenv"
	"github.com/jobx/jobx/internal/testenv/testbox"
	"github.com/jobx/jobx/runner"
	"go.uber.org/goleak"
)

// A runner whose --metrics-addr is taken fails to run, and once closed
// leaves no goroutine behind (its registry announcement used to run on).
func TestARunnerThatCannotServeItsMetricsLeavesNothingRunning(t *testing.T) {
	c := startCluster(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	o := runner.NewOptions()
	o.ID, o.MetricsAddr = "metrics-taken", taken.Addr().String()
	o.Etcd, o.NSQDs, o.Dir, o.Log = c.cli, []string{c.nsqd}, filepath.Join(t.TempDir(), o.ID), testenv.Logger(t)
	o.Sandbox = testbox.Sandbox(t, o.Dir)
	// Everything running before the runner, this test's cluster included,
	// is not the runner's.
	before := goleak.IgnoreCurrent()
	r, err := runner.New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = r.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "--metrics-addr") {
		t.Fatalf("Run with a taken metrics address: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	// Only the runner's own count: the cluster's clients may start
	// goroutines of their own meanwhile.
	if err := goleak.Find(before); err != nil && strings.Contains(err.Error(), "github.com/jobx/jobx/runner.") {
		t.Errorf("the failed runner left goroutines running: %v", err)
	}
}
