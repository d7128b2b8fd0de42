package runner

import (
	"context"

	"github.com/jobx/jobx/internal/etcdmaint"
)

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
