package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jobx/jobx/internal/notifications"
	"github.com/jobx/jobx/internal/writers"
	"github.com/jobx/jobx/kvmodel"
	"github.com/jobx/jobx/runner/services"
)

// finishRequest runs after a request's root reduction was committed: it
// hands the result to the job's writer (the result stays in etcd whatever
// the writer does), records the writer's status on the request, and sends
// the completion notification when the workflow opted in.
func (r *Runner) finishRequest(ctx context.Context, t *task) {
	wf := t.req.WorkflowName
	cfg := r.opts.Writer
	if job, err := r.catalog.Job(ctx, wf, t.req.JobName); err == nil && job.ResultWriter != nil {
		cfg = *job.ResultWriter
	}
	if cfg.Kind != "" && cfg.Kind != writers.Inline {
		st := r.writeResult(ctx, t, cfg)
		if st.State == "failed" {
			t.log.Warn("result writer failed; the result stays fetchable", "writer", st.Kind, "err", st.Error)
		}
		if err := r.recordWriter(ctx, t.req, st); err != nil {
			t.log.Warn("record the result writer's status", "err", err)
		}
	}
	r.notify(ctx, wf, notifications.Event{Kind: notifications.RequestDone, Name: "jobx.request", Level: "info",
		Message: fmt.Sprintf("request %s of job %s is done", t.req.ID, t.req.JobName), RequestID: t.req.ID})
}

func (r *Runner) writeResult(ctx context.Context, t *task, cfg kvmodel.WriterConfig) kvmodel.WriterStatus {
	data, err := r.store.ReadDataset(ctx, t.req.WorkflowName, t.req.InvocationID, kvmodel.PostReduce)
	res := writers.Result{RequestID: t.req.ID, Workflow: t.req.WorkflowName, Job: t.req.JobName}
	if err == nil {
		res.Pairs, err = kvmodel.DecodePairArrays(data)
	}
	if err != nil {
		return kvmodel.WriterStatus{Kind: cfg.Kind, State: "failed", Error: "read the result: " + err.Error()}
	}
	return writers.Write(ctx, cfg, r.smtp(), res)
}

// smtp is the runner's SMTP settings for writers and notifications.
func (r *Runner) smtp() writers.Server {
	o := r.opts
	return writers.Server{SMTPAddr: o.SMTPAddr, SMTPFrom: o.SMTPFrom, SMTPUser: o.SMTPUser, SMTPPassword: o.SMTPPassword}
}

// recordWriter stores st on the request (compare-and-swap, retried).
func (r *Runner) recordWriter(ctx context.Context, req *kvmodel.Request, st kvmodel.WriterStatus) error {
	for attempt := 0; attempt < 10; attempt++ {
		cur := &kvmodel.Request{WorkflowName: req.WorkflowName, ID: req.ID}
		if err := r.store.Get(ctx, cur); err != nil {
			return err
		}
		cur.Writer = &st
		err := r.store.UpdateCAS(ctx, cur)
		if !errors.Is(err, kvmodel.ErrConflict) {
			return err
		}
	}
	return kvmodel.ErrConflict
}

// notify sends an event on workflow wf's channels (log only without any).
func (r *Runner) notify(ctx context.Context, wf string, e notifications.Event) {
	e.Workflow = wf
	var cfg *kvmodel.NotifyConfig
	if w, err := r.catalog.Workflow(ctx, wf); err == nil {
		cfg = w.Notifications
	}
	if err := r.sender.Send(ctx, cfg, e); err != nil {
		r.log.Warn("notification failed on every channel", "workflow", wf, "kind", e.Kind, "err", err)
	}
}

// handlerNotify routes a NOTIFY line from handler h's stderr in task t.
// Who sent it comes from the task, never from the line: a handler cannot
// notify on another workflow's channels, and a bare
// `JOBX-NOTIFY {"level": ..., "message": ...}` (any language) is routed.
// Delivery runs in the background (bounded by a minute) so the handler's
// stderr never waits for SMTP; Close waits for it.
func (r *Runner) handlerNotify(t *task, h *kvmodel.Handler, line string) bool {
	e, ok := notifications.ParseHandlerLine(line)
	if !ok {
		return false
	}
	e.Workflow, e.Handler, e.Name = h.WorkflowName, h.Name, "MR_HANDLER."+h.Name
	e.RequestID, e.InvocationID = t.req.ID, t.inv.ID
	r.notifying.Add(1)
	go func() {
		defer r.notifying.Done()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		r.notify(ctx, e.Workflow, e)
	}()
	return true
}

// watchHandlerUpdates notifies each workflow's channels once per burst of
// handler changes, from one runner only: the live runner with the smallest
// id.
type handlerUpdates struct {
	r      *Runner
	mu     sync.Mutex
	counts map[string]int
	timers map[string]*time.Timer
}

func (h *handlerUpdates) changed(ch kvmodel.Change) {
	if ch.Class != "handler" {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.counts[ch.Workflow]++
	if t, ok := h.timers[ch.Workflow]; ok {
		t.Reset(time.Second)
		return
	}
	wf := ch.Workflow
	h.timers[wf] = time.AfterFunc(time.Second, func() {
		h.mu.Lock()
		n := h.counts[wf]
		delete(h.counts, wf)
		delete(h.timers, wf)
		h.mu.Unlock()
		if !h.r.leads() {
			return
		}
		h.r.notify(context.Background(), wf, notifications.Event{Kind: notifications.HandlersUpdated, Name: "jobx.handlers", Level: "info",
			Message: fmt.Sprintf("applying handler updates in workflow %s: %d changed", wf, n)})
	})
}

// leads reports whether this runner has the smallest id among live runners.
func (r *Runner) leads() bool {
	ids := []string{r.opts.ID}
	for _, ri := range r.registry.Runners() {
		ids = append(ids, ri.ID)
	}
	return slices.Min(ids) == r.opts.ID
}

// postNotify handles NOTIFY through the services endpoint.
func (r *Runner) postNotify(ctx context.Context, g *services.Grant, body []byte) {
	var rec struct {
		Level   string `json:"level"`
		Message string `json:"message"`
	}
	json.Unmarshal(body, &rec)
	r.notify(ctx, g.Workflow, notifications.Event{Kind: notifications.Handler, Name: "MR_HANDLER." + g.Handler, Level: rec.Level,
		Message: rec.Message, RequestID: g.Request, InvocationID: g.Invocation, Handler: g.Handler})
}
