package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jobx/jobx/internal/queue"
	"github.com/jobx/jobx/kvmodel"
)

// submit handles POST /job/:workflow/:job.
func (g *Gateway) submit(c *gin.Context) {
	ctx := c.Request.Context()
	wf, jobName := c.Param("workflow"), c.Param("job")
	reqID := kvmodel.NewID()
	c.Header(HeaderRequestID, reqID)
	blocking := c.DefaultQuery("blocking", "true") == "true"

	raw := c.Request.Body
	if n := c.Request.ContentLength; n > g.opts.MaxBodyBytes {
		discardBody(c.Writer, raw, n)
		c.Error(bodyTooLarge(n, g.opts.MaxBodyBytes))
		return
	}
	c.Request.Body = http.MaxBytesReader(c.Writer, raw, g.opts.MaxBodyBytes)
	body, err := decodeJobBody(c.GetHeader("Content-Type"), c.Request.Body)
	if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
		discardBody(c.Writer, raw, -1)
	}
	if err != nil {
		c.Error(err)
		return
	}
	if c.Query("keep") == "true" {
		body.Keep = true
	}
	if err := kvmodel.ValidateTopicName("workflow name", wf); err != nil {
		c.Error(err)
		return
	}
	if err := kvmodel.ValidateName("job name", jobName); err != nil {
		c.Error(err)
		return
	}
	if _, err := g.catalog.Workflow(ctx, wf); err != nil {
		c.Error(fmt.Errorf("workflow %q: %w", wf, kvmodel.ErrNotFound))
		return
	}
	job, err := g.catalog.Job(ctx, wf, jobName)
	if err != nil {
		c.Error(fmt.Errorf("job %q in workflow %q: %w", jobName, wf, kvmodel.ErrNotFound))
		return
	}
	step, err := g.catalog.Step(ctx, wf, job.InitialStepName)
	if err != nil {
		c.Error(&apiError{http.StatusConflict, string(kvmodel.FailureDefinition), fmt.Sprintf("job %q names initial step %q, which does not exist", jobName, job.InitialStepName)})
		return
	}
	mapper, err := g.catalog.Handler(ctx, wf, step.MapHandlerName)
	if err != nil {
		c.Error(&apiError{http.StatusConflict, string(kvmodel.FailureDefinition), fmt.Sprintf("step %q names map handler %q, which does not exist", step.Name, step.MapHandlerName)})
		return
	}

	missing, err := g.missingCapability(ctx, wf, step)
	if err != nil {
		c.Error(err)
		return
	}
	if missing != nil && blocking {
		c.Error(&apiError{http.StatusServiceUnavailable, string(missing.Kind), missing.Message})
		return
	}

	root := &kvmodel.Invocation{
		ID: kvmodel.NewID(), WorkflowName: wf, RequestID: reqID, StepName: step.Name,
		Direction: kvmodel.DirectionMap, State: kvmodel.StatePending, CreatedTimestamp: kvmodel.Now(),
	}
	req := &kvmodel.Request{
		ID: reqID, WorkflowName: wf, JobName: jobName, InvocationID: root.ID,
		Context: map[string]any{"requester_ip": c.ClientIP()}, IsBlocking: blocking,
		State: kvmodel.StatePending, CreatedTimestamp: kvmodel.Now(), Keep: body.Keep,
	}
	var args []byte
	for _, p := range body.Arguments {
		args = kvmodel.AppendPairItem(args, p)
	}
	var wait *waiter
	wctx, cancel := context.WithTimeout(ctx, g.opts.BlockingTimeout)
	defer cancel()
	if blocking && missing == nil {
		// Registered before the request exists: the gateway's watch of
		// the requests (waiters) then sees its every change.
		if wait, err = g.waiters.add(req); err != nil {
			c.Error(fmt.Errorf("wait for request %s: %w", reqID, err))
			return
		}
		defer g.waiters.remove(req)
	}
	if missing != nil {
		// Reported, not parked: the request exists, already failed.
		err = g.store.CreateFailedRequest(ctx, req, root, args, missing, g.opts.Retention)
	} else {
		err = g.store.CreateRequest(ctx, req, root, args)
	}
	if err != nil {
		c.Error(err)
		return
	}
	if missing != nil {
		loc := "/request/" + wf + "/" + reqID
		c.Header("Location", loc)
		c.JSON(http.StatusAccepted, gin.H{"request_id": reqID, "status_url": loc, "result": nil, "state": kvmodel.StateFailed, "error": missing})
		return
	}

	msg := queue.Message{JobClass: kvmodel.DirectionMap, WorkflowName: wf, RequestID: reqID, InvocationID: root.ID, StepName: step.Name,
		Fresh: queue.NewFresh(kvmodel.PutOp(root).Value, kvmodel.PutOp(req).Value, req.Revision(), args)}
	if err := g.pub.Publish(kvmodel.MapTopic(wf, kvmodel.TopicCapability(mapper.RequiredCapability)), msg.Encode()); err != nil {
		// Not queued: end the recorded request, so nothing runs it behind
		// the back of a client told to submit again.
		g.failUnqueued(req, err)
		c.Error(&apiError{http.StatusServiceUnavailable, "queue_unavailable", fmt.Sprintf("request %s was not queued (it is recorded as failed; submit again): %v", reqID, err)})
		return
	}
	g.log.Debug("request accepted", "workflow", wf, "job", jobName, "request_id", reqID, "blocking", blocking)
	if !blocking {
		loc := "/request/" + wf + "/" + reqID
		c.Header("Location", loc)
		c.JSON(http.StatusAccepted, gin.H{"request_id": reqID, "status_url": loc, "result": nil})
		return
	}
	done, err := wait.wait(wctx)
	if err != nil {
		if errors.Is(wctx.Err(), context.DeadlineExceeded) {
			c.Error(&apiError{http.StatusGatewayTimeout, "timeout", fmt.Sprintf("request %s did not finish within %s; it goes on: GET /request/%s/%s", reqID, g.opts.BlockingTimeout, wf, reqID)})
			return
		}
		c.Error(fmt.Errorf("wait for request %s: %w", reqID, err))
		return
	}
	g.respondDone(c, done, true)
}

// respondDone answers with a done request's result or error. delivered
// schedules the request's cleanup once the result has been sent.
func (g *Gateway) respondDone(c *gin.Context, req *kvmodel.Request, delivered bool) {
	if req.State == kvmodel.StateFailed {
		c.Set("job_failed", true)
		failureHeaders(c, req)
		c.JSON(http.StatusInternalServerError, gin.H{"error": req.Error, "request_id": req.ID, "state": req.State})
		return
	}
	pairs, err := g.result(c.Request.Context(), req)
	if err != nil {
		c.Error(err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"result": gin.H{"pairs": pairs}, "request_id": req.ID, "state": req.State})
	if delivered && !req.Keep {
		g.cleanup.schedule(kvmodel.CleanupOp(req.WorkflowName, req.ID, time.Now().Add(g.opts.DeliveredRetention)))
	}
}

// result is the root invocation's reduction, the request's pairs: those
// the request carries (kvmodel.Request.Result), or else its dataset's.
func (g *Gateway) result(ctx context.Context, req *kvmodel.Request) ([]json.RawMessage, error) {
	if req.Result != nil {
		var pairs []json.RawMessage
		if err := json.Unmarshal(req.Result, &pairs); err == nil {
			return pairs, nil
		}
	}
	data, err := g.store.ReadDataset(ctx, req.WorkflowName, req.InvocationID, kvmodel.PostReduce)
	if err != nil {
		return nil, fmt.Errorf("result of request %s: %w", req.ID, err)
	}
	pairs, err := kvmodel.DecodePairArrays(data)
	if err != nil {
		return nil, fmt.Errorf("result of request %s: %w", req.ID, err)
	}
	return pairs, nil
}

// missingCapability returns a no_capability Failure when no live runner
// offers a capability that the initial step's handlers require.
func (g *Gateway) missingCapability(ctx context.Context, wf string, step *kvmodel.Step) (*kvmodel.Failure, error) {
	for role, name := range step.Roles() {
		if name == "" {
			continue
		}
		h, err := g.catalog.Handler(ctx, wf, name)
		if err != nil {
			return nil, &apiError{http.StatusConflict, string(kvmodel.FailureDefinition), fmt.Sprintf("step %q names %s handler %q, which does not exist", step.Name, role.Name, name)}
		}
		if f := g.runners.Unoffered(ctx, wf, step.Name, h); f != nil {
			return f, nil
		}
	}
	return nil, nil
}

// failUnqueued records a request whose first message could not be
// published (req, at its creation's revision) as failed. If even that write fails, the runners' recovery
// finds the request pending and queues it after --stall-after.
func (g *Gateway) failUnqueued(req *kvmodel.Request, cause error) {
	f := &kvmodel.Failure{Kind: kvmodel.FailureInfrastructure, Message: "the request could not be queued: " + cause.Error()}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.store.FailRequest(ctx, req, f, g.opts.Retention); err != nil {
		g.log.Warn("could not record an unqueued request as failed", "workflow", req.WorkflowName, "request_id", req.ID, "err", err)
	}
}
