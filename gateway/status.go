package gateway

import (
	"context"
	"fmt"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/jobx/jobx/kvmodel"
)

// Progress counts a request's invocations.
type Progress struct {
	Done  int `json:"invocations_done"`
	Known int `json:"invocations_known"`
}

// status handles GET /request/:workflow/:id.
func (g *Gateway) status(c *gin.Context) {
	ctx := c.Request.Context()
	req := &kvmodel.Request{WorkflowName: c.Param("workflow"), ID: c.Param("id")}
	c.Header(HeaderRequestID, req.ID)
	if err := kvmodel.ValidateTopicName("workflow name", req.WorkflowName); err != nil {
		c.Error(err)
		return
	}
	if err := g.store.Get(ctx, req); err != nil {
		c.Error(fmt.Errorf("request %s of workflow %s (finished requests are kept for the retention period): %w", req.ID, req.WorkflowName, kvmodel.ErrNotFound))
		return
	}
	progress, err := g.progress(ctx, req)
	if err != nil {
		c.Error(err)
		return
	}
	out := gin.H{
		"request_id": req.ID, "workflow_name": req.WorkflowName, "job_name": req.JobName,
		"state": req.State, "is_done": req.IsDone, "is_blocking": req.IsBlocking,
		"created_timestamp": req.CreatedTimestamp, "done_timestamp": req.DoneTimestamp,
		"invocation_id": req.InvocationID, "progress": progress,
	}
	if req.Writer != nil {
		out["result_writer"] = req.Writer
	}
	switch req.State {
	case kvmodel.StateFailed:
		out["error"] = req.Error
		failureHeaders(c, req)
	case kvmodel.StateDone:
		pairs, err := g.result(ctx, req)
		if err != nil {
			c.Error(err)
			return
		}
		out["result"] = gin.H{"pairs": pairs}
	}
	c.JSON(http.StatusOK, out)
}

// progress walks the invocation tree: every map invocation and its reduce
// invocation count as known; those done count as done.
func (g *Gateway) progress(ctx context.Context, req *kvmodel.Request) (Progress, error) {
	var p Progress
	err := g.store.WalkTree(ctx, req.WorkflowName, req.InvocationID, func(n kvmodel.Node) error {
		for _, inv := range []*kvmodel.Invocation{n.Map, n.Reduce} {
			if inv == nil {
				continue
			}
			p.Known++
			if inv.State != kvmodel.StatePending {
				p.Done++
			}
		}
		return nil
	})
	if err != nil {
		return p, fmt.Errorf("progress: %w", err)
	}
	return p, nil
}
