package etcdmaint

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/jobx/jobx/kvmodel"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// DefragElection is the etcd prefix of the defragmenter's election: the
// key under it with the lowest create revision names the process that
// defragments (its DefragOptions.ID).
const DefragElection = kvmodel.JobxRoot + "defrag/"

// DefragTimeout bounds the defragmentation of one member, and a physical
// compaction. A member rewrites its whole database to defragment it, in a
// time that grows with the data in use, and serves nothing else meanwhile.
const DefragTimeout = 5 * time.Minute

// Compact compacts etcd's history to revision rev, or to the current
// revision when rev <= 0, and returns the revision compacted to. The
// compaction is physical: the call returns once the member that served it
// has freed the old revisions, so a defragmentation right after gives the
// space back. A revision already compacted is not an error (the history
// before it is gone either way).
//
// Compacting to the current revision keeps no history: a watch that lags
// behind it is cancelled with ErrCompacted, and jobx's watches then read
// again (see the package doc). While etcd is out of space nothing is
// written, every watch is caught up, and that costs nothing.
func Compact(ctx context.Context, cli *clientv3.Client, rev int64) (int64, error) {
	if rev <= 0 {
		var err error
		if rev, err = Revision(ctx, cli); err != nil {
			return 0, err
		}
	}
	cctx, cancel := context.WithTimeout(ctx, DefragTimeout)
	defer cancel()
	_, err := cli.Compact(cctx, rev, clientv3.WithCompactPhysical())
	if err != nil && !errors.Is(err, rpctypes.ErrCompacted) {
		return 0, fmt.Errorf("compact etcd to revision %d: %w", rev, err)
	}
	return rev, nil
}

// Defragmented is one member's defragmentation.
type Defragmented struct {
	Name     string   `json:"name"`
	ID       MemberID `json:"id"`
	Endpoint string   `json:"endpoint"`
	// Before and After are the member's database size (DBSize) in bytes;
	// After is 0 when the member did not answer right after.
	Before int64 `json:"db_size_before"`
	After  int64 `json:"db_size_after"`
	// Took is how long the member was busy defragmenting.
	Took time.Duration `json:"took_ns"`
}

// Defragment defragments the member at endpoint (one of its client URLs),
// bounded by DefragTimeout. The member serves nothing else meanwhile.
func Defragment(ctx context.Context, cli *clientv3.Client, endpoint string) error {
	ctx, cancel := context.WithTimeout(ctx, DefragTimeout)
	defer cancel()
	if _, err := cli.Defragment(ctx, endpoint); err != nil {
		return fmt.Errorf("defragment etcd member at %s: %w", endpoint, err)
	}
	return nil
}

// DefragmentMembers defragments members one at a time, followers first and
// the leader last, in their order otherwise, so that at most one member is
// busy at a time and the leader only once no other member needs it. Members
// that did not answer Status are skipped. It returns what it did, and stops
// at the first failure.
func DefragmentMembers(ctx context.Context, cli *clientv3.Client, members []MemberStatus) ([]Defragmented, error) {
	todo := slices.Clone(members)
	slices.SortStableFunc(todo, func(a, b MemberStatus) int {
		return cmp.Compare(boolInt(a.Leader), boolInt(b.Leader))
	})
	var done []Defragmented
	for _, m := range todo {
		if !m.Answered() {
			continue
		}
		start := time.Now()
		if err := Defragment(ctx, cli, m.Endpoint); err != nil {
			return done, fmt.Errorf("member %s (%s): %w", m.Name, m.ID, err)
		}
		d := Defragmented{Name: m.Name, ID: m.ID, Endpoint: m.Endpoint, Before: m.DBSize, Took: time.Since(start)}
		if after := memberStatus(ctx, cli, m.Name, m.ID, []string{m.Endpoint}); after.Answered() {
			d.After = after.DBSize
		}
		done = append(done, d)
	}
	return done, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// DefragOptions configure a Defragmenter. Start from NewDefragOptions.
type DefragOptions struct {
	// Threshold is the fragmentation (MemberStatus.Fragmentation: the
	// share of a member's database file that is free pages) above which
	// the member is defragmented. 0 turns defragmentation off: Run returns
	// at once.
	Threshold float64
	// MinSize is the database size in bytes below which a member is not
	// defragmented for fragmentation alone (a small file is cheap to keep).
	MinSize int64
	// AutoDisarm disarms a NOSPACE alarm once every member's database is
	// below DisarmBelow of its quota, which compaction and then
	// defragmentation bring about; without it `jobx etcd disarm` is the
	// operator's step.
	AutoDisarm bool
	// DisarmBelow is that share of the quota (0.8: 80%).
	DisarmBelow float64
	// Interval is the time between two passes of the elected process.
	Interval time.Duration
	// ID is the value this process campaigns with (the runner's id).
	ID string
	// TTL is the lease of the election session: a defragmenter cut off
	// from etcd for longer loses the role to another.
	TTL time.Duration
	// Log receives a line per defragmentation and disarm, and the failures.
	Log *slog.Logger
}

// NewDefragOptions returns the defaults: off (Threshold 0); once turned
// on, members of at least 64 MiB, a pass a minute, NOSPACE disarmed below
// 80% of the quota.
func NewDefragOptions() DefragOptions {
	return DefragOptions{MinSize: 64 << 20, AutoDisarm: true, DisarmBelow: 0.8, Interval: time.Minute, TTL: 10 * time.Second}
}

// Validate checks o; its errors name the runner flags that set o.
func (o DefragOptions) Validate() error {
	if !(o.Threshold >= 0 && o.Threshold < 1) {
		return fmt.Errorf("--etcd-defrag-threshold must be at least 0 (off) and below 1, not %g", o.Threshold)
	}
	if o.MinSize < 0 {
		return fmt.Errorf("--etcd-defrag-min-size must not be negative, not %d", o.MinSize)
	}
	if !(o.DisarmBelow > 0 && o.DisarmBelow <= 1) {
		return fmt.Errorf("etcd defragmentation: the disarm level must be above 0 and at most 1, not %g", o.DisarmBelow)
	}
	if o.Interval < 0 || o.TTL < 0 {
		return errors.New("etcd defragmentation: interval and TTL must not be negative")
	}
	return nil
}

// disarmLevel is the database size under which m's NOSPACE may end.
func (o DefragOptions) disarmLevel(m MemberStatus) int64 {
	return int64(o.DisarmBelow * float64(m.Quota))
}

// NearQuota is the share of its quota from which a member's database is
// defragmented at half the Threshold: the nearer the file is to NOSPACE,
// the less free space is left in it.
const NearQuota = 0.7

// Needs reports whether a pass defragments member m; nospace says whether
// a NOSPACE alarm is raised in the cluster. A member needs it when
//   - its fragmentation is above Threshold and its database is at least
//     MinSize, or
//   - its database is at least MinSize and NearQuota of its quota, and
//     its fragmentation above half the Threshold, or
//   - NOSPACE is raised and defragmenting is what stands between it and
//     the disarm level: its database is at or above DisarmBelow of its
//     quota while the data in use is below it (compaction has freed the
//     rest).
//
// Under NOSPACE a pass also defragments, right after compacting, every
// member at or above the disarm level (see Defragmenter).
func (o DefragOptions) Needs(m MemberStatus, nospace bool) bool {
	if !m.Answered() || m.DBSize <= 0 {
		return false
	}
	if o.Threshold > 0 && m.DBSize >= o.MinSize {
		threshold := o.Threshold
		if m.Quota > 0 && float64(m.DBSize) >= NearQuota*float64(m.Quota) {
			threshold /= 2
		}
		if m.Fragmentation() > threshold {
			return true
		}
	}
	level := o.disarmLevel(m)
	return nospace && m.DBSize >= level && m.DBSizeInUse < level
}

// Defragmenter keeps etcd's database files compact and ends NOSPACE once
// space is reclaimed. Run campaigns for the role in etcd (under
// DefragElection, as the Compactor does under CompactElection); the elected
// process makes a pass every Interval:
//
//  1. It reads every member's status; while a member does not answer it
//     does nothing (defragmenting another one then could cost quorum).
//  2. While a NOSPACE alarm is raised, if etcd's revision moved since its
//     last such compaction (the first pass of an alarm, or deletes since:
//     cleanup, jobx request cleanup), it compacts the history to the
//     current revision: nothing can be written meanwhile, so no history is
//     worth its space (jobx's watches read again). Every member whose
//     database is at or above the disarm level is then defragmented too:
//     etcd counts freed pages out of the space in use only at its next
//     commits, which a full etcd does not make, so the space in use cannot
//     tell whether the compaction freed enough.
//  3. It defragments the members that need it (DefragOptions.Needs), one
//     at a time, followers first, the leader last.
//  4. With AutoDisarm, while NOSPACE is raised, it disarms it once every
//     member's database is below DisarmBelow of its quota, and logs that
//     writes resume.
//
// Outside NOSPACE, compaction is the Compactor's. Campaigning writes a
// lease and a key, which etcd refuses while NOSPACE is raised: the process
// elected before the alarm keeps the role through it, but if it stops
// during the alarm no other takes over until an operator reclaims space
// (`jobx etcd compact`, `jobx etcd defrag`, `jobx etcd disarm`). Run must
// be called once.
type Defragmenter struct {
	cli *clientv3.Client
	o   DefragOptions
	log *slog.Logger

	role role
	// noSpaceRev is the revision the last NOSPACE pass compacted to;
	// owned by Pass.
	noSpaceRev int64
}

// NewDefragmenter validates o and returns a Defragmenter of the etcd that
// cli talks to. Zero Interval, DisarmBelow, TTL, ID and Log pick the
// defaults. The caller keeps cli open while Run runs and closes it.
func NewDefragmenter(cli *clientv3.Client, o DefragOptions) (*Defragmenter, error) {
	if cli == nil {
		return nil, errors.New("etcd defragmentation: no etcd client")
	}
	def := NewDefragOptions()
	o.Interval = cmp.Or(o.Interval, def.Interval)
	o.DisarmBelow = cmp.Or(o.DisarmBelow, def.DisarmBelow)
	o.TTL = max(cmp.Or(o.TTL, def.TTL).Round(time.Second), time.Second)
	o.ID = cmp.Or(o.ID, "jobx")
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	log := o.Log.With("component", "etcd-defrag")
	return &Defragmenter{cli: cli, o: o, log: log, role: role{cli: cli, election: DefragElection, id: o.ID, ttl: o.TTL, log: log}}, nil
}

// Leading reports whether this process holds the defragmenter role now.
func (d *Defragmenter) Leading() bool { return d.role.leading.Load() }

// Run campaigns for the defragmenter role and makes a pass every Interval
// while it holds it, until ctx ends; a lost role is campaigned for again.
// With Threshold 0 it returns at once. It returns nil: every failure is
// logged and retried.
func (d *Defragmenter) Run(ctx context.Context) error {
	if d.o.Threshold == 0 {
		return nil
	}
	for ctx.Err() == nil {
		err := d.lead(ctx)
		if err == nil || ctx.Err() != nil {
			continue
		}
		wait := time.Second
		if IsNoSpace(err) {
			// Expected until space is reclaimed: the elected process, if
			// any, is at work.
			d.log.Debug("etcd defragmentation: cannot campaign while etcd is out of space", "err", err)
			wait = d.o.Interval
		} else {
			d.log.Warn("etcd defragmentation: lost or could not take the role; retrying", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	return nil
}

// lead becomes the defragmenter, then makes a pass every Interval until
// ctx ends (nil) or the session is lost (an error).
func (d *Defragmenter) lead(ctx context.Context) error {
	return d.role.hold(ctx, d.o.Interval, func() {
		d.log.Info("etcd defragmentation: this process defragments etcd's members", "threshold", d.o.Threshold,
			"min_size", d.o.MinSize, "auto_disarm", d.o.AutoDisarm, "every", d.o.Interval)
	}, func(ctx context.Context) {
		if _, err := d.Pass(ctx); err != nil && ctx.Err() == nil {
			d.log.Warn("etcd defragmentation", "err", err)
		}
	})
}

// PassReport is what one pass did.
type PassReport struct {
	// Compacted is the revision a NOSPACE pass compacted to, 0 for none.
	Compacted    int64
	Defragmented []Defragmented
	Disarmed     []Alarm
}

// Pass makes one pass (see Defragmenter), elected or not: the caller
// makes sure no other process defragments meanwhile. It is not safe for
// concurrent use.
func (d *Defragmenter) Pass(ctx context.Context) (PassReport, error) {
	var rep PassReport
	members, err := Status(ctx, d.cli)
	if err != nil {
		return rep, err
	}
	if i := slices.IndexFunc(members, func(m MemberStatus) bool { return !m.Answered() }); i >= 0 {
		m := members[i]
		return rep, fmt.Errorf("etcd member %s (%s) does not answer; defragmenting another one now could cost quorum: %s", m.Name, m.ID, m.Err)
	}
	nospace := slices.ContainsFunc(members, MemberStatus.NoSpace)
	if !nospace {
		d.noSpaceRev = 0
	} else {
		rev, err := Revision(ctx, d.cli)
		if err != nil {
			return rep, err
		}
		if rev > d.noSpaceRev {
			if _, err := Compact(ctx, d.cli, rev); err != nil {
				return rep, err
			}
			d.noSpaceRev, rep.Compacted = rev, rev
			d.log.Info("etcd is out of space (NOSPACE): compacted its history to the current revision", "revision", rev)
		}
	}
	var todo []MemberStatus
	for _, m := range members {
		if d.o.Needs(m, nospace) || rep.Compacted > 0 && m.DBSize >= d.o.disarmLevel(m) {
			todo = append(todo, m)
		}
	}
	if len(todo) > 0 {
		slices.SortStableFunc(todo, func(a, b MemberStatus) int { return cmp.Compare(b.Fragmentation(), a.Fragmentation()) })
		rep.Defragmented, err = DefragmentMembers(ctx, d.cli, todo)
		for _, x := range rep.Defragmented {
			d.log.Info("etcd defragmentation: defragmented a member", "member", x.Name, "id", x.ID, "endpoint", x.Endpoint,
				"db_size_before", x.Before, "db_size_after", x.After, "took", x.Took.Round(time.Millisecond))
		}
		if err != nil {
			return rep, err
		}
		if members, err = Status(ctx, d.cli); err != nil {
			return rep, err
		}
	}
	if !nospace || !d.o.AutoDisarm {
		return rep, nil
	}
	for _, m := range members {
		if level := d.o.disarmLevel(m); !m.Answered() || m.DBSize >= level {
			d.log.Warn("etcd is out of space (NOSPACE); not disarming until a member's database is below the disarm level: remove data (jobx request cleanup) or raise the quota",
				"member", m.Name, "db_size", m.DBSize, "db_size_in_use", m.DBSizeInUse, "quota", m.Quota, "disarm_below", level)
			return rep, nil
		}
	}
	rep.Disarmed, err = Disarm(ctx, d.cli)
	if len(rep.Disarmed) > 0 {
		d.log.Info("etcd: disarmed the NOSPACE alarm; every member's database is below the disarm level and writes resume",
			"disarm_below", d.o.DisarmBelow, "alarms", len(rep.Disarmed))
	}
	return rep, err
}
