package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/jobx/jobx/internal/embedded"
	"github.com/jobx/jobx/kvmodel"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// procCluster is jobx as separate processes, so each one's memory can be
// read: embedded etcd (fsync on) and nsqd in this process, and `jobx
// gateway` and `jobx runner --sandbox namespace` as processes of a binary
// built from this tree. close stops them all.
type procCluster struct {
	etcd  *embedded.Etcd
	nsqd  *embedded.NSQD
	cli   *clientv3.Client
	store *kvmodel.Store
	gw    *daemon
	rn    *daemon
	url   string
}

func startProcCluster(ctx context.Context, dir string, cfg *config) (*procCluster, error) {
	c := &procCluster{}
	ok := false
	defer func() {
		if !ok {
			c.close()
		}
	}()
	var err error
	bin := filepath.Join(dir, "jobx")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/jobx/jobx/cmd/jobx")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build jobx: %v: %s", err, out)
	}
	if c.etcd, err = embedded.StartEtcd(ctx, embedded.EtcdOptions{Dir: dir, ClientAddr: "127.0.0.1:0", PeerAddr: "127.0.0.1:0"}); err != nil {
		return nil, err
	}
	if c.cli, err = clientv3.New(clientv3.Config{Endpoints: []string{c.etcd.Endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()}); err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	c.store = kvmodel.NewStore(c.cli)
	if err := loadWorkflow(ctx, c.store); err != nil {
		return nil, fmt.Errorf("load the benchmark workflow: %w", err)
	}
	if c.nsqd, err = embedded.StartNSQD(ctx, embedded.NSQDOptions{Dir: dir, TCPAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Log: cfg.Log}); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	common := []string{"--etcd", c.etcd.Endpoint, "--nsqd", c.nsqd.TCPAddr, "--log-level", "warn"}
	gwArgs := append(common[:len(common):len(common)], "gateway", "--http", "127.0.0.1:"+strconv.Itoa(port),
		"--max-body", strconv.Itoa(64<<20), "--blocking-timeout", "10m")
	if c.gw, err = startDaemon("jobx gateway", filepath.Join(dir, "gateway.log"), exec.Command(bin, gwArgs...)); err != nil {
		return nil, err
	}
	c.url = "http://127.0.0.1:" + strconv.Itoa(port)
	agent, err := benchAgent(ctx)
	if err != nil {
		return nil, err
	}
	rnArgs := append(common[:len(common):len(common)], "runner", "--sandbox", "namespace", "--agent", agent, "--id", "bench-scale",
		"--dir", filepath.Join(dir, "runner"), "--grace", "5s")
	if c.rn, err = startDaemon("jobx runner", filepath.Join(dir, "runner.log"), exec.Command(bin, rnArgs...)); err != nil {
		return nil, err
	}
	ok = true
	return c, nil
}

// close stops the runner, the gateway, nsqd and etcd, in that order.
func (c *procCluster) close() {
	for _, d := range []*daemon{c.rn, c.gw} {
		if d != nil {
			d.stop(10 * time.Second)
		}
	}
	if c.nsqd != nil {
		c.nsqd.Close()
	}
	if c.cli != nil {
		c.cli.Close()
	}
	if c.etcd != nil {
		c.etcd.Close()
	}
	*c = procCluster{}
}

// scaleRun is the word count over one number of documents on the
// separate-process cluster.
type scaleRun struct {
	Docs        int     `json:"docs"`
	Invocations int     `json:"invocations"`
	Wall        *figure `json:"wall"`
	// PerInvocation is the wall time over the invocations, in ms.
	PerInvocation *figure `json:"per_invocation"`
	// The peak RSS (VmHWM) of each process during this run alone: the
	// peaks are reset (/proc/<pid>/clear_refs) before it starts.
	RSSGateway *figure `json:"peak_rss_gateway"`
	RSSRunner  *figure `json:"peak_rss_runner"`
	RSSZygotes *figure `json:"peak_rss_runner_python_zygotes"`
	Phases     *phases `json:"phases"`
}

// scaling is the word count at several sizes.
type scaling struct {
	Cluster string      `json:"cluster"`
	Runs    []*scaleRun `json:"runs"`
	// CostGrowth is the per-invocation cost at the largest size over that
	// at the smallest.
	CostGrowth *figure `json:"per_invocation_cost_growth"`
}

// benchScaling runs the word count over the first n documents for each n
// in cfg.ScaleSizes (ascending) on a separate-process cluster, each beside
// the baseline over the same documents and the peers that ran (nil ones
// did not).
func benchScaling(ctx context.Context, cfg *config, dir string, bl *baseline, docs []document, peers ...*peerResult) (*scaling, error) {
	fmt.Fprintln(os.Stderr, "bench: scaling: building jobx, starting etcd and nsqd here, jobx gateway and jobx runner as processes")
	c, err := startProcCluster(ctx, dir, cfg)
	if err != nil {
		return nil, err
	}
	defer c.close()
	cl := &client{url: c.url, http: &http.Client{Timeout: 15 * time.Minute}}
	if err := waitReady(ctx, cl, 60*time.Second); err != nil {
		return nil, c.rn.failed(c.gw.failed(err))
	}
	if _, err := measureWordcount(ctx, cl, c.store, docs[:min(cfg.WarmDocs, len(docs))]); err != nil {
		return nil, err
	}
	s := &scaling{Cluster: "etcd (fsync on) and nsqd in the bench process; `jobx gateway` and `jobx runner --sandbox namespace` as separate processes"}
	for _, n := range cfg.ScaleSizes {
		ds := docs[:n]
		blRun, err := bl.run(ctx, wordcountJob, docArgs(ds), 1, cfg.BaselineRuns)
		if err != nil {
			return nil, err
		}
		blCounts, err := decodeCounts(blRun.Result)
		if err != nil {
			return nil, err
		}
		if d := diffCounts(blCounts, countWords(ds)); d != "" {
			return nil, fmt.Errorf("baseline word count over %d documents differs from Go's count: %s", n, d)
		}
		zs := zygotes(c.rn.pid())
		if err := resetPeakRSS(append([]int{c.gw.pid(), c.rn.pid()}, zs...)); err != nil {
			return nil, err
		}
		fmt.Fprintf(os.Stderr, "bench: scaling: word count over %d documents\n", n)
		wc, err := measureWordcount(ctx, cl, c.store, ds)
		if err != nil {
			return nil, c.rn.failed(err)
		}
		if d := diffCounts(wc.Counts, blCounts); d != "" {
			return nil, fmt.Errorf("WORD COUNT MISMATCH over %d documents: jobx's result differs from the baseline's: %s", n, d)
		}
		inv := wc.Maps + wc.Reduces
		if inv != 2*(1+n) {
			return nil, fmt.Errorf("word count over %d documents ran %d invocations, want %d", n, inv, 2*(1+n))
		}
		blWall := summarize(blRun.TimingsMS).P50 / 1000
		r := &scaleRun{Docs: n, Invocations: inv, Phases: wc.Phases}
		label := fmt.Sprintf("scaling: word count %d docs", n)
		r.Wall = newFigure(label+", wall", wc.Wall.Seconds(), "s").vs(blWall)
		perInv := float64(wc.Wall.Microseconds()) / 1000 / float64(inv)
		r.PerInvocation = newFigure(fmt.Sprintf("%s, per invocation (%d)", label, inv), perInv, "ms").vs(blWall * 1000 / float64(inv))
		for _, p := range peers {
			if run := p.run(n); run != nil {
				r.Wall.vsPeer(p, run.WallS)
			}
		}
		gw, err := peakRSS(c.gw.pid())
		if err != nil {
			return nil, err
		}
		rn, err := peakRSS(c.rn.pid())
		if err != nil {
			return nil, err
		}
		var zrss int64
		for _, pid := range zygotes(c.rn.pid()) {
			if v, err := peakRSS(pid); err == nil {
				zrss += v
			}
		}
		r.RSSGateway = newFigure(fmt.Sprintf("scaling: %d docs, peak RSS, jobx gateway process", n), float64(gw)/(1<<20), "MiB")
		r.RSSRunner = newFigure(fmt.Sprintf("scaling: %d docs, peak RSS, jobx runner process", n), float64(rn)/(1<<20), "MiB")
		r.RSSZygotes = newFigure(fmt.Sprintf("scaling: %d docs, peak RSS, runner's %d Python zygotes (summed)", n, len(zs)), float64(zrss)/(1<<20), "MiB")
		s.Runs = append(s.Runs, r)
	}
	first, last := s.Runs[0], s.Runs[len(s.Runs)-1]
	growth := last.PerInvocation.Value / first.PerInvocation.Value
	s.CostGrowth = newFigure(fmt.Sprintf("scaling: per-invocation cost, %d docs / %d docs", last.Docs, first.Docs), growth, "x").
		vs(*last.PerInvocation.Baseline / *first.PerInvocation.Baseline).atMost("<= 1.2x", 1.2)
	return s, nil
}

// resetPeakRSS resets the processes' VmHWM to their current RSS (Linux
// clear_refs 5), so a later read gives the peak since now.
func resetPeakRSS(pids []int) error {
	for _, pid := range pids {
		if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
			return fmt.Errorf("reset the peak RSS of pid %d: %w", pid, err)
		}
	}
	return nil
}
