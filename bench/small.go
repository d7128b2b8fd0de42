package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/jobx/jobx/kvmodel"
)

// smallSpec is the small-requests scenario: at each number of clients c,
// Warmup*c unmeasured (each client's first requests, which may bring up a
// worker), then Requests measured blocking trivial requests, each client
// sending its next request as soon as its last one is answered.
type smallSpec struct {
	Clients  []int `json:"clients"`
	Requests int   `json:"requests"`
	Warmup   int   `json:"warmup_per_client"`
}

// smallLevel is the trivial requests at one number of clients.
type smallLevel struct {
	Clients  int     `json:"clients"`
	Requests int     `json:"requests"`
	WallS    float64 `json:"wall_s"`
	P50MS    float64 `json:"p50_ms"`
	P99MS    float64 `json:"p99_ms"`
	PerS     float64 `json:"requests_per_s"`
	// LeftAtEnd is how many requests were still in etcd when the level's
	// last one was answered (each is deleted once its result is
	// delivered), CleanedS how long after that the last one went (-1: not
	// within cleanupWait). jobx's levels only.
	LeftAtEnd int     `json:"left_in_etcd_at_end,omitempty"`
	CleanedS  float64 `json:"cleaned_s_after_end,omitempty"`
}

// cleanupWait bounds the wait, after a level, for its requests to be
// cleaned up before the next level starts.
const cleanupWait = time.Minute

func newSmallLevel(clients int, latenciesMS []float64, wallS float64) *smallLevel {
	s := summarize(latenciesMS)
	return &smallLevel{Clients: clients, Requests: len(latenciesMS), WallS: wallS, P50MS: s.P50, P99MS: s.P99, PerS: float64(len(latenciesMS)) / wallS}
}

// smallRequests is the scenario on jobx and, where they ran, the peers.
type smallRequests struct {
	Spec smallSpec `json:"spec"`
	// Job is what a jobx request runs.
	Job  string        `json:"job"`
	Jobx []*smallLevel `json:"jobx"`
}

// benchSmall runs the scenario on jobx's trivial job (a leaf mapper and a
// reducer, reuse: handler) through the gateway at url, whose runner is on
// the sandbox kind box, from this process, over one HTTP client whose
// connections every client reuses. After each level it counts the requests
// still in etcd (store) and waits for the cleanup to remove them, so that
// a level neither leaves its cleanup to the next nor hides a cleanup that
// falls behind.
func benchSmall(ctx context.Context, url, box string, store *kvmodel.Store, spec smallSpec) (*smallRequests, error) {
	largest := 1
	for _, c := range spec.Clients {
		largest = max(largest, c)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = largest
	defer tr.CloseIdleConnections()
	cl := &client{url: url, http: &http.Client{Timeout: time.Minute, Transport: tr}}
	s := &smallRequests{Spec: spec, Job: "trivial: a leaf Python mapper yielding one pair, the default combiner, a Python reducer, both reuse: handler, on the " + box + " sandbox"}
	for _, clients := range spec.Clients {
		if _, _, err := burstTrivial(ctx, cl, clients, spec.Warmup*clients); err != nil {
			return nil, err
		}
		lat, wall, err := burstTrivial(ctx, cl, clients, spec.Requests)
		if err != nil {
			return nil, err
		}
		l := newSmallLevel(clients, millis(lat), wall.Seconds())
		if l.LeftAtEnd, l.CleanedS, err = awaitCleanup(ctx, store); err != nil {
			return nil, err
		}
		s.Jobx = append(s.Jobx, l)
	}
	return s, nil
}

// awaitCleanup counts the trivial job's requests in etcd, then
// waits until none is left: it returns the count and the seconds it took
// (-1 when some were still there after cleanupWait).
func awaitCleanup(ctx context.Context, store *kvmodel.Store) (left int, took float64, err error) {
	// The trivial job's requests: the word counts' are kept, for their
	// phases.
	count := func() (int, error) {
		rs, err := kvmodel.List[kvmodel.Request](ctx, store, workflowName)
		if err != nil {
			return 0, fmt.Errorf("count the requests left: %w", err)
		}
		n := 0
		for _, r := range rs {
			if r.JobName == trivialJob {
				n++
			}
		}
		return n, nil
	}
	start := time.Now()
	if left, err = count(); err != nil {
		return 0, 0, err
	}
	for n := left; n > 0; {
		if time.Since(start) > cleanupWait {
			return left, -1, nil
		}
		time.Sleep(50 * time.Millisecond)
		if n, err = count(); err != nil {
			return 0, 0, err
		}
	}
	return left, time.Since(start).Seconds(), nil
}

// burstTrivial sends n trivial requests from clients goroutines and
// returns their latencies and the wall time from the first request's start
// to the last one's answer.
func burstTrivial(ctx context.Context, cl *client, clients, n int) ([]time.Duration, time.Duration, error) {
	var (
		mu   sync.Mutex // guards left, lat and err
		left = n
		lat  = make([]time.Duration, 0, n)
		err  error
		wg   sync.WaitGroup
	)
	start := time.Now()
	for range clients {
		wg.Go(func() {
			for {
				mu.Lock()
				if left == 0 || err != nil {
					mu.Unlock()
					return
				}
				left--
				mu.Unlock()
				d, e := measureTrivial(ctx, cl, trivialJob, 0, 1) // checks the answer
				mu.Lock()
				if e == nil {
					lat = append(lat, d[0])
				} else if err == nil {
					err = e
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return lat, time.Since(start), err
}

// write prints the scenario as a table: per number of clients, jobx and
// each peer that ran, with jobx/peer ratios of p50 and of requests/s.
func (s *smallRequests) write(w io.Writer, peers []*peerResult) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "small requests\tclients\tp50\tp99\trequests/s\tjobx/peer p50\tjobx/peer requests/s\tleft in etcd at the end, all cleaned")
	for _, j := range s.Jobx {
		cleaned := "not within " + cleanupWait.String()
		if j.CleanedS >= 0 {
			cleaned = fmt.Sprintf("%.1f s later", j.CleanedS)
		}
		fmt.Fprintf(tw, "jobx\t%d\t%s\t%s\t%s\t\t\t%d, %s\n", j.Clients, formatValue(j.P50MS, "ms"), formatValue(j.P99MS, "ms"), formatValue(j.PerS, "1/s"), j.LeftAtEnd, cleaned)
		for _, p := range peers {
			l := p.small(j.Clients)
			if l == nil {
				continue
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t\n", p.Name, l.Clients, formatValue(l.P50MS, "ms"), formatValue(l.P99MS, "ms"), formatValue(l.PerS, "1/s"),
				formatRatio(j.P50MS/l.P50MS), formatRatio(j.PerS/l.PerS))
		}
	}
	return tw.Flush()
}
