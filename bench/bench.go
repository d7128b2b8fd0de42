package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"time"
)

// run starts the cluster, measures, prints the table to cfg.Stdout and
// writes cfg.Out. It fails when jobx's word counts differ from the
// baseline's.
func run(ctx context.Context, cfg *config) (*results, error) {
	dir, err := os.MkdirTemp("", "jobx-bench-")
	if err != nil {
		return nil, err
	}
	if cfg.KeepDir {
		fmt.Fprintln(os.Stderr, "bench: keeping", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	docs := generateDocs(cfg.Docs, cfg.DocBytes, cfg.Vocabulary, cfg.Seed)
	want := countWords(docs)

	// The baseline runs first, alone on the machine.
	bl, err := newBaseline(filepath.Join(dir, "baseline"))
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "bench: baseline (%d trivial runs, %d word counts over %d documents)\n", cfg.Requests, cfg.BaselineRuns, cfg.Docs)
	blTrivial, err := bl.run(ctx, trivialJob, [][2]any{{"x", 1}}, cfg.Warmup, cfg.Requests)
	if err != nil {
		return nil, err
	}
	args := make([][2]any, len(docs))
	for i, d := range docs {
		args[i] = [2]any{d.Name, d.Text}
	}
	blWC, err := bl.run(ctx, wordcountJob, args, 1, cfg.BaselineRuns)
	if err != nil {
		return nil, err
	}
	blCounts, err := decodeCounts(blWC.Result)
	if err != nil {
		return nil, fmt.Errorf("baseline word count: %w", err)
	}
	if d := diffCounts(blCounts, want); d != "" {
		return nil, fmt.Errorf("baseline word count differs from Go's count: %s", d)
	}

	fmt.Fprintln(os.Stderr, "bench: starting the cluster (etcd with fsync, nsqd, gateway, runner)")
	c, err := startCluster(ctx, filepath.Join(dir, "cluster"), cfg.Log, loadWorkflow)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	cl := &client{url: c.url, http: &http.Client{Timeout: 15 * time.Minute}}
	if err := waitReady(ctx, cl, 30*time.Second); err != nil {
		return nil, err
	}

	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
		defer pprof.StopCPUProfile()
	}

	fmt.Fprintf(os.Stderr, "bench: trivial job, %d warm-up + %d requests\n", cfg.Warmup, cfg.Requests)
	lat, err := measureTrivial(ctx, cl, cfg.Warmup, cfg.Requests)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "bench: word count warm-up over %d documents\n", cfg.WarmDocs)
	if _, err := measureWordcount(ctx, cl, c.store, docs[:min(cfg.WarmDocs, len(docs))]); err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "bench: word count over %d documents\n", len(docs))
	wc, err := measureWordcount(ctx, cl, c.store, docs)
	if err != nil {
		return nil, err
	}
	if d := diffCounts(wc.Counts, blCounts); d != "" {
		return nil, fmt.Errorf("WORD COUNT MISMATCH: jobx's result differs from the baseline's: %s", d)
	}
	wantInv := 2 * (1 + len(docs))
	if wc.Maps+wc.Reduces != wantInv {
		return nil, fmt.Errorf("word count ran %d map and %d reduce invocations, want %d in all", wc.Maps, wc.Reduces, wantInv)
	}

	r := &results{Machine: describeMachine(), WordcountMatchesBaseline: true}
	r.Sizes = sizes{
		Mode: cfg.Mode, TrivialWarmup: cfg.Warmup, TrivialRequests: cfg.Requests, Docs: cfg.Docs, DocBytes: cfg.DocBytes,
		Vocabulary: cfg.Vocabulary, Seed: cfg.Seed, WordcountBody: wc.RequestSize, BaselineWCRuns: cfg.BaselineRuns,
		EtcdFsync: true, Sandbox: "process", RunnerConcurency: c.runnerConcurrency,
	}
	js, bs := summarize(millis(lat)), summarize(blTrivial.TimingsMS)
	r.TrivialP50 = newFigure("trivial job p50", js.P50, "ms").vs(bs.P50).target("<= 5 ms", js.P50 <= 5)
	r.TrivialP99 = newFigure("trivial job p99", js.P99, "ms").vs(bs.P99)
	r.TrivialMean = newFigure("trivial job mean", js.Mean, "ms").vs(bs.Mean)
	label := fmt.Sprintf("word count %d docs", len(docs))
	blWall := summarize(blWC.TimingsMS).P50 / 1000
	r.WordcountWall = newFigure(label+" wall", wc.Wall.Seconds(), "s").vs(blWall)
	inv := float64(wc.Maps + wc.Reduces)
	r.WordcountInvocations = newFigure(label+" invocations", inv, "count")
	ips := inv / wc.Wall.Seconds()
	r.WordcountInvocationsPerS = newFigure("word count invocations/s", ips, "1/s").target(">= 1000 /s", ips >= 1000)
	r.WordcountPhases = wc.Phases
	wc.Phases.write(os.Stderr, len(docs))
	r.WordcountDistinctWords = newFigure("word count distinct words (= baseline)", float64(len(wc.Counts)), "count").vs(float64(len(blCounts)))

	if cfg.Containerd {
		cf, why, err := benchContainerd(ctx, cfg, dir, js.P50, js.P99)
		switch {
		case err != nil:
			return nil, fmt.Errorf("containerd figures: %w", err)
		case cf == nil:
			fmt.Fprintf(os.Stderr, "bench: containerd figures skipped: %s\n", why)
		default:
			r.CtrTrivialP50, r.CtrTrivialP99, r.CtrColdStart = cf.TrivialP50, cf.TrivialP99, cf.ColdStart
		}
	}

	rss, err := peakRSS(0)
	if err != nil {
		return nil, err
	}
	r.PeakRSS = newFigure("peak RSS (bench process: etcd+nsqd+gateway+runner)", float64(rss)/(1<<20), "MiB")
	var zrss int64
	zs := zygotes()
	for _, pid := range zs {
		if n, err := peakRSS(pid); err == nil {
			zrss += n
		}
	}
	r.PeakRSSZygotes = newFigure(fmt.Sprintf("peak RSS (%d python zygotes, summed)", len(zs)), float64(zrss)/(1<<20), "MiB")

	if err := r.writeTable(cfg.Stdout); err != nil {
		return nil, err
	}
	if cfg.Out != "" {
		if err := r.writeJSON(cfg.Out); err != nil {
			return nil, err
		}
		fmt.Fprintln(os.Stderr, "bench: wrote", cfg.Out)
	}
	return r, nil
}
