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
	"fmt"
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

// settle is how long lost work must be seen nowhere before it is published
// again: two registry updates of the runners (every 2 s), and a margin.
const settle = 5 * time.Second

type stallMark struct {
	fingerprint [2]int64 // highest mod revision, invocations seen
	since       time.Time
}

// lossWindow is the lost-work rule's state since the last loss.
type lossWindow struct {
	rev      int64                // etcd revision when the loss was noticed
	at       time.Time            // and when
	suspects map[string]suspect   // requests pending then, by workflow/id
	marks    map[string]*lostMark // by invocation id
}

type suspect struct{ wf, id string }

// lostMark is a pending invocation seen nowhere.
type lostMark struct {
	rev   int64 // its revision then
	since time.Time
	sent  bool // published again
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
	r := rc
	if o.StallAfter > 0 {
		if rc.queues = newQueueWatch(o.NSQDHTTP, o.Lookupds, o.Channel); rc.queues == nil {
			r.log.Debug("recovery: no nsqd HTTP address (--nsqd-http, --lookupd): lost work is published again once no runner held it for 2 x --msg-timeout")
		}
	}
	for ctx.Err() == nil {
		if err := rc.lead(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("recovery: lost or could not take the role; retrying", "err", err)
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
	r := rc
	sess, err := concurrency.NewSession(r.o.Store.Client(), concurrency.WithTTL(int(max(r.o.LeaseTTL/time.Second, 2))), concurrency.WithContext(ctx))
	if err != nil {
		return err
	}
	defer sess.Close()
	el := concurrency.NewElection(sess, kvmodel.JobxRoot+"recovery/")
	rc.takeOver(ctx, el, sess)
	if err := el.Campaign(ctx, r.o.ID); err != nil {
		return err
	}
	r.log.Debug("recovery: this runner sweeps for lost and stalled requests")
	clear(rc.seen) // what another runner saw is unknown here: start afresh
	rc.loss, rc.lastStall = nil, rc.now()
	if r.o.StallAfter > 0 {
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
	r := rc
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := el.Leader(ctx)
	if err != nil || len(resp.Kvs) == 0 {
		return
	}
	kv := resp.Kvs[0]
	if string(kv.Value) != r.o.ID || clientv3.LeaseID(kv.Lease) == sess.Lease() {
		return
	}
	key := string(kv.Key)
	tr, err := r.o.Store.Client().Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)).Then(clientv3.OpDelete(key)).Commit()
	if err == nil && tr.Succeeded {
		r.log.Info("recovery: took the role over from an earlier life of this runner")
	}
}

// tick is the period of step: a second, or the stall sweep's period when
// shorter.
func (rc *recovery) tick() time.Duration { return min(time.Second, rc.every()) }

// step looks at the queues, then runs each rule that is due.
func (rc *recovery) step(ctx context.Context) {
	r := rc
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
			r.log.Warn("recovery sweep", "err", err)
		}
	}
}

// lost starts (or restarts) the lost-work rule: the requests pending now
// are its suspects, and only what was written before now can have been
// lost.
func (rc *recovery) lost(ctx context.Context, why string) {
	r := rc
	gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	resp, err := r.o.Store.Client().Get(gctx, kvmodel.JobxRoot+"recovery/", clientv3.WithCountOnly())
	cancel()
	if err != nil {
		r.log.Warn("recovery: messages may have been lost, but etcd does not answer; the stall rule will find them", "why", why, "err", err)
		return
	}
	reqs, err := kvmodel.List[kvmodel.Request](ctx, r.o.Store)
	if err != nil {
		r.log.Warn("recovery: messages may have been lost, but the requests cannot be listed; the stall rule will find them", "why", why, "err", err)
		return
	}
	w := &lossWindow{rev: resp.Header.Revision, at: rc.now(), suspects: map[string]suspect{}, marks: map[string]*lostMark{}}
	if rc.loss != nil {
		w.suspects = rc.loss.suspects
	}
	for _, req := range reqs {
		if !req.IsDone {
			w.suspects[req.WorkflowName+"/"+req.ID] = suspect{wf: req.WorkflowName, id: req.ID}
		}
	}
	rc.loss = w
	rc.lastLost = time.Time{}
	if len(w.suspects) > 0 {
		r.log.Info("recovery: queue messages may have been lost; looking for the pending work they carried", "why", why, "requests", len(w.suspects))
	}
}

// sweepLost applies the lost-work rule to every suspect once.
func (rc *recovery) sweepLost(ctx context.Context) {
	r := rc
	w := rc.loss
	if len(w.suspects) == 0 || rc.now().Sub(w.at) > r.o.StallAfter {
		if len(w.suspects) > 0 {
			r.log.Info("recovery: lost work not found within --stall-after of the loss; the stall rule goes on", "requests", len(w.suspects))
		}
		rc.loss = nil
		return
	}
	held, perTopic := r.o.Registry.Holding()
	for key, s := range w.suspects {
		done, err := rc.recoverLost(ctx, s, held, perTopic)
		if err != nil && ctx.Err() == nil {
			r.log.Warn("recovery: look for lost work", "workflow", s.wf, "request_id", s.id, "err", err)
		}
		if done {
			delete(w.suspects, key)
		}
	}
}

// recoverLost walks one suspect's tree and publishes again what of it is
// lost. done is true once the request has nothing pending from before the
// loss.
func (rc *recovery) recoverLost(ctx context.Context, s suspect, held map[string]bool, perTopic map[string]int) (done bool, err error) {
	r, w, now := rc, rc.loss, rc.now()
	req := &kvmodel.Request{WorkflowName: s.wf, ID: s.id}
	if err := r.o.Store.Get(ctx, req); err != nil {
		return errors.Is(err, kvmodel.ErrNotFound), err
	}
	if req.IsDone {
		return true, nil
	}
	need := settle
	if rc.view == nil {
		need = max(settle, 2*r.o.MsgTimeout)
	}
	var send frontier
	var sent []*lostMark
	old := 0
	consider := func(id string, rev int64, topic string, err error, add func()) error {
		if rev > w.rev {
			return nil // written, so published, after the loss
		}
		old++
		m := w.marks[id]
		switch {
		case err != nil:
			return err
		case m != nil && m.sent:
		case held[id] || !rc.nowhere(topic, perTopic):
			delete(w.marks, id)
		case m == nil || m.rev != rev:
			w.marks[id] = &lostMark{rev: rev, since: now}
		case now.Sub(m.since) >= need:
			add()
			sent = append(sent, m)
		}
		return nil
	}
	err = r.o.Store.WalkTree(ctx, s.wf, req.InvocationID, func(n kvmodel.Node) error {
		var f frontier
		f.add(n)
		for _, m := range f.maps {
			topic, err := rc.topic(ctx, s.wf, m.StepName, kvmodel.DirectionMap)
			if err := consider(m.ID, m.Revision(), topic, err, func() { send.maps = append(send.maps, m) }); err != nil {
				return err
			}
		}
		for _, p := range f.reduces {
			topic, err := rc.topic(ctx, s.wf, p[0].StepName, kvmodel.DirectionReduce)
			if err := consider(p[1].ID, p[1].Revision(), topic, err, func() { send.reduces = append(send.reduces, p) }); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	if n := len(send.maps) + len(send.reduces); n > 0 {
		r.log.Warn("lost queue messages: publishing the request's pending invocations again", "workflow", s.wf, "request_id", s.id,
			"messages", n, "lost_since", now.Sub(w.at).Round(time.Millisecond))
		if err := send.publish(ctx, rc, req); err != nil {
			return false, err
		}
		r.o.Recovered(n)
		for _, m := range sent {
			m.sent = true
		}
	}
	return old == 0, nil
}

// nowhere reports whether the last look at the queues shows no message of
// topic that a pending invocation could be waiting in: none queued or
// deferred, and none in flight beyond those the live runners hold (a dead
// runner's come back from nsqd after its MsgTimeout). Without a queue view
// it cannot tell, and says so; the caller then waits longer.
func (rc *recovery) nowhere(topic string, perTopic map[string]int) bool {
	v := rc.view
	if v == nil {
		return true
	}
	return v.complete && v.waiting[topic] == 0 && v.inFlight[topic] <= int64(perTopic[topic])
}

// topic returns the topic of the map or reduce messages of a step, as
// publishMaps and publishReduce route them.
func (rc *recovery) topic(ctx context.Context, wf, stepName, direction string) (string, error) {
	c := rc.o.Catalog
	step, err := c.Step(ctx, wf, stepName)
	if err != nil {
		return "", err
	}
	name, topic := step.MapHandlerName, kvmodel.MapTopic
	if direction == kvmodel.DirectionReduce {
		name, topic = step.ReduceHandlerName, kvmodel.ReduceTopic
	}
	h, err := c.Handler(ctx, wf, name)
	if err != nil {
		return "", err
	}
	return topic(wf, kvmodel.TopicCapability(h.RequiredCapability)), nil
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

// sweep looks at every pending request once.
func (rc *recovery) sweep(ctx context.Context) error {
	r := rc
	reqs, err := kvmodel.List[kvmodel.Request](ctx, r.o.Store)
	if err != nil {
		return err
	}
	now := rc.now()
	live := map[string]bool{}
	for _, req := range reqs {
		if req.IsDone {
			continue
		}
		created, err := time.Parse(kvmodel.TimestampFormat, req.CreatedTimestamp)
		if err != nil {
			continue
		}
		age := now.Sub(created)
		if r.o.RequestDeadline > 0 && age > r.o.RequestDeadline {
			if err := rc.expire(ctx, req); err != nil {
				r.log.Warn("recovery: fail a request past its deadline", "workflow", req.WorkflowName, "request_id", req.ID, "err", err)
			}
			continue
		}
		if r.o.StallAfter == 0 || age < r.o.StallAfter {
			continue
		}
		key := req.WorkflowName + "/" + req.ID
		live[key] = true
		if err := rc.check(ctx, key, req, now); err != nil {
			r.log.Warn("recovery: check a request", "workflow", req.WorkflowName, "request_id", req.ID, "err", err)
		}
	}
	for k := range rc.seen {
		if !live[k] {
			delete(rc.seen, k)
		}
	}
	return nil
}

// check walks one request's tree; when it has not changed for StallAfter it
// publishes the frontier again.
func (rc *recovery) check(ctx context.Context, key string, req *kvmodel.Request, now time.Time) error {
	r := rc
	var fp [2]int64
	var front frontier
	err := r.o.Store.WalkTree(ctx, req.WorkflowName, req.InvocationID, func(n kvmodel.Node) error {
		for _, inv := range []*kvmodel.Invocation{n.Map, n.Reduce} {
			if inv != nil {
				fp[0] = max(fp[0], inv.Revision())
				fp[1]++
			}
		}
		front.add(n)
		return nil
	})
	if err != nil {
		return err
	}
	mark, ok := rc.seen[key]
	if !ok || mark.fingerprint != fp {
		rc.seen[key] = stallMark{fingerprint: fp, since: now}
		return nil
	}
	if now.Sub(mark.since) < r.o.StallAfter {
		return nil
	}
	rc.seen[key] = stallMark{fingerprint: fp, since: now} // at most once per StallAfter
	n := len(front.maps) + len(front.reduces)
	r.log.Warn("request stalled: publishing its pending invocations again", "workflow", req.WorkflowName, "request_id", req.ID,
		"unchanged_for", now.Sub(mark.since).Round(time.Millisecond), "messages", n)
	r.o.Recovered(n)
	return front.publish(ctx, rc, req)
}

// frontier is what a stalled tree waits for: pending map invocations whose
// parent branched, pending reductions that are due, and finished child
// reductions their parent has not counted (runners re-drive the count).
type frontier struct {
	maps    []*kvmodel.Invocation
	reduces [][2]*kvmodel.Invocation // map invocation, its reduce invocation
}

func (f *frontier) add(n kvmodel.Node) {
	switch {
	case n.Map.State == kvmodel.StatePending:
		f.maps = append(f.maps, n.Map)
	case n.Reduce == nil:
		// a branch waiting for its children (or a failed map)
	case n.Reduce.State == kvmodel.StatePending,
		n.Reduce.State == kvmodel.StateDone && n.Map.Parent() != "" && !n.Counted:
		f.reduces = append(f.reduces, [2]*kvmodel.Invocation{n.Map, n.Reduce})
	}
}

func (f *frontier) publish(ctx context.Context, r *recovery, req *kvmodel.Request) error {
	var errs []error
	for _, m := range f.maps {
		step, err := r.o.Catalog.Step(ctx, req.WorkflowName, m.StepName)
		if err == nil {
			err = r.o.Publish.PublishMaps(ctx, req.ID, req.WorkflowName, step, []string{m.ID})
		}
		errs = append(errs, err)
	}
	for _, p := range f.reduces {
		errs = append(errs, r.o.Publish.PublishReduce(ctx, p[0], p[1]))
	}
	return errors.Join(errs...)
}

// expire fails a request that outlived RequestDeadline.
func (rc *recovery) expire(ctx context.Context, req *kvmodel.Request) error {
	r := rc
	f := &kvmodel.Failure{Kind: kvmodel.FailureDeadline,
		Message: fmt.Sprintf("the request did not finish within %s (jobx runner --request-deadline)", r.o.RequestDeadline)}
	err := r.o.Store.FailRequest(ctx, req, f, r.o.Retention)
	if errors.Is(err, kvmodel.ErrConflict) {
		return nil // it ended, or moved on, since it was read
	}
	if err != nil {
		return err
	}
	r.log.Warn("request failed: past its deadline", "workflow", req.WorkflowName, "request_id", req.ID, "deadline", r.o.RequestDeadline)
	r.o.Notify(ctx, req.WorkflowName, notifications.Event{Kind: notifications.RequestFailed, Name: "jobx.request", Level: "error",
		Message: fmt.Sprintf("request [%s] failed: %s", req.ID, f.Message), RequestID: req.ID})
	return nil
}
