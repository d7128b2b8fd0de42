package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/jobx/jobx/kvmodel"
)

// client posts jobs to the gateway.
type client struct {
	url  string
	http *http.Client
}

// post submits a blocking job and returns its result pairs.
func (c *client) post(ctx context.Context, job string, body []byte, query string) ([]json.RawMessage, string, error) {
	u := c.url + "/job/" + workflowName + "/" + job
	if query != "" {
		u += "?" + query
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, "", err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("POST %s: %s: %s", u, resp.Status, truncate(string(raw), 2000))
	}
	var out struct {
		Result struct {
			Pairs []json.RawMessage `json:"pairs"`
		} `json:"result"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, "", fmt.Errorf("POST %s: bad response: %w", u, err)
	}
	return out.Result.Pairs, resp.Header.Get("X-MR-REQUEST-ID"), nil
}

// waitReady posts the trivial job until it succeeds: the runner announces
// itself asynchronously, and until it has the gateway answers 503.
func waitReady(ctx context.Context, c *client, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		_, _, err := c.post(ctx, trivialJob, []byte(`{"arguments":{"x":1}}`), "")
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster not ready after %s: %w", within, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// measureTrivial posts warmup then n requests of a trivial job (trivialJob
// or trivialFork) one after the other and returns the latencies of the
// measured ones.
func measureTrivial(ctx context.Context, c *client, job string, warmup, n int) ([]time.Duration, error) {
	body := []byte(`{"arguments":{"x":1}}`)
	lat := make([]time.Duration, 0, n)
	for i := range warmup + n {
		start := time.Now()
		pairs, _, err := c.post(ctx, job, body, "")
		d := time.Since(start)
		if err != nil {
			return nil, fmt.Errorf("trivial request %d: %w", i, err)
		}
		if len(pairs) != 1 || compact(pairs[0]) != `["x",1]` {
			return nil, fmt.Errorf("trivial request %d: want pairs [[\"x\",1]], got %s", i, pairs)
		}
		if i >= warmup {
			lat = append(lat, d)
		}
	}
	return lat, nil
}

// wordcountRun is one measured word-count request.
type wordcountRun struct {
	Wall        time.Duration
	Counts      map[string]int64
	Maps        int // map invocations recorded in etcd
	Reduces     int // reduce invocations recorded in etcd
	RequestID   string
	RequestSize int
	Phases      *phases
}

// wordcountBody is the job's request body: one argument per document.
func wordcountBody(docs []document) ([]byte, error) {
	args := make(map[string]string, len(docs))
	for _, d := range docs {
		args[d.Name] = d.Text
	}
	return json.Marshal(map[string]any{"arguments": args})
}

// measureWordcount posts the word-count job over docs and, from etcd,
// counts the invocations it ran (the request is kept for that).
func measureWordcount(ctx context.Context, c *client, store *kvmodel.Store, docs []document) (*wordcountRun, error) {
	body, err := wordcountBody(docs)
	if err != nil {
		return nil, err
	}
	rev0, raft0, err := etcdCounters(ctx, store.Client())
	if err != nil {
		return nil, err
	}
	cpu0, err := sampleCPU()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	pairs, reqID, err := c.post(ctx, wordcountJob, body, "keep=true")
	wall := time.Since(start)
	if err != nil {
		return nil, fmt.Errorf("word count: %w", err)
	}
	cpu1, err := sampleCPU()
	if err != nil {
		return nil, err
	}
	rev1, raft1, err := etcdCounters(ctx, store.Client())
	if err != nil {
		return nil, err
	}
	counts, err := decodeCounts(pairs)
	if err != nil {
		return nil, fmt.Errorf("word count result: %w", err)
	}
	run := &wordcountRun{Wall: wall, Counts: counts, RequestID: reqID, RequestSize: len(body)}
	invs, err := kvmodel.List[kvmodel.Invocation](ctx, store, workflowName)
	if err != nil {
		return nil, err
	}
	req := &kvmodel.Request{WorkflowName: workflowName, ID: reqID}
	if err := store.Get(ctx, req); err != nil {
		return nil, fmt.Errorf("word count request: %w", err)
	}
	if run.Phases, err = analyze(invs, reqID, req.InvocationID, wall); err != nil {
		return nil, err
	}
	run.Phases.CPU = cpuBetween(cpu0, cpu1, wall)
	run.Phases.EtcdWrites = rev1 - rev0
	run.Phases.EtcdProposalsWithoutWrite = (raft1 - raft0) - (rev1 - rev0)
	for _, inv := range invs {
		if inv.RequestID != reqID {
			continue
		}
		if inv.State != kvmodel.StateDone {
			return nil, fmt.Errorf("word count: invocation %s is %s, not done", inv.ID, inv.State)
		}
		switch inv.Direction {
		case kvmodel.DirectionMap:
			run.Maps++
		default:
			run.Reduces++
		}
	}
	return run, nil
}

// decodeCounts turns [word, count] pairs into a map; a repeated word is an error.
func decodeCounts(pairs []json.RawMessage) (map[string]int64, error) {
	out := make(map[string]int64, len(pairs))
	for _, p := range pairs {
		var kv [2]json.RawMessage
		if err := json.Unmarshal(p, &kv); err != nil {
			return nil, fmt.Errorf("pair %s: %w", p, err)
		}
		var word string
		var n int64
		if err := json.Unmarshal(kv[0], &word); err != nil {
			return nil, fmt.Errorf("pair %s: key: %w", p, err)
		}
		if err := json.Unmarshal(kv[1], &n); err != nil {
			return nil, fmt.Errorf("pair %s: value: %w", p, err)
		}
		if _, dup := out[word]; dup {
			return nil, fmt.Errorf("word %q appears twice in the result", word)
		}
		out[word] = n
	}
	return out, nil
}

// diffCounts describes how got differs from want, or returns "".
func diffCounts(got, want map[string]int64) string {
	var diffs []string
	for w, n := range want {
		if g, ok := got[w]; !ok {
			diffs = append(diffs, fmt.Sprintf("%q missing (want %d)", w, n))
		} else if g != n {
			diffs = append(diffs, fmt.Sprintf("%q: got %d, want %d", w, g, n))
		}
	}
	for w, g := range got {
		if _, ok := want[w]; !ok {
			diffs = append(diffs, fmt.Sprintf("%q unexpected (%d)", w, g))
		}
	}
	if len(diffs) == 0 {
		return ""
	}
	sort.Strings(diffs)
	if len(diffs) > 10 {
		diffs = append(diffs[:10], fmt.Sprintf("... %d more", len(diffs)-10))
	}
	return fmt.Sprintf("%d words differ: %s", len(diffs), strings.Join(diffs, "; "))
}

// stats summarises latencies in milliseconds.
type stats struct{ P50, P99, Mean float64 }

func summarize(ms []float64) stats {
	s := slices.Clone(ms)
	slices.Sort(s)
	sum := 0.0
	for _, v := range s {
		sum += v
	}
	return stats{P50: percentile(s, 0.50), P99: percentile(s, 0.99), Mean: sum / float64(len(s))}
}

// percentile is the nearest-rank percentile of sorted values.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func millis(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = float64(d) / float64(time.Millisecond)
	}
	return out
}

func compact(raw []byte) string {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return string(raw)
	}
	return b.String()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
