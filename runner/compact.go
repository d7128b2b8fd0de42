package runner

import (
	"context"

	"github.com/jobx/jobx/internal/etcdmaint"
	"github.com/prometheus/client_golang/prometheus"
)

// compactLoop runs this runner's etcd compactor until ctx ends. Every
// runner runs one; they elect one (under etcdmaint.CompactElection) that
// compacts etcd's history to CompactRetention behind, so a cluster bounds
// etcd's history as long as one runner lives. It also registers the
// compactor's metrics.
func (r *Runner) compactLoop(ctx context.Context) {
	c, err := etcdmaint.NewCompactor(r.opts.Etcd, etcdmaint.CompactOptions{
		Retention: r.opts.CompactRetention, ID: r.opts.ID, TTL: r.opts.LeaseTTL, Log: r.log,
	})
	if err != nil {
		r.log.Error("etcd compaction disabled", "err", err)
		return
	}
	labels := prometheus.Labels{"runner": r.opts.ID}
	r.metrics.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "jobx_etcd_compaction_leader", Help: "1 while this runner is the one that compacts etcd's history (elected), else 0.", ConstLabels: labels,
		}, func() float64 {
			if c.Leading() {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "jobx_etcd_compacted_revision", Help: "The revision this runner last compacted etcd's history to (0: none yet).", ConstLabels: labels,
		}, func() float64 { return float64(c.LastCompacted()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "jobx_etcd_compactions_total", Help: "Compactions of etcd's history made by this runner.", ConstLabels: labels,
		}, func() float64 { return float64(c.Compactions()) }),
	)
	c.Run(ctx)
}
