// Command bench measures jobx against the same Python handlers run without
// it: it starts an in-process cluster (embedded etcd with fsync on,
// in-process nsqd, one gateway, one runner with the namespace sandbox, the
// default), loads a benchmark workflow, and reports trivial-job latency and
// word-count throughput beside an in-process Python baseline and two peers,
// Celery and Dask distributed; trivial requests at 1, 16 and 64 concurrent
// clients on jobx and the peers; then the sandboxes side by side (none,
// namespace, containerd).
//
//	go run ./bench [-out bench/out/results.json] [-quick] [-sizes 500,2000,8000] [-celery] [-dask] [-cpuprofile cpu.out]
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
)

func main() {
	cfg := defaultConfig()
	flag.StringVar(&cfg.Out, "out", cfg.Out, "write the results as JSON to this `file`")
	quick := flag.Bool("quick", false, "small sizes, for a smoke test")
	flag.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write a CPU profile of the measurements to this `file`")
	flag.BoolVar(&cfg.KeepDir, "keep", false, "keep the cluster's temporary directory")
	verbose := flag.Bool("v", false, "log the daemons at debug level")
	flag.BoolVar(&cfg.Sandboxes, "sandboxes", cfg.Sandboxes, "also measure the sandboxes side by side (none, namespace, containerd)")
	flag.BoolVar(&cfg.Containerd, "containerd", cfg.Containerd, "include the containerd sandbox in the side-by-side figures (needs root and containerd)")
	flag.BoolVar(&cfg.Celery, "celery", cfg.Celery, "also run the peer Celery (false: no jobx/Celery ratios)")
	flag.BoolVar(&cfg.Dask, "dask", cfg.Dask, "also run the peer Dask distributed (false: no jobx/Dask ratios)")
	flag.IntVar(&cfg.Small.Requests, "small-requests", cfg.Small.Requests, "measured trivial requests per number of clients in the small-requests scenario (0: none)")
	flag.Func("sizes", "the scaling and the peers' word-count `sizes`, comma-separated, ascending (default 500,2000,8000)", func(v string) error {
		var sizes []int
		for f := range strings.SplitSeq(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 || (len(sizes) > 0 && n <= sizes[len(sizes)-1]) {
				return fmt.Errorf("want ascending positive numbers: %q", v)
			}
			sizes = append(sizes, n)
		}
		cfg.ScaleSizes, cfg.PeerSizes = sizes, sizes
		return nil
	})
	scaling := flag.Bool("scaling", true, "also run the scaling sizes on a cluster of separate processes")
	flag.Parse()
	if *quick {
		cfg.quick()
		// The flags given win over -quick's sizes and switches.
		_ = flag.CommandLine.Parse(os.Args[1:])
	}
	if !*scaling {
		cfg.ScaleSizes = nil
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}
