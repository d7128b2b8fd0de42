package gateway

import (
	"context"
	"fmt"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/jobx/jobx/kvmodel"
	clientv3 "go.etcd.io/etcd/client/v3"
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
	wf := req.WorkflowName
	level := []string{req.InvocationID}
	for len(level) > 0 {
		var next []string
		for start := 0; start < len(level); start += kvmodel.MaxTxnOps / 2 {
			batch := level[start:min(start+kvmodel.MaxTxnOps/2, len(level))]
			var ops []clientv3.Op
			for _, id := range batch {
				ops = append(ops,
					clientv3.OpGet(kvmodel.Key(&kvmodel.Invocation{WorkflowName: wf, ID: id})),
					clientv3.OpGet(kvmodel.Key(&kvmodel.Invocation{WorkflowName: wf, ID: kvmodel.ReduceID(id)})))
			}
			resp, err := g.store.Client().Txn(ctx).Then(ops...).Commit()
			if err != nil {
				return p, fmt.Errorf("progress: %w", err)
			}
			for i, r := range resp.Responses {
				for _, kv := range r.GetResponseRange().Kvs {
					inv := &kvmodel.Invocation{}
					if err := kvmodel.Decode(inv, string(kv.Key), kv.Value, kv.ModRevision); err != nil {
						return p, err
					}
					p.Known++
					if inv.State != kvmodel.StatePending {
						p.Done++
					}
					if i%2 == 0 && inv.IsBranch() && *inv.MappedCount > 0 {
						children, err := g.store.Children(ctx, wf, inv.ID)
						if err != nil {
							return p, err
						}
						next = append(next, children...)
					}
				}
			}
		}
		level = next
	}
	return p, nil
}
