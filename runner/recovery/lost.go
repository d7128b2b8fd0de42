package recovery

import (
	"context"
	"errors"
	"time"

	"github.com/jobx/jobx/kvmodel"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The lost-work rule (see recovery): requests pending when a loss was
// noticed, walked until what they had pending from before it is found.

// settle is how long lost work must be seen nowhere before it is published
// again: two registry updates of the runners (every 2 s), and a margin.
const settle = 5 * time.Second

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

// lost starts (or restarts) the lost-work rule: the requests pending now
// are its suspects, and only what was written before now can have been
// lost.
func (rc *recovery) lost(ctx context.Context, why string) {
	gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	resp, err := rc.o.Store.Client().Get(gctx, kvmodel.JobxRoot+"recovery/", clientv3.WithCountOnly())
	cancel()
	if err != nil {
		rc.log.Warn("recovery: messages may have been lost, but etcd does not answer; the stall rule will find them", "why", why, "err", err)
		return
	}
	reqs, err := kvmodel.List[kvmodel.Request](ctx, rc.o.Store)
	if err != nil {
		rc.log.Warn("recovery: messages may have been lost, but the requests cannot be listed; the stall rule will find them", "why", why, "err", err)
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
		rc.log.Info("recovery: queue messages may have been lost; looking for the pending work they carried", "why", why, "requests", len(w.suspects))
	}
}

// sweepLost applies the lost-work rule to every suspect once.
func (rc *recovery) sweepLost(ctx context.Context) {
	w := rc.loss
	if len(w.suspects) == 0 || rc.now().Sub(w.at) > rc.o.StallAfter {
		if len(w.suspects) > 0 {
			rc.log.Info("recovery: lost work not found within --stall-after of the loss; the stall rule goes on", "requests", len(w.suspects))
		}
		rc.loss = nil
		return
	}
	held, perTopic := rc.o.Registry.Holding()
	for key, s := range w.suspects {
		done, err := rc.recoverLost(ctx, s, held, perTopic)
		if err != nil && ctx.Err() == nil {
			rc.log.Warn("recovery: look for lost work", "workflow", s.wf, "request_id", s.id, "err", err)
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
	w, now := rc.loss, rc.now()
	req := &kvmodel.Request{WorkflowName: s.wf, ID: s.id}
	if err := rc.o.Store.Get(ctx, req); err != nil {
		return errors.Is(err, kvmodel.ErrNotFound), err
	}
	if req.IsDone {
		return true, nil
	}
	need := settle
	if rc.view == nil {
		need = max(settle, 2*rc.o.MsgTimeout)
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
	err = rc.o.Store.WalkTree(ctx, s.wf, req.InvocationID, func(n kvmodel.Node) error {
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
		rc.log.Warn("lost queue messages: publishing the request's pending invocations again", "workflow", s.wf, "request_id", s.id,
			"messages", n, "lost_since", now.Sub(w.at).Round(time.Millisecond))
		if err := send.publish(ctx, rc, req); err != nil {
			return false, err
		}
		rc.o.Recovered(n)
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
