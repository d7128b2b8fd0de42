package main

import (
	"io"
	"log/slog"
	"os"
)

// config sizes and routes one benchmark run.
type config struct {
	Out        string // JSON results file ("" writes none)
	Mode       string // "full" or "quick"
	Warmup     int    // trivial requests before measuring
	Requests   int    // measured trivial requests
	Docs       int    // word-count documents
	DocBytes   int    // approximate size of a document
	Vocabulary int    // distinct words the generator draws from
	Seed       uint64 // generator seed
	// WarmDocs is the size of the unmeasured word-count run that warms the
	// handlers up before the measured one.
	WarmDocs int
	// BaselineRuns is how many times the baseline word count runs (the
	// median is reported).
	BaselineRuns int
	CPUProfile   string
	KeepDir      bool
	// Sandboxes measures the sandboxes side by side (none, namespace and,
	// with Containerd, as root with containerd installed, containerd), in
	// SandboxRounds rounds.
	Sandboxes     bool
	Containerd    bool
	SandboxRounds int
	// ScaleSizes are the word-count sizes, ascending, of the scaling runs
	// on a cluster of separate processes.
	ScaleSizes []int
	// Celery and Dask add the peers: the word count on each, at Docs and
	// at each of PeerSizes (the scaling sizes), then Small, all run by
	// PeerPython.
	Celery     bool
	Dask       bool
	PeerSizes  []int
	PeerPython string
	// Small is the small-requests scenario, on jobx and on the peers.
	Small  smallSpec
	Log    *slog.Logger
	Stdout io.Writer
}

func defaultConfig() *config {
	return &config{
		Out:           "bench/out/results.json",
		Sandboxes:     true,
		Containerd:    true,
		SandboxRounds: 3,
		Mode:          "full",
		Warmup:        20,
		Requests:      300,
		Docs:          2000,
		DocBytes:      1000,
		Vocabulary:    300,
		Seed:          20240601,
		WarmDocs:      20,
		BaselineRuns:  5,
		ScaleSizes:    []int{500, 2000, 8000},
		Celery:        true,
		Dask:          true,
		PeerSizes:     []int{500, 2000, 8000},
		PeerPython:    "/usr/bin/python3",
		Small:         smallSpec{Clients: []int{1, 16, 64}, Requests: 1000, Warmup: 5},
		Stdout:        os.Stdout,
	}
}

// quick shrinks the run to a smoke test.
func (c *config) quick() {
	c.Mode = "quick"
	c.Requests = 50
	c.Docs = 200
	c.WarmDocs = 5
	c.BaselineRuns = 1
	c.ScaleSizes = []int{25, 100}
	c.Celery = false
	c.Dask = false
	c.Small.Requests, c.Small.Warmup = 50, 2
}
