// Package recovery is the runner's recovery role: one runner of a cluster,
// elected in etcd, finds the requests whose queue messages were lost or
// whose work stopped moving, publishes their pending invocations again,
// and fails the requests past their deadline.
//
//	go recovery.Run(ctx, recovery.Options{ID: id, Store: store, ...})
package recovery

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/jobx/jobx/internal/notifications"
	"github.com/jobx/jobx/kvmodel"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// recovery finds the requests whose queue messages were lost, or whose
// work stopped moving, and drives them on.
//
// Messages carry ids only and every commit is conditional, so a message
// published twice changes nothing; but a message that is never delivered
// leaves its request pending for ever. That happens when nsqd dies with
// SIGKILL (the messages it had in flight or in memory are gone; so does a
// whole `jobx up`), or when a gateway dies between recording a request and
// queueing it. One runner of the cluster (elected in etcd) applies two
// rules:
//
//   - Lost work, soon after a loss. A loss is noticed when this runner
//     takes the role (nobody watched the queues meanwhile: a restarted
//     `jobx up`, a recovery runner that died) and when an nsqd's life ends
//     (queueWatch: it restarted, stopped answering, or nsqlookupd dropped
//     it). The requests pending then are suspects. Every settle/2 their
//     trees are walked, and a pending invocation written before the loss
//     is published again once it is provably nowhere on two looks settle
//     apart: no live runner holds it (runners announce the invocations
//     they process in their registry entries), and no nsqd queues or
//     defers a message of its topic or has one in flight that no live
//     runner holds. Without nsqd HTTP addresses (Options.NSQDHTTP,
//     Options.Lookupds) there is no queue view, and "nowhere" is "held by
//     no runner for 2 x MsgTimeout", by when nsqd has redelivered what a
//     dead runner held. The rule applies for StallAfter after the loss.
//   - Stalled work, the backstop: every StallAfter/4 it walks the trees of
//     the pending requests older than StallAfter; a request whose tree has
//     not changed for StallAfter gets its frontier published again.
//
// A request older than RequestDeadline fails with kvmodel.FailureDeadline.
type recovery struct {
	o   Options
	log *slog.Logger
	// seen remembers, per pending request, the tree's fingerprint and when
	// it was first seen with it.
	seen   map[string]stallMark
	now    func() time.Time
	queues *queueWatch // nil without nsqd HTTP addresses
	view   *queueView  // the last look's; nil without queues
	loss   *lossWindow // nil while no loss is being recovered

	lastLost, lastStall time.Time // the last sweep of each rule
}

// Publisher queues invocations again, as the runner routes them.
type Publisher interface {
	// PublishMaps queues map invocations ids of step.
	PublishMaps(ctx context.Context, requestID, wf string, step *kvmodel.Step, ids []string) error
	// PublishReduce queues reduce invocation red of map invocation m.
	PublishReduce(ctx context.Context, m, red *kvmodel.Invocation) error
}

// Options configure the recovery role; the durations are the runner's
// flags of the same names.
type Options struct {
	ID       string // the runner's, its value in the election
	Store    *kvmodel.Store
	Catalog  *kvmodel.Catalog
	Registry *kvmodel.Registry // what the live runners hold
	Publish  Publisher
	// Notify sends a workflow's notification (a request past its
	// deadline); Recovered counts the messages published again. Both may
	// be nil.
	Notify    func(ctx context.Context, wf string, e notifications.Event)
	Recovered func(n int)

	StallAfter, RequestDeadline, Retention, LeaseTTL, MsgTimeout time.Duration
	// Channel, NSQDHTTP and Lookupds give the queue view (see queueWatch).
	Channel            string
	NSQDHTTP, Lookupds []string
	Log                *slog.Logger
}

// Run campaigns for the recovery role and sweeps while it holds it, until
// ctx is cancelled.
func Run(ctx context.Context, o Options) {
	if o.Notify == nil {
		o.Notify = func(context.Context, string, notifications.Event) {}
	}
	if o.Recovered == nil {
		o.Recovered = func(int) {}
	}
	rc := &recovery{o: o, log: o.Log, seen: map[string]stallMark{}, now: time.Now}
	if o.StallAfter > 0 {
		if rc.queues = newQueueWatch(o.NSQDHTTP, o.Lookupds, o.Channel); rc.queues == nil {
			rc.log.Debug("recovery: no nsqd HTTP address (--nsqd-http, --lookupd): lost work is published again once no runner held it for 2 x --msg-timeout")
		}
	}
	for ctx.Err() == nil {
		if err := rc.lead(ctx); err != nil && ctx.Err() == nil {
			rc.log.Warn("recovery: lost or could not take the role; retrying", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

// lead becomes the cluster's recovery runner, then sweeps until its etcd
// session ends.
func (rc *recovery) lead(ctx context.Context) error {
	sess, err := concurrency.NewSession(rc.o.Store.Client(), concurrency.WithTTL(int(max(rc.o.LeaseTTL/time.Second, 2))), concurrency.WithContext(ctx))
	if err != nil {
		return err
	}
	defer sess.Close()
	el := concurrency.NewElection(sess, kvmodel.JobxRoot+"recovery/")
	rc.takeOver(ctx, el, sess)
	if err := el.Campaign(ctx, rc.o.ID); err != nil {
		return err
	}
	rc.log.Debug("recovery: this runner sweeps for lost and stalled requests")
	clear(rc.seen) // what another runner saw is unknown here: start afresh
	rc.loss, rc.lastStall = nil, rc.now()
	if rc.o.StallAfter > 0 {
		rc.lost(ctx, "this runner took the recovery role: the queues were not watched meanwhile")
	}
	t := time.NewTicker(rc.tick())
	defer t.Stop()
	for {
		rc.step(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-sess.Done():
			return errors.New("recovery: etcd session ended")
		case <-t.C:
		}
	}
}

// takeOver ends a hold of the role by an earlier life of this runner (the
// same id under another etcd session): that process is dead, and waiting
// for its lease to expire would only delay the recovery of what it lost.
// Runner ids are unique in a cluster (a restarted runner removes the
// sandboxes its id left, too).
func (rc *recovery) takeOver(ctx context.Context, el *concurrency.Election, sess *concurrency.Session) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := el.Leader(ctx)
	if err != nil || len(resp.Kvs) == 0 {
		return
	}
	kv := resp.Kvs[0]
	if string(kv.Value) != rc.o.ID || clientv3.LeaseID(kv.Lease) == sess.Lease() {
		return
	}
	key := string(kv.Key)
	tr, err := rc.o.Store.Client().Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)).Then(clientv3.OpDelete(key)).Commit()
	if err == nil && tr.Succeeded {
		rc.log.Info("recovery: took the role over from an earlier life of this runner")
	}
}

// tick is the period of step: a second, or the stall sweep's period when
// shorter.
func (rc *recovery) tick() time.Duration { return min(time.Second, rc.every()) }

// step looks at the queues, then runs each rule that is due.
func (rc *recovery) step(ctx context.Context) {
	if rc.queues != nil {
		v, ended := rc.queues.look(ctx)
		rc.view = &v
		if len(ended) > 0 {
			rc.lost(ctx, strings.Join(ended, "; "))
		}
	}
	now := rc.now()
	if rc.loss != nil && now.Sub(rc.lastLost) >= settle/2 {
		rc.lastLost = now
		rc.sweepLost(ctx)
	}
	if now.Sub(rc.lastStall) >= rc.every() {
		rc.lastStall = now
		if err := rc.sweep(ctx); err != nil && ctx.Err() == nil {
			rc.log.Warn("recovery sweep", "err", err)
		}
	}
}

// every is the sweep period: a quarter of StallAfter, or with recovery off
// a tenth of RequestDeadline (at most a minute).
func (rc *recovery) every() time.Duration {
	o := rc.o
	d := o.StallAfter / 4
	if o.StallAfter == 0 {
		d = min(o.RequestDeadline/10, time.Minute)
	}
	return max(d, 100*time.Millisecond)
}
