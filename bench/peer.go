package main

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// peerDriver is the part of the peers' Python drivers they share: the
// timing of the word counts and of the trivial requests, and the output.
//
//go:embed peer_driver.py
var peerDriver []byte

// peerResult is what one peer measured.
type peerResult struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Python  string `json:"python"`
	// Server is the version of the peer's broker (Celery's redis-server).
	Server string `json:"server,omitempty"`
	Setup  string `json:"setup"`
	// StartS is from starting the peer to its workers being ready; it is
	// in no wall time.
	StartS float64   `json:"start_s"`
	Runs   []peerRun `json:"runs"`
	// Small are the trivial requests at each number of clients.
	Small []*smallLevel `json:"small_requests,omitempty"`
	// PeakRSSWordcount and PeakRSS are the summed peak RSS (VmHWM) of
	// every process of the peer (its servers, workers and client) up to
	// the end of the word counts, and up to the end; Processes counts them.
	PeakRSSWordcount float64 `json:"peak_rss_wordcount_mib"`
	PeakRSS          float64 `json:"peak_rss_mib"`
	Processes        int     `json:"processes"`
}

// peerRun is one timed word count on a peer.
type peerRun struct {
	Docs  int     `json:"docs"`
	Tasks int     `json:"tasks"`
	WallS float64 `json:"wall_s"`
	// SubmitS is the part of WallS the submitting call took;
	// ClientCPUS the CPU the submitting process used during WallS.
	SubmitS    float64          `json:"submit_s"`
	ClientCPUS float64          `json:"client_cpu_s"`
	Counts     map[string]int64 `json:"-"`
}

// run returns the run over n documents, or nil.
func (p *peerResult) run(n int) *peerRun {
	if p == nil {
		return nil
	}
	for i := range p.Runs {
		if p.Runs[i].Docs == n {
			return &p.Runs[i]
		}
	}
	return nil
}

// small returns the trivial requests at the given number of clients, or nil.
func (p *peerResult) small(clients int) *smallLevel {
	if p == nil {
		return nil
	}
	for _, l := range p.Small {
		if l.Clients == clients {
			return l
		}
	}
	return nil
}

// peerWork is what a peer's driver measures: the word count over the
// first n of docs for each n in sizes, after one over warmDocs, then the
// trivial requests of small.
type peerWork struct {
	docs     []document
	sizes    []int
	warmDocs int
	small    smallSpec
}

// cannotImport says why python cannot import modules (a comma-separated
// import list), naming them as what, or "" when it can.
func cannotImport(ctx context.Context, python, modules, what string) string {
	if out, err := exec.CommandContext(ctx, python, "-c", "import "+modules).CombinedOutput(); err != nil {
		return fmt.Sprintf("%s cannot import %s (make bench-deps): %s", python, what, strings.TrimSpace(string(out)))
	}
	return ""
}

// writePeerFiles writes the peers' Python (files, peer_driver.py) and the
// handlers' spec (peer_spec.json) into bl's directory and returns the
// environment the peer's processes run with.
func writePeerFiles(bl *baseline, files map[string][]byte) ([]string, error) {
	spec, err := json.Marshal(bl.spec())
	if err != nil {
		return nil, err
	}
	all := map[string][]byte{"peer_driver.py": peerDriver, "peer_spec.json": spec}
	for name, data := range files {
		all[name] = data
	}
	for name, data := range all {
		if err := os.WriteFile(filepath.Join(bl.dir, name), data, 0o644); err != nil {
			return nil, err
		}
	}
	return append(os.Environ(), "JOBX_BENCH_SPEC="+filepath.Join(bl.dir, "peer_spec.json"), "PYTHONPATH="+bl.dir), nil
}

// runPeerDriver runs a peer's driver (python script in dir, with env) in a
// process group of its own, hands it w and extra on stdin, and returns what
// it measured (its start counted from started; its counts checked for form
// but not yet compared) and when its word counts ended. rss samples the
// driver's process tree beside what it already holds. The group is killed
// once the driver has exited, so no worker it started outlives it.
func runPeerDriver(ctx context.Context, python, script, dir string, env []string, started time.Time, w peerWork, extra map[string]any, rss *rssSampler) (*peerResult, time.Time, error) {
	pairs := make([][2]string, len(w.docs))
	for i, d := range w.docs {
		pairs[i] = [2]string{d.Name, d.Text}
	}
	spec := map[string]any{"docs": pairs, "sizes": w.sizes, "warmup_docs": w.warmDocs, "ready_timeout_s": 60, "timeout_s": 1800, "small": w.small}
	for k, v := range extra {
		spec[k] = v
	}
	in, err := json.Marshal(spec)
	if err != nil {
		return nil, time.Time{}, err
	}
	cmd := exec.CommandContext(ctx, python, script)
	cmd.Dir, cmd.Env, cmd.Stdin = dir, env, bytes.NewReader(in)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		return nil, time.Time{}, err
	}
	rss.add(cmd.Process.Pid)
	err = cmd.Wait()
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	name := strings.TrimSuffix(filepath.Base(script), ".py")
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("%s: %w: %s", name, err, truncate(strings.TrimSpace(stderr.String()), 3000))
	}
	var out struct {
		Version      string  `json:"version"`
		Ready        float64 `json:"ready_unix"`
		WordcountEnd float64 `json:"wordcount_end_unix"`
		Runs         []struct {
			peerRun
			Pairs []json.RawMessage `json:"result"`
		} `json:"runs"`
		Small []struct {
			Clients     int       `json:"clients"`
			Requests    int       `json:"requests"`
			WallS       float64   `json:"wall_s"`
			LatenciesMS []float64 `json:"latencies_ms"`
		} `json:"small"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		return nil, time.Time{}, fmt.Errorf("%s: bad output: %w", name, err)
	}
	r := &peerResult{Version: out.Version, StartS: out.Ready - float64(started.UnixNano())/1e9}
	for _, run := range out.Runs {
		if run.Counts, err = decodeCounts(run.Pairs); err != nil {
			return nil, time.Time{}, fmt.Errorf("%s: word count over %d documents: %w", name, run.Docs, err)
		}
		r.Runs = append(r.Runs, run.peerRun)
	}
	if len(r.Runs) != len(w.sizes) {
		return nil, time.Time{}, fmt.Errorf("%s: %d word counts, want %d", name, len(r.Runs), len(w.sizes))
	}
	for _, l := range out.Small {
		if len(l.LatenciesMS) != l.Requests {
			return nil, time.Time{}, fmt.Errorf("%s: %d latencies at %d clients, want %d", name, len(l.LatenciesMS), l.Clients, l.Requests)
		}
		r.Small = append(r.Small, newSmallLevel(l.Clients, l.LatenciesMS, l.WallS))
	}
	if len(r.Small) != len(w.small.Clients) {
		return nil, time.Time{}, fmt.Errorf("%s: trivial requests at %d numbers of clients, want %d", name, len(r.Small), len(w.small.Clients))
	}
	return r, time.Unix(0, int64(out.WordcountEnd*1e9)), nil
}

// finish fills in the peer's memory from rss (closed by then) and the
// Python version.
func (p *peerResult) finish(ctx context.Context, python string, rss *rssSampler, wordcountEnd time.Time) {
	wc, all := rss.peakUntil(wordcountEnd), rss.peak()
	p.PeakRSSWordcount, p.PeakRSS, p.Processes = float64(wc.bytes)/(1<<20), float64(all.bytes)/(1<<20), all.procs
	v, _ := exec.CommandContext(ctx, python, "--version").CombinedOutput()
	p.Python = strings.TrimSpace(string(v))
}

// checkPeer compares each of the peer's word counts with Go's count of the
// same documents.
func checkPeer(p *peerResult, docs []document) error {
	for _, run := range p.Runs {
		if d := diffCounts(run.Counts, countWords(docs[:run.Docs])); d != "" {
			return fmt.Errorf("%s WORD COUNT MISMATCH over %d documents: %s", strings.ToUpper(p.Name), run.Docs, d)
		}
	}
	return nil
}

// writeNotes prints the peer's setup, start, rates and memory.
func (p *peerResult) writeNotes(w io.Writer) {
	server := ""
	if p.Server != "" {
		server = ", redis-server " + p.Server
	}
	fmt.Fprintf(w, "%s %s on %s%s: %s. Start (to the workers' being ready) %.2f s, in no wall time.\n", p.Name, p.Version, p.Python, server, p.Setup, p.StartS)
	var rates []string
	for _, run := range p.Runs {
		rates = append(rates, fmt.Sprintf("%d docs %.2f s (%.0f tasks/s)", run.Docs, run.WallS, float64(run.Tasks)/run.WallS))
	}
	fmt.Fprintf(w, "%s word count (one task per document and one more; jobx runs 2 invocations per document and 2 more): %s.\n", p.Name, strings.Join(rates, ", "))
	fmt.Fprintf(w, "%s peak RSS, its %d processes summed (VmHWM, sampled every 100 ms): %.0f MiB to the end of the word counts, %.0f MiB to the end.\n",
		p.Name, p.Processes, p.PeakRSSWordcount, p.PeakRSS)
}
