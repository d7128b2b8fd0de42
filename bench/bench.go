package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
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
	loadStart := loadAverage()
	largest := cfg.Docs
	for _, n := range cfg.ScaleSizes {
		largest = max(largest, n)
	}
	// One seed: the first n documents of a longer run are the n documents
	// of a shorter one, so every size is a prefix of all.
	all := generateDocs(largest, cfg.DocBytes, cfg.Vocabulary, cfg.Seed)
	docs := all[:cfg.Docs]
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
	blWC, err := bl.run(ctx, wordcountJob, docArgs(docs), 1, cfg.BaselineRuns)
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

	fmt.Fprintln(os.Stderr, "bench: starting the cluster (etcd with fsync, nsqd, gateway, runner on the namespace sandbox)")
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
	lat, err := measureTrivial(ctx, cl, trivialJob, cfg.Warmup, cfg.Requests)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "bench: trivial job without reuse, %d warm-up + %d requests\n", cfg.Warmup, cfg.Requests)
	latFork, err := measureTrivial(ctx, cl, trivialFork, cfg.Warmup, cfg.Requests)
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
	rss, err := peakRSS(0)
	if err != nil {
		return nil, err
	}
	var zrss int64
	zs := zygotes(os.Getpid())
	for _, pid := range zs {
		if n, err := peakRSS(pid); err == nil {
			zrss += n
		}
	}
	var small *smallRequests
	if cfg.Small.Requests > 0 {
		fmt.Fprintf(os.Stderr, "bench: small requests, %d warm-up per client + %d trivial requests at each of %v clients\n", cfg.Small.Warmup, cfg.Small.Requests, cfg.Small.Clients)
		if small, err = benchSmall(ctx, c.url, c.sandbox, c.store, cfg.Small); err != nil {
			return nil, fmt.Errorf("small requests: %w", err)
		}
	}
	c.Close()

	r := &results{Machine: describeMachine(), WordcountMatchesBaseline: true, Small: small}
	r.Sizes = sizes{
		Mode: cfg.Mode, TrivialWarmup: cfg.Warmup, TrivialRequests: cfg.Requests, Docs: cfg.Docs, DocBytes: cfg.DocBytes,
		Vocabulary: cfg.Vocabulary, Seed: cfg.Seed, WordcountBody: wc.RequestSize, BaselineWCRuns: cfg.BaselineRuns,
		EtcdFsync: true, Sandbox: c.sandbox, RunnerConcurency: c.runnerConcurrency, ScaleSizes: cfg.ScaleSizes,
	}
	js, bs := summarize(millis(lat)), summarize(blTrivial.TimingsMS)
	r.TrivialP50 = newFigure("trivial job p50", js.P50, "ms").vs(bs.P50).atMost("<= 5 ms", 5)
	r.TrivialP99 = newFigure("trivial job p99", js.P99, "ms").vs(bs.P99)
	r.TrivialMean = newFigure("trivial job mean", js.Mean, "ms").vs(bs.Mean)
	fs := summarize(millis(latFork))
	r.TrivialForkP50 = newFigure("trivial job p50, without reuse (a fresh process per invocation)", fs.P50, "ms").vs(bs.P50)
	r.TrivialForkP99 = newFigure("trivial job p99, without reuse (a fresh process per invocation)", fs.P99, "ms").vs(bs.P99)
	label := fmt.Sprintf("word count %d docs", len(docs))
	blWall := summarize(blWC.TimingsMS).P50 / 1000
	r.WordcountWall = newFigure(label+" wall", wc.Wall.Seconds(), "s").vs(blWall)
	inv := float64(wc.Maps + wc.Reduces)
	r.WordcountInvocations = newFigure(label+" invocations", inv, "count")
	ips := inv / wc.Wall.Seconds()
	r.WordcountInvocationsPerS = newFigure("word count invocations/s", ips, "1/s").atLeast(">= 1000 /s", 1000)
	r.WordcountDocsPerS = newFigure("word count documents/s", float64(len(docs))/wc.Wall.Seconds(), "1/s").vs(float64(len(docs)) / blWall)
	r.WordcountPhases = wc.Phases
	wc.Phases.write(os.Stderr, len(docs))
	r.WordcountDistinctWords = newFigure("word count distinct words (= baseline)", float64(len(wc.Counts)), "count").vs(float64(len(blCounts)))
	r.PeakRSS = newFigure("peak RSS (bench process: etcd+nsqd+gateway+runner)", float64(rss)/(1<<20), "MiB")
	r.PeakRSSZygotes = newFigure(fmt.Sprintf("peak RSS (%d python zygotes, summed)", len(zs)), float64(zrss)/(1<<20), "MiB")

	if cfg.Sandboxes {
		if r.Sandboxes, err = benchSandboxes(ctx, cfg, dir, docs, blCounts); err != nil {
			return nil, fmt.Errorf("sandboxes: %w", err)
		}
	}

	peerSizes := append([]int{cfg.Docs}, cfg.PeerSizes...)
	slices.Sort(peerSizes)
	peerSizes = slices.Compact(peerSizes)
	work := peerWork{docs: all, sizes: peerSizes, warmDocs: cfg.WarmDocs, small: cfg.Small}
	if cfg.Small.Requests == 0 {
		work.small.Clients = nil
	}
	for _, p := range []struct {
		name      string
		on        bool
		available func(context.Context, string) string
		bench     func(context.Context, string, *baseline, string, peerWork) (*peerResult, error)
		result    **peerResult
		skipped   *string
	}{
		{"Celery", cfg.Celery, celeryAvailable, benchCelery, &r.Celery, &r.CelerySkipped},
		{"Dask", cfg.Dask, daskAvailable, benchDask, &r.Dask, &r.DaskSkipped},
	} {
		if !p.on {
			continue
		}
		if why := p.available(ctx, cfg.PeerPython); why != "" {
			*p.skipped = why
			fmt.Fprintf(os.Stderr, "bench: %s skipped: %s\n", p.name, why)
			continue
		}
		fmt.Fprintf(os.Stderr, "bench: %s: word count over %v documents, then trivial requests at %v clients\n", p.name, peerSizes, work.small.Clients)
		peer, err := p.bench(ctx, cfg.PeerPython, bl, filepath.Join(dir, strings.ToLower(p.name)), work)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", strings.ToLower(p.name), err)
		}
		if err := checkPeer(peer, all); err != nil {
			return nil, err
		}
		run := peer.run(cfg.Docs)
		if d := diffCounts(run.Counts, blCounts); d != "" {
			return nil, fmt.Errorf("%s WORD COUNT MISMATCH: its result differs from the baseline's: %s", strings.ToUpper(p.name), d)
		}
		r.WordcountWall.vsPeer(peer, run.WallS)
		r.WordcountDocsPerS.vsPeer(peer, float64(run.Docs)/run.WallS)
		*p.result = peer
	}
	if p := r.Celery.run(cfg.Docs); p != nil {
		r.WordcountWall.target("< Celery's", r.WordcountWall.Value < p.WallS, r.WordcountWall.Value/p.WallS)
	}

	if len(cfg.ScaleSizes) > 0 {
		if r.Scaling, err = benchScaling(ctx, cfg, filepath.Join(dir, "scale"), bl, all, r.Celery, r.Dask); err != nil {
			return nil, fmt.Errorf("scaling: %w", err)
		}
	}

	r.Machine.LoadStart, r.Machine.LoadEnd = loadStart, loadAverage()
	if err := r.writeTable(cfg.Stdout); err != nil {
		return nil, err
	}
	if r.Small != nil {
		fmt.Fprintln(cfg.Stdout)
		if err := r.Small.write(cfg.Stdout, []*peerResult{r.Celery, r.Dask}); err != nil {
			return nil, err
		}
	}
	if r.Sandboxes != nil {
		fmt.Fprintln(cfg.Stdout)
		if err := r.Sandboxes.write(cfg.Stdout); err != nil {
			return nil, err
		}
	}
	r.writeNotes(cfg.Stdout)
	if cfg.Out != "" {
		if err := r.writeJSON(cfg.Out); err != nil {
			return nil, err
		}
		fmt.Fprintln(os.Stderr, "bench: wrote", cfg.Out)
	}
	return r, nil
}

// docArgs are the word-count job's arguments as the baseline takes them.
func docArgs(docs []document) [][2]any {
	args := make([][2]any, len(docs))
	for i, d := range docs {
		args[i] = [2]any{d.Name, d.Text}
	}
	return args
}
