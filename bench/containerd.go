package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/jobx/jobx/images"
	"github.com/jobx/jobx/processors"
	_ "github.com/jobx/jobx/processors/all"
	"github.com/jobx/jobx/sandbox"
	ctrd "github.com/jobx/jobx/sandbox/containerd"
)

// ctrFigures are the containerd sandbox's figures: (c) the trivial job on
// warm sandboxes, beside the process sandbox's; (d) the cold start of one
// sandbox (create to first output) beside a plain `ctr run` of the same
// image.
type ctrFigures struct {
	TrivialP50, TrivialP99   *figure
	WordcountInvocationsPerS *figure
	WordcountUnfinished      string // why WordcountInvocationsPerS is nil
	ColdStart                *figure
}

// benchContainerd measures (c) and (d) on a private containerd. It
// returns nil figures and a reason when containerd cannot run here.
func benchContainerd(ctx context.Context, cfg *config, dir string, docs []document, want map[string]int64, processP50, processP99, processIPS float64) (*ctrFigures, string, error) {
	if os.Geteuid() != 0 {
		return nil, "not root", nil
	}
	for _, bin := range []string{"containerd", "runc", "ctr"} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, bin + " is not installed (make deps)", nil
		}
	}
	short, err := os.MkdirTemp("", "jxb-")
	if err != nil {
		return nil, "", err
	}
	defer os.RemoveAll(short)
	d, err := ctrd.StartDaemon(ctx, ctrd.DaemonOptions{Dir: filepath.Join(short, "d")})
	if err != nil {
		return nil, "", fmt.Errorf("start containerd: %w", err)
	}
	defer d.Close()
	agent := filepath.Join(short, "jobx-agent")
	build := exec.CommandContext(ctx, "go", "build", "-o", agent, "github.com/jobx/jobx/cmd/jobx-agent")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, "", fmt.Errorf("build jobx-agent: %v: %s", err, out)
	}
	st, err := images.Open(filepath.Join(dir, "images"))
	if err != nil {
		return nil, "", err
	}
	fmt.Fprintln(os.Stderr, "bench: containerd: building the sandbox images")
	if _, err := st.Build(ctx, "python", "sh"); err != nil {
		return nil, "", err
	}
	newBox := func(id, runnerDir string, maxIdle int) (*ctrd.Sandbox, error) {
		o := ctrd.NewOptions()
		o.Address, o.RunnerID, o.Namespace = d.Address, id, ctrd.NamespaceFor(id)
		o.Dir, o.HandlersDir, o.AgentPath, o.Images, o.Log = filepath.Join(short, id), filepath.Join(runnerDir, "handlers"), agent, st, cfg.Log
		o.MaxIdle = maxIdle
		return ctrd.New(ctx, o)
	}

	// (c) the trivial job on warm containerd sandboxes.
	runnerDir := filepath.Join(dir, "ctr-cluster", "runner")
	box, err := newBox("bench-ctr", runnerDir, 2)
	if err != nil {
		return nil, "", err
	}
	c, err := startCluster(ctx, filepath.Join(dir, "ctr-cluster"), cfg.Log, loadWorkflow, box)
	if err != nil {
		box.Close()
		return nil, "", err
	}
	cl := &client{url: c.url, http: &http.Client{Timeout: 15 * time.Minute}}
	if err := waitReady(ctx, cl, 60*time.Second); err != nil {
		c.Close()
		box.Close()
		return nil, "", err
	}
	fmt.Fprintf(os.Stderr, "bench: containerd: trivial job, %d warm-up + %d requests\n", cfg.Warmup, cfg.Requests)
	lat, err := measureTrivial(ctx, cl, trivialJob, cfg.Warmup, cfg.Requests)
	var wc *wordcountRun
	var unfinished string
	if err == nil {
		// A loaded machine can make this run last many minutes (sandboxes
		// that miss their start deadline are retried); past the limit it
		// is reported as unfinished rather than failing the whole run.
		fmt.Fprintf(os.Stderr, "bench: containerd: word count over %d documents (at most %s)\n", len(docs), cfg.CtrWordcountLimit)
		wctx, cancel := context.WithTimeout(ctx, cfg.CtrWordcountLimit)
		if _, err = measureWordcount(wctx, cl, c.store, docs[:min(cfg.WarmDocs, len(docs))]); err == nil {
			wc, err = measureWordcount(wctx, cl, c.store, docs)
		}
		if err != nil && wctx.Err() != nil && ctx.Err() == nil {
			unfinished = fmt.Sprintf("the word count over %d documents did not finish within %s (load average %.1f)", len(docs), cfg.CtrWordcountLimit, loadAverage())
			fmt.Fprintln(os.Stderr, "bench: containerd:", unfinished)
			err = nil
		}
		cancel()
	}
	c.Close()
	box.Close()
	if err != nil {
		return nil, "", err
	}
	s := summarize(millis(lat))
	f := &ctrFigures{
		TrivialP50:          newFigure("trivial job p50, warm containerd (baseline: process sandbox)", s.P50, "ms").vs(processP50).atMost("<= 8 ms", 8),
		TrivialP99:          newFigure("trivial job p99, warm containerd (baseline: process sandbox)", s.P99, "ms").vs(processP99),
		WordcountUnfinished: unfinished,
	}
	if wc != nil {
		if d := diffCounts(wc.Counts, want); d != "" {
			return nil, "", fmt.Errorf("WORD COUNT MISMATCH on containerd: %s", d)
		}
		ips := float64(wc.Maps+wc.Reduces) / wc.Wall.Seconds()
		f.WordcountInvocationsPerS = newFigure(fmt.Sprintf("word count %d docs invocations/s, warm containerd (baseline: process sandbox)", len(docs)), ips, "1/s").
			vs(processIPS).atLeast(">= 500 /s", 500)
	}

	// (d) cold start: a sandbox that keeps nothing warm, so every run
	// creates a container, starts the agent and runs an sh handler, beside
	// `ctr run` of the same image running the same shell line.
	sh, _ := processors.ByName("sh")
	src := "#!/bin/sh\n# Cold start.\n#\n# **\n# handler_type: mapper\necho '{\"jobx\":\"return\"}'\n"
	prog, err := sh.Install(filepath.Join(runnerDir, "handlers", "cold"), processors.Handler{Workflow: "cold", Name: "h", Type: "mapper", SourceType: "sh", Source: src})
	if err != nil {
		return nil, "", err
	}
	cold, err := newBox("bench-cold", runnerDir, 0)
	if err != nil {
		return nil, "", err
	}
	defer cold.Close()
	if err := cold.Prepare(ctx, "sh"); err != nil {
		return nil, "", err
	}
	const n = 15
	var ours, plain []float64
	for i := 0; i < n; i++ {
		var out bytes.Buffer
		start := time.Now()
		o, err := cold.Run(ctx, &sandbox.RunSpec{Workflow: "cold", Handler: "h", HandlerType: "mapper", Program: prog,
			Env: []string{"PATH=/usr/bin:/bin"}, Stdin: strings.NewReader(""), Stdout: &out})
		if err != nil || !o.Succeeded() || !strings.Contains(out.String(), "jobx") {
			return nil, "", fmt.Errorf("cold run: %v %+v %q", err, o, out.String())
		}
		ours = append(ours, float64(time.Since(start).Microseconds())/1000)
		// ctr run without a terminal now and then loses a container's
		// short output; such a run is retried (with a new id) and not timed.
		var printed []byte
		for try := 0; try < 3 && !strings.Contains(string(printed), "jobx"); try++ {
			start = time.Now()
			ctr := exec.CommandContext(ctx, "ctr", "--address", d.Address, "-n", ctrd.NamespaceFor("bench-cold"), "run", "--rm",
				"--snapshotter", images.Snapshotter, images.Ref("sh"), fmt.Sprintf("plain-%d-%d", i, try), "/bin/sh", "-c", `echo '{"jobx":"return"}'`)
			if printed, err = ctr.CombinedOutput(); err != nil {
				return nil, "", fmt.Errorf("ctr run: %v: %s", err, printed)
			}
		}
		if !strings.Contains(string(printed), "jobx") {
			return nil, "", fmt.Errorf("ctr run printed %q three times, not the handler's line", printed)
		}
		plain = append(plain, float64(time.Since(start).Microseconds())/1000)
	}
	sort.Float64s(ours)
	sort.Float64s(plain)
	om, pm := ours[n/2], plain[n/2]
	f.ColdStart = newFigure("sandbox cold start, median (baseline: plain ctr run)", om, "ms").vs(pm).target("<= 1.2x ctr run", om <= 1.2*pm, om/(1.2*pm))
	return f, "", nil
}
