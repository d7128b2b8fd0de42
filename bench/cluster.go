package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	jxcluster "github.com/jobx/jobx/internal/cluster"
	"github.com/jobx/jobx/kvmodel"
	_ "github.com/jobx/jobx/processors/all"
	"github.com/jobx/jobx/runner"
	"github.com/jobx/jobx/sandbox"
	"github.com/jobx/jobx/sandbox/namespace"
)

// cluster is an in-process jobx on loopback: embedded etcd (fsync on),
// in-process nsqd, one gateway and one runner with the default process
// sandbox. Close stops it.
type cluster struct {
	c     *jxcluster.Cluster
	store *kvmodel.Store
	url   string // the gateway's base URL

	runnerConcurrency int
	sandbox           string // the runner's sandbox kind

	closeBox func() // the default sandbox's, nil when the caller gave one
	log      *slog.Logger
}

// startCluster starts the servers under dir; load writes the workflow
// definitions before the gateway and runner start, so both see them at once.
func startCluster(ctx context.Context, dir string, log *slog.Logger, load func(context.Context, *kvmodel.Store) error, box ...sandbox.Sandbox) (_ *cluster, err error) {
	ro := runner.NewOptions()
	ro.ID, ro.Dir, ro.Grace = "bench-runner", filepath.Join(dir, "runner"), 5*time.Second
	c := &cluster{runnerConcurrency: ro.Concurrency, log: log}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	if len(box) > 0 {
		ro.Sandbox = box[0]
	} else if ro.Sandbox, c.closeBox, err = defaultSandbox(ctx, ro.Dir, log); err != nil {
		return nil, err
	}
	c.sandbox = ro.Sandbox.Kind()

	o := jxcluster.NewOptions()
	o.Dir, o.Log, o.Runners = dir, log, []*runner.Options{ro}
	o.Load = func(ctx context.Context, st *kvmodel.Store) error {
		if err := load(ctx, st); err != nil {
			return fmt.Errorf("load the benchmark workflow: %w", err)
		}
		return nil
	}
	o.Gateway.MaxBodyBytes = 64 << 20
	o.Gateway.BlockingTimeout = 10 * time.Minute
	if c.c, err = jxcluster.Start(ctx, o); err != nil {
		return nil, err
	}
	c.store, c.url = c.c.Store(), c.c.URL()
	return c, nil
}

// defaultSandbox is the default sandbox, as jobx up picks it where no
// containerd answers, for a runner whose directory is runnerDir.
func defaultSandbox(ctx context.Context, runnerDir string, log *slog.Logger) (sandbox.Sandbox, func(), error) {
	agent, err := benchAgent(ctx)
	if err != nil {
		return nil, nil, err
	}
	sbDir, err := os.MkdirTemp("", "jxb-")
	if err != nil {
		return nil, nil, err
	}
	no := namespace.NewOptions()
	no.Dir, no.HandlersDir, no.AgentPath, no.Log = sbDir, filepath.Join(runnerDir, "handlers"), agent, log
	nb, err := namespace.New(ctx, no)
	if err != nil {
		os.RemoveAll(sbDir)
		return nil, nil, err
	}
	return nb, func() { nb.Close(); os.RemoveAll(sbDir) }, nil
}

// Close stops the runner, the gateway, nsqd and etcd, in that order, then
// the default sandbox.
func (c *cluster) Close() {
	if c.c != nil {
		if err := c.c.Close(); err != nil {
			c.log.Error("cluster stopped", "err", err)
		}
		c.c = nil
	}
	if c.closeBox != nil {
		c.closeBox()
		c.closeBox = nil
	}
}

var agentOnce struct {
	sync.Once
	path string
	err  error
}

// benchAgent builds the static jobx-agent once and returns its path.
func benchAgent(ctx context.Context) (string, error) {
	agentOnce.Do(func() {
		dir, err := os.MkdirTemp("", "jxa-")
		if err != nil {
			agentOnce.err = err
			return
		}
		agentOnce.path = filepath.Join(dir, "jobx-agent")
		build := exec.CommandContext(ctx, "go", "build", "-o", agentOnce.path, "github.com/jobx/jobx/cmd/jobx-agent")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			agentOnce.err = fmt.Errorf("build jobx-agent: %v: %s", err, out)
		}
	})
	return agentOnce.path, agentOnce.err
}
