package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/jobx/jobx/gateway"
	"github.com/jobx/jobx/internal/embedded"
	"github.com/jobx/jobx/kvmodel"
	_ "github.com/jobx/jobx/processors/all"
	"github.com/jobx/jobx/runner"
	"github.com/jobx/jobx/sandbox"
	"github.com/jobx/jobx/sandbox/namespace"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// cluster is an in-process jobx on loopback: embedded etcd (fsync on),
// in-process nsqd, one gateway and one runner with the default process
// sandbox. Close stops it.
type cluster struct {
	etcd  *embedded.Etcd
	nsqd  *embedded.NSQD
	cli   *clientv3.Client
	store *kvmodel.Store
	gw    *gateway.Gateway
	rn    *runner.Runner
	url   string // the gateway's base URL

	runnerConcurrency int
	sandbox           string // the runner's sandbox kind

	stops []func() // run in reverse order by Close
}

// startCluster starts the servers under dir; load writes the workflow
// definitions before the gateway and runner start, so both see them at once.
func startCluster(ctx context.Context, dir string, log *slog.Logger, load func(context.Context, *kvmodel.Store) error, box ...sandbox.Sandbox) (*cluster, error) {
	c := &cluster{}
	ok := false
	defer func() {
		if !ok {
			c.Close()
		}
	}()
	var err error
	if c.etcd, err = embedded.StartEtcd(ctx, embedded.EtcdOptions{Dir: dir, ClientAddr: "127.0.0.1:0", PeerAddr: "127.0.0.1:0"}); err != nil {
		return nil, err
	}
	c.stops = append(c.stops, c.etcd.Close)
	if c.cli, err = clientv3.New(clientv3.Config{Endpoints: []string{c.etcd.Endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()}); err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	c.stops = append(c.stops, func() { c.cli.Close() })
	c.store = kvmodel.NewStore(c.cli)
	if err = load(ctx, c.store); err != nil {
		return nil, fmt.Errorf("load the benchmark workflow: %w", err)
	}
	if c.nsqd, err = embedded.StartNSQD(ctx, embedded.NSQDOptions{Dir: dir, TCPAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Log: log}); err != nil {
		return nil, err
	}
	c.stops = append(c.stops, c.nsqd.Close)

	gwo := gateway.NewOptions()
	gwo.Addr, gwo.Etcd, gwo.NSQDs, gwo.Log = "127.0.0.1:0", c.cli, []string{c.nsqd.TCPAddr}, log
	gwo.MaxBodyBytes = 64 << 20
	gwo.BlockingTimeout = 10 * time.Minute
	if c.gw, err = gateway.New(ctx, gwo); err != nil {
		return nil, err
	}
	c.url = "http://" + c.gw.Addr()
	c.stops = append(c.stops, background(c.gw.Run, c.gw.Close, log, "gateway"))

	ro := runner.NewOptions()
	ro.ID = "bench-runner"
	ro.Etcd, ro.NSQDs, ro.Dir, ro.Log = c.cli, []string{c.nsqd.TCPAddr}, filepath.Join(dir, "runner"), log
	ro.Grace = 5 * time.Second
	if len(box) > 0 {
		ro.Sandbox = box[0]
	} else {
		// The default sandbox, as jobx up picks it where no containerd
		// answers.
		agent, err := benchAgent(ctx)
		if err != nil {
			return nil, err
		}
		sbDir, err := os.MkdirTemp("", "jxb-")
		if err != nil {
			return nil, err
		}
		c.stops = append(c.stops, func() { os.RemoveAll(sbDir) })
		no := namespace.NewOptions()
		no.Dir, no.HandlersDir, no.AgentPath, no.Log = sbDir, filepath.Join(ro.Dir, "handlers"), agent, log
		nb, err := namespace.New(ctx, no)
		if err != nil {
			return nil, err
		}
		c.stops = append(c.stops, func() { nb.Close() })
		ro.Sandbox = nb
	}
	c.sandbox = ro.Sandbox.Kind()
	c.runnerConcurrency = ro.Concurrency
	if c.rn, err = runner.New(ctx, ro); err != nil {
		return nil, err
	}
	c.stops = append(c.stops, background(c.rn.Run, func() { c.rn.Close() }, log, "runner"))
	ok = true
	return c, nil
}

// background runs run until the returned stop is called; stop cancels it,
// waits for it to return, then calls closeFn.
func background(run func(context.Context) error, closeFn func(), log *slog.Logger, name string) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			log.Error(name+" stopped", "err", err)
		}
	}()
	return func() { cancel(); <-done; closeFn() }
}

// Close stops the runner, the gateway, nsqd and etcd, in that order.
func (c *cluster) Close() {
	for i := len(c.stops) - 1; i >= 0; i-- {
		c.stops[i]()
	}
	c.stops = nil
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
