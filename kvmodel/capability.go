package kvmodel

import (
	"context"
	"fmt"
)

// Capability returns the capability a runner must serve to run h: the
// capability part of h's topics (TopicCapability of its required one).
func (h *Handler) Capability() string { return TopicCapability(h.RequiredCapability) }

// NoCapability returns the FailureNoCapability Failure of handler h of
// workflow wf (work is failed at once, never parked on a topic nobody
// consumes):
// its message names the capability, the workflow, the handler,
// step (when not empty) and the runner flag that would offer it.
func NoCapability(wf, step string, h *Handler) *Failure {
	c, of := h.Capability(), ""
	if step != "" {
		of = " of step " + step
	}
	return &Failure{Kind: FailureNoCapability, Handler: h.Name, Step: step,
		Message: fmt.Sprintf("no live runner offers capability %q for workflow %q, which handler %s%s requires; start one with: jobx runner --capabilities %s", c, wf, h.Name, of, c)}
}

// Unoffered returns NoCapability(wf, step, h) when no live runner serves
// the capability h requires for workflow wf (as Offers tells), nil when one
// does. It is the one rule by which the gateway refuses a request and a
// runner refuses to queue the next invocation.
func (r *Registry) Unoffered(ctx context.Context, wf, step string, h *Handler) *Failure {
	if r.Offers(ctx, wf, h.Capability()) {
		return nil
	}
	return NoCapability(wf, step, h)
}
