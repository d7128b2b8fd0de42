package etcdmaint

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jobx/jobx/kvmodel"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// CompactElection is the etcd prefix of the election of the compactor: the
// key under it with the lowest create revision names the process that
// compacts (its CompactOptions.ID).
const CompactElection = kvmodel.JobxRoot + "compaction/"

// DefaultCompactRetention is the history a Compactor keeps by default.
const DefaultCompactRetention = 5 * time.Minute

const (
	// readTimeout bounds the read that samples etcd's revision.
	readTimeout = 5 * time.Second
	// compactTimeout bounds one physical compaction. The first one on a
	// cluster that has never been compacted may remove millions of
	// revisions (etcd deletes 1,000 keys a batch and pauses 10 ms between
	// batches). When it ends the call, etcd still finishes the compaction.
	compactTimeout = 5 * time.Minute
	// releaseTimeout bounds the lease revoke that hands the role over when
	// Run returns; an unreachable etcd lets the lease expire instead.
	releaseTimeout = 2 * time.Second
)

// CompactOptions configure a Compactor. The zero value of every field but
// Retention picks a default.
type CompactOptions struct {
	// Retention is how much history, in time, etcd keeps: the elected
	// compactor compacts to the newest revision it sampled at least
	// Retention ago. 0 disables compaction (Run returns at once).
	Retention time.Duration
	// Interval is how often the elected compactor samples etcd's revision
	// and compacts; 0 picks Retention/5 within [1s, 1 min].
	Interval time.Duration
	// ID is the value this process campaigns with: it names the process
	// that holds the role (default "jobx").
	ID string
	// TTL is the lease of the election session: a compactor cut off from
	// etcd for longer loses the role to another (default 10 s; at least
	// 1 s, a whole number of seconds).
	TTL time.Duration
	// Log receives a line per compaction and the failures (default
	// slog.Default()).
	Log *slog.Logger
}

// Compactor bounds etcd's history: Run campaigns for the compactor role in
// etcd and, while this process holds it, compacts. Several processes of a
// cluster run one each (every runner does); one at a time compacts, and
// another takes over within the session TTL when it stops or loses etcd.
//
// The elected compactor samples, every Interval, the current revision and
// the time; it compacts to the newest sample at least Retention old. So it
// never removes a revision that was current less than Retention ago, and a
// process newly elected keeps Retention of history from its election before
// it compacts the first time (it does not know when older revisions were
// written). A leader cut off from etcd may compact once more before it
// notices that its lease lapsed, beside the new leader: harmless, since
// both compact only to revisions at least Retention old, and a compaction
// to a revision already compacted (ErrCompacted) counts as done. Its
// methods are safe for concurrent use; Run must be called once.
type Compactor struct {
	cli *clientv3.Client
	o   CompactOptions
	log *slog.Logger

	role        role
	last        atomic.Int64
	compactions atomic.Int64
}

// NewCompactor validates o and returns a Compactor of the etcd that cli
// talks to. The caller keeps cli open while Run runs and closes it.
func NewCompactor(cli *clientv3.Client, o CompactOptions) (*Compactor, error) {
	if cli == nil {
		return nil, errors.New("etcd compaction: no etcd client")
	}
	if o.Retention < 0 {
		return nil, fmt.Errorf("etcd compaction: retention must not be negative, not %s", o.Retention)
	}
	if o.Interval < 0 {
		return nil, fmt.Errorf("etcd compaction: interval must not be negative, not %s", o.Interval)
	}
	if o.Interval == 0 {
		o.Interval = min(max(o.Retention/5, time.Second), time.Minute)
	}
	if o.ID == "" {
		o.ID = "jobx"
	}
	if o.TTL == 0 {
		o.TTL = 10 * time.Second
	}
	o.TTL = max(o.TTL.Round(time.Second), time.Second)
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return &Compactor{cli: cli, o: o, log: o.Log, role: role{cli: cli, election: CompactElection, id: o.ID, ttl: o.TTL, log: o.Log}}, nil
}

// Leading reports whether this process holds the compactor role now.
func (c *Compactor) Leading() bool { return c.role.leading.Load() }

// LastCompacted returns the revision this process last compacted etcd to
// (or found already compacted past), 0 before its first compaction.
func (c *Compactor) LastCompacted() int64 { return c.last.Load() }

// Compactions returns how many compactions this process made.
func (c *Compactor) Compactions() int64 { return c.compactions.Load() }

// Run campaigns for the compactor role and compacts while it holds it,
// until ctx ends; a lost role (etcd unreachable for longer than the TTL) is
// campaigned for again. With Retention 0 it returns at once. When ctx ends
// it revokes its election lease, so another process takes over at once.
// It returns nil: every failure is logged and retried.
func (c *Compactor) Run(ctx context.Context) error {
	if c.o.Retention == 0 {
		return nil
	}
	for ctx.Err() == nil {
		if err := c.lead(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("etcd compaction: lost or could not take the role; retrying", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
	return nil
}

// lead becomes the compactor, then compacts every Interval until ctx ends
// (nil) or the session is lost (an error).
func (c *Compactor) lead(ctx context.Context) error {
	var samples []sample
	return c.role.hold(ctx, c.o.Interval, func() {
		c.log.Info("etcd compaction: this process compacts etcd's history", "retention", c.o.Retention, "every", c.o.Interval)
	}, func(ctx context.Context) {
		if err := c.step(ctx, &samples); err != nil && ctx.Err() == nil {
			c.log.Warn("etcd compaction", "err", err)
		}
	})
}

// sample is etcd's revision at a time.
type sample struct {
	at  time.Time
	rev int64
}

// step samples the current revision and compacts to the newest sample at
// least Retention old, when that is newer than the last compaction.
func (c *Compactor) step(ctx context.Context, samples *[]sample) error {
	rctx, cancel := context.WithTimeout(ctx, readTimeout)
	resp, err := c.cli.Get(rctx, CompactElection, clientv3.WithPrefix(), clientv3.WithCountOnly())
	cancel()
	if err != nil {
		return fmt.Errorf("read etcd's revision: %w", err)
	}
	// The time after the read: every revision up to the one read existed
	// by then, so none is younger than the sample says.
	now := time.Now()
	cur := resp.Header.Revision
	*samples = append(*samples, sample{at: now, rev: cur})
	target, ok := pick(samples, now.Add(-c.o.Retention))
	if !ok || target.rev <= c.last.Load() {
		return nil
	}
	// Physical: the call returns once the member that served it has
	// deleted the old revisions from its backend, not when the compaction
	// is merely scheduled. So the logged duration is what compaction costs,
	// the space is free (for a defragmentation to return to the file
	// system) when the call returns, and a slow compaction holds back the
	// next one instead of queueing more behind it. Other members apply the
	// same compaction on their own.
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, compactTimeout)
	_, err = c.cli.Compact(cctx, target.rev, clientv3.WithCompactPhysical())
	cancel()
	if errors.Is(err, rpctypes.ErrCompacted) {
		// Someone compacted further already (a former leader, an operator,
		// etcd's own --auto-compaction).
		c.log.Debug("etcd compaction: history already compacted past the revision", "revision", target.rev)
		c.last.Store(target.rev)
		return nil
	}
	if err != nil {
		return fmt.Errorf("compact to revision %d: %w", target.rev, err)
	}
	c.last.Store(target.rev)
	c.compactions.Add(1)
	c.log.Info("etcd compaction: compacted history", "revision", target.rev,
		"behind_revisions", cur-target.rev, "behind", now.Sub(target.at).Round(time.Millisecond),
		"took", time.Since(start).Round(time.Microsecond))
	return nil
}

// pick returns the newest sample taken at or before cutoff and drops the
// samples older than it; ok is false when every sample is newer. samples
// are in the order they were taken.
func pick(samples *[]sample, cutoff time.Time) (s sample, ok bool) {
	i := -1
	for j, sm := range *samples {
		if sm.at.After(cutoff) {
			break
		}
		i = j
	}
	if i < 0 {
		return sample{}, false
	}
	s = (*samples)[i]
	*samples = (*samples)[i:]
	return s, true
}
