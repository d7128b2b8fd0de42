package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jobx/jobx/internal/testenv"
)

func TestGenerateDocsIsDeterministic(t *testing.T) {
	a, b := generateDocs(20, 1000, 300, 7), generateDocs(20, 1000, 300, 7)
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("document %d differs between two runs with one seed", i)
		}
		if n := len(a[i].Text); n < 1000 || n > 1020 {
			t.Fatalf("document %d has %d bytes, want about 1000", i, n)
		}
	}
	if c := generateDocs(1, 1000, 300, 8); c[0] == a[0] {
		t.Fatal("another seed gave the same document")
	}
}

func TestPercentileIsNearestRank(t *testing.T) {
	s := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	if p := percentile(s, 0.5); p != 5 {
		t.Fatalf("p50: got %v, want 5", p)
	}
	if p := percentile(s, 0.99); p != 10 {
		t.Fatalf("p99: got %v, want 10", p)
	}
}

// TestQuickRunMatchesTheBaseline runs the whole harness in quick mode: a
// real cluster, the Python baseline, the JSON file.
func TestQuickRunMatchesTheBaseline(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster and runs a few hundred jobs")
	}
	cfg := defaultConfig()
	cfg.quick()
	cfg.Out = filepath.Join(t.TempDir(), "results.json")
	cfg.Log = testenv.Logger(t)
	var table strings.Builder
	cfg.Stdout = &table
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r, err := run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + table.String())
	if !r.WordcountMatchesBaseline {
		t.Fatal("word counts do not match the baseline")
	}
	if got := r.WordcountDistinctWords; got.Baseline == nil || got.Value != *got.Baseline {
		t.Fatalf("distinct words: jobx %v, baseline %v", got.Value, got.Baseline)
	}
	if n := r.WordcountInvocations.Value; n != float64(2*(1+cfg.Docs)) {
		t.Fatalf("word count ran %v invocations, want %d", n, 2*(1+cfg.Docs))
	}

	raw, err := os.ReadFile(cfg.Out)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(doc["machine"], &m); err != nil {
		t.Fatalf("machine: %v", err)
	}
	for _, k := range []string{"nproc", "cpu_model", "go_version", "date"} {
		if m[k] == nil || m[k] == "" || m[k] == 0.0 {
			t.Errorf("machine.%s is missing or empty: %v", k, m[k])
		}
	}
	withBaseline := map[string]bool{
		"trivial_p50": true, "trivial_p99": true, "trivial_mean": true, "trivial_fork_p50": true, "trivial_fork_p99": true, "wordcount_wall": true,
		"wordcount_invocations": false, "wordcount_invocations_per_s": false, "wordcount_distinct_words": true,
		"peak_rss_bench_process": false, "peak_rss_python_zygotes": false,
	}
	for name, hasBaseline := range withBaseline {
		var f map[string]any
		if err := json.Unmarshal(doc[name], &f); err != nil || f == nil {
			t.Errorf("figure %s is missing: %s", name, doc[name])
			continue
		}
		for _, k := range []string{"label", "value", "unit", "baseline", "ratio"} {
			if _, ok := f[k]; !ok {
				t.Errorf("figure %s has no %q", name, k)
			}
		}
		if v, _ := f["value"].(float64); v <= 0 {
			t.Errorf("figure %s: value %v is not positive", name, f["value"])
		}
		if hasBaseline && (f["baseline"] == nil || f["ratio"] == nil) {
			t.Errorf("figure %s has no baseline or ratio: %v", name, f)
		}
	}
	if s := r.Scaling; s == nil || len(s.Runs) != len(cfg.ScaleSizes) || s.CostGrowth == nil {
		t.Errorf("want a scaling run per size %v: %+v", cfg.ScaleSizes, s)
	} else {
		for _, run := range s.Runs {
			for _, f := range []*figure{run.Wall, run.PerInvocation, run.RSSGateway, run.RSSRunner} {
				if f.Value <= 0 {
					t.Errorf("%s: %v is not positive", f.Label, f.Value)
				}
			}
		}
	}
	if s := r.Small; s == nil || len(s.Jobx) != len(cfg.Small.Clients) {
		t.Errorf("want the small requests at each of %v clients: %+v", cfg.Small.Clients, s)
	} else {
		for _, l := range s.Jobx {
			if l.Requests != cfg.Small.Requests || l.P50MS <= 0 || l.P99MS < l.P50MS || l.PerS <= 0 {
				t.Errorf("small requests at %d clients: %+v", l.Clients, l)
			}
			if l.CleanedS < 0 {
				t.Errorf("small requests at %d clients: %d requests were in etcd at the end, and some still %s later", l.Clients, l.LeftAtEnd, cleanupWait)
			}
		}
	}
	for _, k := range []string{"sizes", "wordcount_phases", "wordcount_matches_baseline", "scaling", "small_requests"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("no %q in the JSON", k)
		}
	}
}

// TestCeleryPeerMatchesTheBaseline runs the peer on a few documents and
// requests: a private redis-server and a Celery worker, both gone
// afterwards.
func TestCeleryPeerMatchesTheBaseline(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server and a Celery worker")
	}
	testPeer(t, "Celery", celeryAvailable, benchCelery)
}

// TestDaskPeerMatchesTheBaseline runs the peer on a few documents and
// requests: a LocalCluster of two worker processes, gone afterwards.
func TestDaskPeerMatchesTheBaseline(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Dask LocalCluster")
	}
	testPeer(t, "Dask", daskAvailable, benchDask)
}

// testPeer runs a peer over 10 and 40 documents and a few trivial requests
// at 1 and 4 clients, and checks its counts and figures. Where the peer
// is not installed it skips, but fails under CI=true: make test installs
// the peers through make bench-deps.
func testPeer(t *testing.T, name string, available func(context.Context, string) string,
	bench func(context.Context, string, *baseline, string, peerWork) (*peerResult, error)) {
	t.Helper()
	cfg := defaultConfig()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if why := available(ctx, cfg.PeerPython); why != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the %s peer must run in CI (make test installs it through make bench-deps): %s", name, why)
		}
		t.Skip(why)
	}
	dir := t.TempDir()
	bl, err := newBaseline(filepath.Join(dir, "baseline"))
	if err != nil {
		t.Fatal(err)
	}
	docs := generateDocs(40, 1000, 300, 7)
	small := smallSpec{Clients: []int{1, 4}, Requests: 20, Warmup: 2}
	r, err := bench(ctx, cfg.PeerPython, bl, filepath.Join(dir, "peer"), peerWork{docs: docs, sizes: []int{10, 40}, warmDocs: 3, small: small})
	if err != nil {
		t.Fatal(err)
	}
	var notes strings.Builder
	r.writeNotes(&notes)
	for _, l := range r.Small {
		fmt.Fprintf(&notes, "%d clients: %+v\n", l.Clients, *l)
	}
	t.Log("\n" + notes.String())
	if err := checkPeer(r, docs); err != nil {
		t.Error(err)
	}
	if r.Name != name || len(r.Runs) != 2 {
		t.Fatalf("want %s's two runs: %+v", name, r)
	}
	for _, run := range r.Runs {
		if run.WallS <= 0 || run.Tasks != run.Docs+1 {
			t.Errorf("run %+v: want a positive wall time and one task per document and one more", run)
		}
	}
	for _, c := range small.Clients {
		l := r.small(c)
		if l == nil || l.Requests != small.Requests || l.P50MS <= 0 || l.P99MS < l.P50MS || l.PerS <= 0 {
			t.Errorf("trivial requests at %d clients: %+v", c, l)
		}
	}
	// A worker process or two and the driver, at some MiB each.
	if r.StartS <= 0 || r.Version == "" || r.Python == "" || r.Processes < 2 || r.PeakRSSWordcount < 20 || r.PeakRSS < r.PeakRSSWordcount {
		t.Errorf("want the start time, the versions and the processes' memory: %+v", r)
	}
}

// TestRSSSamplerSumsATreesPeaks samples a shell and its child: both are
// counted, each at a positive peak.
func TestRSSSamplerSumsATreesPeaks(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 5 & wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	s := sampleRSS(10 * time.Millisecond)
	s.add(cmd.Process.Pid)
	deadline := time.Now().Add(5 * time.Second)
	for s.peak().procs < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	s.close()
	if p := s.peak(); p.procs != 2 || p.bytes <= 0 {
		t.Fatalf("want the shell and its sleep, at a positive peak: %+v", p)
	}
	if early := s.peakUntil(time.Time{}); early.bytes > s.peak().bytes {
		t.Fatalf("an earlier total %d exceeds the last %d", early.bytes, s.peak().bytes)
	}
}
