package runner

// The cluster-wide roles every runner campaigns for in etcd, each held by
// one runner at a time: recovery (runner/recovery), etcd compaction and
// etcd defragmentation (internal/etcdmaint).

import (
	"context"

	"github.com/jobx/jobx/internal/etcdmaint"
	"github.com/jobx/jobx/kvmodel"
	"github.com/jobx/jobx/runner/recovery"
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

// defragLoop runs this runner's etcd defragmenter until ctx ends. Every
// runner started with a defragmentation threshold runs one; they elect one
// (under etcdmaint.DefragElection) that defragments etcd's members one at a
// time and, with EtcdDefrag.AutoDisarm, disarms NOSPACE once compaction and
// defragmentation have reclaimed the space.
func (r *Runner) defragLoop(ctx context.Context) {
	o := r.opts.EtcdDefrag
	o.ID, o.TTL, o.Log = r.opts.ID, r.opts.LeaseTTL, r.log
	d, err := etcdmaint.NewDefragmenter(r.opts.Etcd, o)
	if err != nil {
		r.log.Error("etcd defragmentation disabled", "err", err)
		return
	}
	d.Run(ctx)
}

// recoverLoop campaigns for the recovery role and sweeps while it holds it,
// until ctx ends.
func (r *Runner) recoverLoop(ctx context.Context) {
	o := r.opts
	recovery.Run(ctx, recovery.Options{
		ID: o.ID, Store: r.store, Catalog: r.catalog, Registry: r.registry, Publish: republisher{r},
		Notify: r.notify, Recovered: func(n int) { r.metrics.recovered.Add(float64(n)) },
		StallAfter: o.StallAfter, RequestDeadline: o.RequestDeadline, Retention: o.Retention, LeaseTTL: o.LeaseTTL, MsgTimeout: o.MsgTimeout,
		Channel: o.Channel, NSQDHTTP: o.NSQDHTTP, Lookupds: o.Lookupds, Log: r.log,
	})
}

// republisher queues again, for the recovery, what the runner queues.
type republisher struct{ r *Runner }

func (p republisher) PublishMaps(ctx context.Context, requestID, wf string, step *kvmodel.Step, ids []string) error {
	return p.r.publishMaps(ctx, requestID, wf, step, ids)
}

func (p republisher) PublishReduce(ctx context.Context, m, red *kvmodel.Invocation) error {
	return p.r.publishReduce(ctx, m, red)
}
