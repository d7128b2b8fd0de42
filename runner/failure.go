package runner

import (
	"context"
	"errors"
	"fmt"

	"github.com/jobx/jobx/internal/notifications"
	"github.com/jobx/jobx/internal/queue"
	"github.com/jobx/jobx/kvmodel"
	"github.com/jobx/jobx/sandbox"
)

// failOr fails the invocation with f, or returns the infrastructure error.
func (r *Runner) failOr(ctx context.Context, t *task, f *kvmodel.Failure, err error) error {
	if err != nil {
		return err
	}
	return r.fail(ctx, t, f)
}

// fail records an invocation's failure and fails its request, once.
func (r *Runner) fail(ctx context.Context, t *task, f *kvmodel.Failure) error {
	t.log.Warn("invocation failed", "kind", f.Kind, "handler", f.Handler, "err", f.Message)
	err := r.store.FailInvocation(ctx, t.seen(), f, r.opts.Retention)
	if errors.Is(err, kvmodel.ErrConflict) {
		return t.changed()
	}
	if err == nil {
		r.metrics.invocations.WithLabelValues(t.inv.WorkflowName, t.inv.StepName, f.Handler, t.inv.Direction, "failed_"+string(f.Kind)).Inc()
		r.notify(ctx, t.inv.WorkflowName, notifications.Event{Kind: notifications.RequestFailed, Name: "jobx.request", Level: "error",
			Message:   fmt.Sprintf("%s invocation [%s] under request [%s] failed. HANDLER=[%s]: %s", t.inv.Direction, t.inv.ID, t.req.ID, f.Handler, f.Message),
			RequestID: t.req.ID, InvocationID: t.inv.ID, Handler: f.Handler})
	}
	return err
}

// failForInfra fails a request whose message kept failing.
func (r *Runner) failForInfra(ctx context.Context, msg queue.Message, attempts int, cause error) error {
	t, err := r.load(ctx, msg, r.log)
	if err != nil || t == nil || t.req.IsDone || t.inv.State != kvmodel.StatePending {
		return err
	}
	return r.fail(ctx, t, &kvmodel.Failure{
		Kind: kvmodel.FailureInfrastructure, Attempts: attempts,
		Message: fmt.Sprintf("gave up after %d attempts: %v", attempts, cause),
	})
}

func failureOf(h *kvmodel.Handler, out *sandbox.Outcome, protoErr error, l sandbox.Limits) *kvmodel.Failure {
	f := &kvmodel.Failure{Handler: h.Name, StderrTail: out.StderrTail}
	code := out.ExitCode
	switch {
	case out.TimedOut:
		f.Kind, f.Message = kvmodel.FailureTimeout, fmt.Sprintf("handler %s timed out after %s and was killed", h.Name, l.Timeout)
	case out.OOMKilled:
		f.Kind, f.Message = kvmodel.FailureOOM, fmt.Sprintf("handler %s exceeded its memory limit (%d bytes) and was killed", h.Name, l.Memory)
	case out.OutputExceeded:
		f.Kind, f.Message = kvmodel.FailureOutputLimit, fmt.Sprintf("handler %s wrote more than %d bytes of output and was killed", h.Name, l.MaxOutput)
	case errors.As(protoErr, new(*kvmodel.LimitError)):
		f.Kind, f.Message = kvmodel.FailureItemLimit, fmt.Sprintf("handler %s wrote a dataset item over its limit: %v", h.Name, protoErr)
	case out.Signal != "":
		f.Kind, f.Message, f.Signal = kvmodel.FailureCrashed, fmt.Sprintf("handler %s was killed by signal %s", h.Name, out.Signal), out.Signal
		f.ExitCode = &code
	case out.ExitCode != 0:
		f.Kind, f.Message = kvmodel.FailureHandlerFailed, fmt.Sprintf("handler %s exited with status %d", h.Name, out.ExitCode)
		f.ExitCode = &code
	case protoErr != nil:
		f.Kind, f.Message = kvmodel.FailureProtocol, fmt.Sprintf("handler %s broke the output protocol: %v", h.Name, protoErr)
	default:
		return nil
	}
	return f
}
