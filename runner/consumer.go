package runner

import (
	"errors"
	"fmt"
	"time"

	"github.com/jobx/jobx/internal/etcdmaint"
	"github.com/jobx/jobx/internal/queue"
	"github.com/jobx/jobx/kvmodel"
	"github.com/nsqio/go-nsq"
)

// The consumer: one nsq.Consumer per map and reduce topic of each served
// workflow and offered capability (subscribe), each message held once
// (holdings.go) and handed to the engine (process, engine.go), finished or
// requeued by what the engine returns; drain stops taking messages.

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

// subscribe starts consumers for a workflow's map and reduce topics of
// every offered capability. It is idempotent.
func (r *Runner) subscribe(wf string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopping {
		return nil
	}
	added := 0
	for _, c := range r.opts.Capabilities {
		if err := kvmodel.ValidateTopicPair(wf, c); err != nil {
			return err
		}
		for _, topic := range []string{kvmodel.MapTopic(wf, c), kvmodel.ReduceTopic(wf, c)} {
			if _, ok := r.consumers[topic]; ok {
				continue
			}
			cons, err := r.consume(topic)
			if err != nil {
				return err
			}
			r.consumers[topic] = cons
			added++
		}
	}
	if added > 0 {
		r.log.Info("serving workflow", "workflow", wf)
	}
	return nil
}

func (r *Runner) consume(topic string) (*nsq.Consumer, error) {
	cfg := queue.Config(r.opts.NSQTLS)
	cfg.MaxInFlight = r.maxInFlight()
	cfg.MaxAttempts = 0          // the runner counts attempts itself
	cfg.OutputBufferSize = -1    // unbuffered: nsqd writes each message at once
	cfg.OutputBufferTimeout = -1 // (a buffer would hold messages up to 250 ms)
	cfg.LookupdPollInterval = 5 * time.Second
	cfg.MsgTimeout = r.opts.MsgTimeout
	cfg.ClientID = r.opts.ID // nsqd's /stats and nsqadmin name the runner
	cons, err := nsq.NewConsumer(topic, r.opts.Channel, cfg)
	if err != nil {
		return nil, fmt.Errorf("consumer for %s: %w", topic, err)
	}
	cons.SetLogger(queue.NSQLogger(r.log), nsq.LogLevelWarning)
	cons.AddConcurrentHandlers(nsq.HandlerFunc(func(m *nsq.Message) error { return r.handleMessage(topic, m) }), r.maxInFlight())
	if len(r.opts.Lookupds) > 0 {
		err = cons.ConnectToNSQLookupds(r.opts.Lookupds)
	} else {
		err = cons.ConnectToNSQDs(r.opts.NSQDs)
	}
	if err != nil {
		cons.Stop()
		return nil, fmt.Errorf("connect consumer for %s: %w", topic, err)
	}
	return cons, nil
}

// maxInFlight is how many messages a consumer holds at once: twice as many
// as handler runs, so that while Concurrency of them run handlers the
// others load their data or record their results (fsync'd etcd writes)
// instead of holding a run's place. Resuming after a pause restores it.
func (r *Runner) maxInFlight() int { return 2 * r.opts.Concurrency }

// drain stops the consumers and waits for in-flight handlers up to Grace.
func (r *Runner) drain() {
	r.mu.Lock()
	r.stopping = true
	consumers := make([]*nsq.Consumer, 0, len(r.consumers))
	for _, c := range r.consumers {
		consumers = append(consumers, c)
		c.Stop()
	}
	r.mu.Unlock()
	timer := time.NewTimer(r.opts.Grace)
	defer timer.Stop()
	for _, c := range consumers {
		select {
		case <-c.StopChan:
		case <-timer.C:
			r.log.Warn("drain grace elapsed; killing in-flight handlers", "grace", r.opts.Grace)
			r.runCancel()
			<-c.StopChan
		}
	}
}

// setPaused stops (or resumes) delivery of new messages on every consumer.
func (r *Runner) setPaused(paused bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.consumers {
		if paused {
			c.ChangeMaxInFlight(0)
		} else {
			c.ChangeMaxInFlight(r.maxInFlight())
		}
	}
}
