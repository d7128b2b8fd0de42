package runner

import (
	"errors"
	"time"

	"github.com/jobx/jobx/internal/etcdmaint"
	"github.com/jobx/jobx/internal/queue"
	"github.com/nsqio/go-nsq"
)

// handleMessage is the NSQ handler. A message is finished only after its
// outcome is recorded; infrastructure failures are requeued until
// MaxAttempts, then fail the request. etcd out of space (NOSPACE) is
// waited out however long it lasts, not counted against MaxAttempts.
//
// A message for an invocation that this runner already processes (a
// duplicate, e.g. one published again by the recovery) is finished at
// once: the one held commits, or requeues itself.
func (r *Runner) handleMessage(topic string, m *nsq.Message) error {
	m.DisableAutoResponse()
	msg, err := queue.Decode(m.Body)
	if err != nil {
		r.log.Error("dropping undecodable message", "err", err, "body", string(m.Body))
		m.Finish()
		return nil
	}
	log := r.log.With("workflow", msg.WorkflowName, "request_id", msg.RequestID, "invocation_id", msg.InvocationID, "direction", msg.JobClass)
	// Keep the message alive while it waits and runs.
	touchDone := make(chan struct{})
	go func() {
		t := time.NewTicker(r.opts.MsgTimeout / 3)
		defer t.Stop()
		for {
			select {
			case <-touchDone:
				return
			case <-t.C:
				m.Touch()
			}
		}
	}()
	defer close(touchDone)

	if r.runCtx.Err() != nil {
		m.Requeue(0)
		return nil
	}
	if !r.held.hold(topic, msg.InvocationID) {
		log.Debug("duplicate of a message this runner processes; dropped")
		m.Finish()
		return nil
	}
	r.inFlight.Add(1)
	defer r.inFlight.Add(-1)

	err = r.process(r.runCtx, msg, log, m.Attempts == 1)
	// Released before the answer to nsqd: a requeued message may come
	// straight back here.
	r.held.release(topic, msg.InvocationID)
	switch {
	case err == nil:
		m.Finish()
	case errors.Is(err, errStale):
		log.Debug("message requeued to be read from etcd", "err", err)
		m.RequeueWithoutBackoff(0)
	case r.runCtx.Err() != nil:
		log.Warn("shutting down; message requeued", "err", err)
		m.RequeueWithoutBackoff(0)
	case etcdmaint.IsNoSpace(err):
		// etcd refuses writes until space is reclaimed: nothing is wrong
		// with the work, so it waits, not counted against MaxAttempts.
		delay := r.requeueDelay(m.Attempts)
		log.Warn("etcd is out of space (NOSPACE); message requeued until space is reclaimed (jobx etcd compact, defrag, disarm)",
			"attempt", m.Attempts, "delay", delay, "err", err)
		m.RequeueWithoutBackoff(delay)
	case m.Attempts >= r.opts.MaxAttempts:
		log.Error("giving up after repeated infrastructure failures", "attempts", m.Attempts, "err", err)
		if ferr := r.failForInfra(r.runCtx, msg, int(m.Attempts), err); ferr != nil {
			log.Error("could not record the failure; message requeued", "err", ferr)
			m.RequeueWithoutBackoff(r.opts.RequeueDelay)
			return nil
		}
		m.Finish()
	default:
		delay := r.requeueDelay(m.Attempts)
		log.Warn("infrastructure failure; message requeued", "attempt", m.Attempts, "delay", delay, "err", err)
		m.RequeueWithoutBackoff(delay)
	}
	return nil
}

// requeueDelay doubles RequeueDelay with each attempt (at most a minute),
// so a dependency that is away for a while (an etcd restarting) is waited
// for, not raced through MaxAttempts.
func (r *Runner) requeueDelay(attempts uint16) time.Duration {
	d := r.opts.RequeueDelay
	for i := uint16(1); i < attempts && d < time.Minute; i++ {
		d *= 2
	}
	return min(d, time.Minute)
}
