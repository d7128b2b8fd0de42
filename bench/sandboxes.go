package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jobx/jobx/images"
	"github.com/jobx/jobx/processors"
	"github.com/jobx/jobx/sandbox"
	ctrd "github.com/jobx/jobx/sandbox/containerd"
	"github.com/jobx/jobx/sandbox/namespace"
	"github.com/jobx/jobx/sandbox/none"
)

// sandboxRow is one sandbox's figures in the side-by-side table.
type sandboxRow struct {
	Sandbox      string  `json:"sandbox"`
	TrivialP50   float64 `json:"trivial_p50_ms"`
	TrivialP99   float64 `json:"trivial_p99_ms"`
	WordcountIPS float64 `json:"wordcount_invocations_per_s"`
	// WordcountRounds are the word count's rates, one per round.
	WordcountRounds []float64 `json:"wordcount_rounds_per_s"`
	ColdStart       float64   `json:"cold_start_ms"`
	Limits          string    `json:"limits,omitempty"`
}

// sandboxFigures are the sandboxes side by side, measured in one run: the
// same cluster set-up with each sandbox, in rounds that take the
// sandboxes in turn (in a rotating order), so that the machine's drift
// falls on all of them alike. Each round's word count is warm: a smaller
// one just before it brings up the sandboxes the burst needs, as a steady
// stream of requests keeps them; a sandbox's start is the cold-start
// figure.
type sandboxFigures struct {
	Rounds  int               `json:"rounds"`
	Rows    []*sandboxRow     `json:"rows"`
	Targets []*figure         `json:"targets"`
	Skipped map[string]string `json:"skipped,omitempty"`
}

func (f *sandboxFigures) row(name string) *sandboxRow {
	for _, r := range f.Rows {
		if r.Sandbox == name {
			return r
		}
	}
	return nil
}

// benchedSandbox is one sandbox under measurement, on a cluster of its own.
type benchedSandbox struct {
	name    string
	box     sandbox.Sandbox
	cluster *cluster
	client  *client
	lat     []time.Duration
	row     *sandboxRow
	// cold starts a sandbox that keeps nothing warm, for the cold-start
	// figure.
	cold func(runnerDir string) (sandbox.Sandbox, error)
}

// benchSandboxes measures none, namespace and (as root, with containerd
// installed) containerd side by side: trivial p50 and p99, the word count's
// invocations per second, and the cold start of one sandbox.
func benchSandboxes(ctx context.Context, cfg *config, dir string, docs []document, want map[string]int64) (*sandboxFigures, error) {
	short, err := os.MkdirTemp("", "jxb-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(short)
	os.Chmod(short, 0o711) // the namespace sandbox's user reaches its directories through it
	agent, err := benchAgent(ctx)
	if err != nil {
		return nil, err
	}
	figs := &sandboxFigures{Rounds: cfg.SandboxRounds, Skipped: map[string]string{}}
	var boxes []*benchedSandbox
	defer func() {
		for _, b := range boxes {
			if b.cluster != nil {
				b.cluster.Close()
			}
			if b.box != nil {
				b.box.Close()
			}
		}
	}()

	boxes = append(boxes, &benchedSandbox{name: "none", cold: func(runnerDir string) (sandbox.Sandbox, error) {
		return none.New(none.Options{Dir: filepath.Join(runnerDir, "cold-none"), Log: cfg.Log})
	}})
	nsOpts := func(name, runnerDir string) *namespace.Options {
		o := namespace.NewOptions()
		o.Dir, o.HandlersDir, o.AgentPath, o.Log = filepath.Join(short, name), filepath.Join(runnerDir, "handlers"), agent, cfg.Log
		return o
	}
	if err := namespace.Check(ctx, "", 65534, 65534); err != nil {
		figs.Skipped["namespace"] = err.Error()
	} else {
		boxes = append(boxes, &benchedSandbox{name: "namespace", cold: func(runnerDir string) (sandbox.Sandbox, error) {
			o := nsOpts("cold-ns", runnerDir)
			o.MaxIdle = 0
			return namespace.New(ctx, o)
		}})
	}
	var ctrAddr string
	var st *images.Store
	if why := containerdMissing(); why != "" || !cfg.Containerd {
		if why == "" {
			why = "-containerd=false"
		}
		figs.Skipped["containerd"] = why
	} else {
		d, err := ctrd.StartDaemon(ctx, ctrd.DaemonOptions{Dir: filepath.Join(short, "d")})
		if err != nil {
			return nil, fmt.Errorf("start containerd: %w", err)
		}
		defer d.Close()
		ctrAddr = d.Address
		if st, err = images.Open(filepath.Join(dir, "images")); err != nil {
			return nil, err
		}
		fmt.Fprintln(os.Stderr, "bench: containerd: building the sandbox images")
		if _, err := st.Build(ctx, "python", "sh"); err != nil {
			return nil, err
		}
		boxes = append(boxes, &benchedSandbox{name: "containerd", cold: func(runnerDir string) (sandbox.Sandbox, error) {
			return newCtrBox(ctx, cfg, ctrAddr, st, agent, "bench-cold", filepath.Join(short, "cold-ctr"), runnerDir, 0)
		}})
	}

	for _, b := range boxes {
		runnerDir := filepath.Join(dir, "sandboxes", b.name, "runner")
		switch b.name {
		case "none":
			b.box, err = none.New(none.Options{Dir: filepath.Join(runnerDir, "sandbox"), Zygotes: 2, Log: cfg.Log})
		case "namespace":
			var nb *namespace.Sandbox
			nb, err = namespace.New(ctx, nsOpts("ns", runnerDir))
			if err == nil {
				b.box = nb
				b.row = &sandboxRow{Limits: nb.Limits()}
			}
		case "containerd":
			b.box, err = newCtrBox(ctx, cfg, ctrAddr, st, agent, "bench-ctr", filepath.Join(short, "ctr"), runnerDir, 2)
		}
		if err != nil {
			return nil, fmt.Errorf("%s sandbox: %w", b.name, err)
		}
		if b.row == nil {
			b.row = &sandboxRow{}
		}
		b.row.Sandbox = b.name
		if b.cluster, err = startCluster(ctx, filepath.Join(dir, "sandboxes", b.name), cfg.Log, loadWorkflow, b.box); err != nil {
			return nil, fmt.Errorf("%s cluster: %w", b.name, err)
		}
		b.client = &client{url: b.cluster.url, http: &http.Client{Timeout: 15 * time.Minute}}
		if err := waitReady(ctx, b.client, 60*time.Second); err != nil {
			return nil, err
		}
		fmt.Fprintf(os.Stderr, "bench: sandboxes: %s: warm-up\n", b.name)
		if _, err := measureTrivial(ctx, b.client, trivialJob, cfg.Warmup, 0); err != nil {
			return nil, err
		}
		if _, err := measureWordcount(ctx, b.client, b.cluster.store, docs[:min(cfg.WarmDocs, len(docs))]); err != nil {
			return nil, err
		}
	}

	per := max(cfg.Requests/cfg.SandboxRounds, 1)
	for round := 0; round < cfg.SandboxRounds; round++ {
		for i := range boxes {
			b := boxes[(round+i)%len(boxes)]
			fmt.Fprintf(os.Stderr, "bench: sandboxes: round %d/%d: %s\n", round+1, cfg.SandboxRounds, b.name)
			lat, err := measureTrivial(ctx, b.client, trivialJob, 0, per)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", b.name, err)
			}
			b.lat = append(b.lat, lat...)
			// Warm: the containers (or domains) the burst needs are up,
			// as in a steady stream of requests; what a sandbox costs to
			// start is the cold-start column.
			if _, err := measureWordcount(ctx, b.client, b.cluster.store, docs[:min(max(cfg.WarmDocs, 100), len(docs))]); err != nil {
				return nil, fmt.Errorf("%s: %w", b.name, err)
			}
			wc, err := measureWordcount(ctx, b.client, b.cluster.store, docs)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", b.name, err)
			}
			if d := diffCounts(wc.Counts, want); d != "" {
				return nil, fmt.Errorf("WORD COUNT MISMATCH on the %s sandbox: %s", b.name, d)
			}
			b.row.WordcountRounds = append(b.row.WordcountRounds, float64(wc.Maps+wc.Reduces)/wc.Wall.Seconds())
		}
	}
	for _, b := range boxes {
		s := summarize(millis(b.lat))
		b.row.TrivialP50, b.row.TrivialP99 = s.P50, s.P99
		b.row.WordcountIPS = median(b.row.WordcountRounds)
		b.cluster.Close()
		b.cluster = nil
		b.box.Close()
		fmt.Fprintf(os.Stderr, "bench: sandboxes: %s: cold start\n", b.name)
		if b.row.ColdStart, err = coldStart(ctx, b.cold, filepath.Join(dir, "sandboxes", b.name, "cold")); err != nil {
			return nil, fmt.Errorf("%s cold start: %w", b.name, err)
		}
		figs.Rows = append(figs.Rows, b.row)
	}
	boxes = nil

	if ns, no := figs.row("namespace"), figs.row("none"); ns != nil && no != nil {
		figs.Targets = append(figs.Targets,
			newFigure("namespace trivial p50 (baseline: none)", ns.TrivialP50, "ms").vs(no.TrivialP50).
				target("<= 1.1x none", ns.TrivialP50 <= 1.1*no.TrivialP50, ns.TrivialP50/(1.1*no.TrivialP50)),
			newFigure("namespace word count invocations/s (baseline: none)", ns.WordcountIPS, "1/s").vs(no.WordcountIPS).
				target(">= 0.9x none", ns.WordcountIPS >= 0.9*no.WordcountIPS, 0.9*no.WordcountIPS/ns.WordcountIPS))
	}
	if c, ns := figs.row("containerd"), figs.row("namespace"); c != nil && ns != nil {
		figs.Targets = append(figs.Targets,
			newFigure("containerd word count invocations/s (baseline: namespace)", c.WordcountIPS, "1/s").vs(ns.WordcountIPS).
				target(">= 0.9x namespace", c.WordcountIPS >= 0.9*ns.WordcountIPS, 0.9*ns.WordcountIPS/c.WordcountIPS))
	}
	return figs, nil
}

// containerdMissing says why the containerd sandbox cannot run here ("" when
// it can).
func containerdMissing() string {
	if os.Geteuid() != 0 {
		return "not root"
	}
	for _, bin := range []string{"containerd", "runc"} {
		if _, err := exec.LookPath(bin); err != nil {
			return bin + " is not installed (make deps)"
		}
	}
	return ""
}

func newCtrBox(ctx context.Context, cfg *config, addr string, st *images.Store, agent, id, dir, runnerDir string, maxIdle int) (*ctrd.Sandbox, error) {
	o := ctrd.NewOptions()
	o.Address, o.RunnerID, o.Namespace = addr, id, ctrd.NamespaceFor(id)
	o.Dir, o.HandlersDir, o.AgentPath, o.Images, o.Log = dir, filepath.Join(runnerDir, "handlers"), agent, st, cfg.Log
	o.MaxIdle = maxIdle
	return ctrd.New(ctx, o)
}

// coldStart returns the median time of a run of an sh handler on a sandbox
// that keeps nothing warm: every run starts the sandbox (a container, a
// namespace domain; for none, a process) and runs the handler in it.
func coldStart(ctx context.Context, newBox func(runnerDir string) (sandbox.Sandbox, error), runnerDir string) (float64, error) {
	sh, _ := processors.ByName("sh")
	src := "#!/bin/sh\n# Cold start.\n#\n# **\n# handler_type: mapper\necho '{\"jobx\":\"return\"}'\n"
	prog, err := sh.Install(filepath.Join(runnerDir, "handlers", "cold"), processors.Handler{Workflow: "cold", Name: "h", Type: "mapper", SourceType: "sh", Source: src})
	if err != nil {
		return 0, err
	}
	box, err := newBox(runnerDir)
	if err != nil {
		return 0, err
	}
	defer box.Close()
	if p, ok := box.(interface {
		Prepare(context.Context, ...string) error
	}); ok {
		if err := p.Prepare(ctx, "sh"); err != nil {
			return 0, err
		}
	}
	const n = 15
	var ms []float64
	for i := 0; i < n; i++ {
		var out bytes.Buffer
		start := time.Now()
		o, err := box.Run(ctx, &sandbox.RunSpec{Workflow: "cold", Handler: "h", HandlerType: "mapper", Processor: "sh", Program: prog,
			Env: []string{"PATH=/usr/bin:/bin"}, Stdin: strings.NewReader(""), Stdout: &out, Limits: sandbox.Limits{Timeout: time.Minute}})
		if err != nil || !o.Succeeded() || !strings.Contains(out.String(), "jobx") {
			return 0, fmt.Errorf("cold run: %v %+v %q", err, o, out.String())
		}
		ms = append(ms, float64(time.Since(start).Microseconds())/1000)
		// Let a domain or container stopped after its run go first.
		time.Sleep(50 * time.Millisecond)
	}
	return median(ms), nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	sort.Float64s(s)
	return s[len(s)/2]
}

// write prints the side-by-side table and the targets.
func (f *sandboxFigures) write(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "sandbox\ttrivial p50\ttrivial p99\tword count inv/s, warm (median of %d rounds)\tcold start\tlimits\n", f.Rounds)
	for _, r := range f.Rows {
		rounds := make([]string, len(r.WordcountRounds))
		for i, v := range r.WordcountRounds {
			rounds[i] = fmt.Sprintf("%.0f", v)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s (%s)\t%s\t%s\n", r.Sandbox, formatValue(r.TrivialP50, "ms"), formatValue(r.TrivialP99, "ms"),
			formatValue(r.WordcountIPS, "1/s"), strings.Join(rounds, ", "), formatValue(r.ColdStart, "ms"), r.Limits)
	}
	for name, why := range f.Skipped {
		fmt.Fprintf(tw, "%s\tskipped: %s\t\t\t\t\n", name, why)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, t := range f.Targets {
		verdict := "met"
		if t.MissedBy != nil {
			verdict = fmt.Sprintf("MISSED by %.2fx", *t.MissedBy)
		}
		fmt.Fprintf(w, "%s: %s vs %s = %s, target %s: %s\n", t.Label, formatValue(t.Value, t.Unit), formatValue(*t.Baseline, t.Unit), formatRatio(*t.Ratio), t.Target, verdict)
	}
	return nil
}
