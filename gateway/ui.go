package gateway

import (
	"context"
	"crypto/subtle"
	"embed"
	"fmt"
	"io/fs"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jobx/jobx/kvmodel"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The web UI is static HTML, CSS and JavaScript embedded in the binary (no
// build step); its pages read the JSON routes below and the job and request
// routes every client uses.
//
//go:embed ui
var uiFiles embed.FS

// uiHandler serves GET /ui/*filepath from the embedded files.
func (g *Gateway) uiHandler() gin.HandlerFunc {
	sub, err := fs.Sub(uiFiles, "ui")
	if err != nil {
		panic(err) // the embedded tree always has ui/
	}
	files := http.StripPrefix("/ui", http.FileServer(http.FS(sub)))
	return func(c *gin.Context) {
		c.Header("Cache-Control", "no-cache")
		files.ServeHTTP(c.Writer, c.Request)
	}
}

// uiRedirect sends /ui to /ui/.
func uiRedirect(c *gin.Context) { c.Redirect(http.StatusMovedPermanently, "/ui/") }

// tokenAllows reports whether the request may read workflow wf: always
// without configured tokens, else with a bearer token of wf or of
// AllWorkflows (the rule requireToken enforces).
func (g *Gateway) tokenAllows(c *gin.Context, wf string) bool {
	if len(g.opts.Tokens) == 0 {
		return true
	}
	token, ok := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer ")
	if !ok || token == "" {
		return false
	}
	for _, key := range []string{wf, AllWorkflows} {
		for _, t := range g.opts.Tokens[key] {
			if subtle.ConstantTimeCompare([]byte(t), []byte(token)) == 1 {
				return true
			}
		}
	}
	return false
}

// apiWorkflows handles GET /api/workflows: the workflows the caller's token
// may read, with their descriptions and job counts.
func (g *Gateway) apiWorkflows(c *gin.Context) {
	out := []gin.H{}
	for _, name := range g.catalog.Workflows() {
		if !g.tokenAllows(c, name) {
			continue
		}
		wf, err := g.catalog.Workflow(c.Request.Context(), name)
		if err != nil {
			continue // deleted since Workflows()
		}
		out = append(out, gin.H{"name": name, "description": wf.Description, "jobs": len(g.catalog.Jobs(name))})
	}
	c.JSON(http.StatusOK, gin.H{"workflows": out, "tokens_required": len(g.opts.Tokens) > 0})
}

// tokenValid reports whether the request carries a token valid for some
// workflow: always without configured tokens.
func (g *Gateway) tokenValid(c *gin.Context) bool {
	if len(g.opts.Tokens) == 0 {
		return true
	}
	for wf := range g.opts.Tokens {
		if g.tokenAllows(c, wf) {
			return true
		}
	}
	return false
}

// apiRunners handles GET /api/runners: the live runners, each with whether
// its handlers run isolated (false on the none sandbox). With tokens
// configured, a caller sees the runners that serve a workflow its token may
// read, listed with those workflows only; a runner that serves every
// workflow, with any valid token.
func (g *Gateway) apiRunners(c *gin.Context) {
	valid := g.tokenValid(c)
	out := []gin.H{}
	for _, r := range g.runners.Runners() {
		wfs := []string{}
		for _, wf := range r.Workflows {
			if g.tokenAllows(c, wf) {
				wfs = append(wfs, wf)
			}
		}
		if visible := valid && len(r.Workflows) == 0 || len(wfs) > 0; !visible {
			continue
		}
		out = append(out, gin.H{"id": r.ID, "host": r.Host, "capabilities": nonNil(r.Capabilities), "workflows": wfs,
			"sandbox": r.Sandbox, "isolated": r.Isolated(), "version": r.Version,
			"in_flight": r.InFlight, "concurrency": r.Concurrency, "started": r.Started})
	}
	c.JSON(http.StatusOK, gin.H{"runners": out, "tokens_required": len(g.opts.Tokens) > 0})
}

// nonNil returns s, or an empty slice for nil (JSON [] rather than null).
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// apiWorkflow handles GET /api/workflows/:workflow: its jobs, steps and
// handlers (without their source).
func (g *Gateway) apiWorkflow(c *gin.Context) {
	name := c.Param("workflow")
	wf, err := g.catalog.Workflow(c.Request.Context(), name)
	if err != nil {
		c.Error(fmt.Errorf("workflow %q: %w", name, kvmodel.ErrNotFound))
		return
	}
	jobs, steps, handlers := []gin.H{}, []gin.H{}, []gin.H{}
	for _, j := range g.catalog.Jobs(name) {
		jobs = append(jobs, gin.H{"name": j.Name, "description": j.Description, "initial_step": j.InitialStepName})
	}
	for _, s := range g.catalog.Steps(name) {
		steps = append(steps, gin.H{"name": s.Name, "description": s.Description,
			"map": s.MapHandlerName, "combine": s.CombineHandlerName, "reduce": s.ReduceHandlerName})
	}
	for _, h := range g.catalog.Handlers(name) {
		handlers = append(handlers, handlerSummary(h))
	}
	c.JSON(http.StatusOK, gin.H{"name": name, "description": wf.Description, "handlers_state": wf.HandlersState,
		"jobs": jobs, "steps": steps, "handlers": handlers})
}

func handlerSummary(h *kvmodel.Handler) gin.H {
	return gin.H{"name": h.Name, "description": h.Description, "handler_type": h.HandlerType, "source_type": h.SourceType,
		"version": h.Version, "required_capability": h.RequiredCapability, "file": h.Options.File}
}

// apiHandler handles GET /api/workflows/:workflow/handlers/:handler: the
// handler with its source.
func (g *Gateway) apiHandler(c *gin.Context) {
	wf, name := c.Param("workflow"), c.Param("handler")
	h, err := g.catalog.Handler(c.Request.Context(), wf, name)
	if err != nil {
		c.Error(fmt.Errorf("handler %q of workflow %q: %w", name, wf, kvmodel.ErrNotFound))
		return
	}
	out := handlerSummary(h)
	out["source_code"] = h.SourceCode
	out["options"] = h.Options
	c.JSON(http.StatusOK, out)
}

// maxListedRequests bounds how many request entities one listing reads;
// past it, the listing is a sample (ids are random, not in time order).
const maxListedRequests = 5000

// apiRequests handles GET /api/workflows/:workflow/requests?limit=N: the
// most recent requests (newest first), with state and duration: those
// still kept, then the summaries of those the cleanup removed (the
// workflow's history, kvmodel.MaxRecent of them; "removed": true).
func (g *Gateway) apiRequests(c *gin.Context) {
	wf := c.Param("workflow")
	if err := kvmodel.ValidateTopicName("workflow name", wf); err != nil {
		c.Error(err)
		return
	}
	limit, err := strconv.Atoi(c.DefaultQuery("limit", "50"))
	if err != nil || limit < 1 || limit > 1000 {
		c.Error(badRequest("limit: want a number from 1 to 1000"))
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), 10*time.Second)
	defer cancel()
	prefix := kvmodel.EntityRoot + (&kvmodel.Request{}).Class() + "/" + wf + "/"
	resp, err := g.store.Client().Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithLimit(maxListedRequests))
	if err != nil {
		c.Error(fmt.Errorf("list requests of %s: %w", wf, err))
		return
	}
	reqs := make([]*kvmodel.Request, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		r := &kvmodel.Request{}
		if kvmodel.Decode(r, string(kv.Key), kv.Value, kv.ModRevision) == nil {
			reqs = append(reqs, r)
		}
	}
	recent, err := g.store.RecentRequests(ctx, wf, int64(limit))
	if err != nil {
		c.Error(err)
		return
	}
	// The history's summaries, as requests (a live one wins: its cleanup
	// may have failed after the summary was written).
	live := map[string]bool{}
	for _, r := range reqs {
		live[r.ID] = true
	}
	removed := map[string]bool{}
	for _, rr := range recent {
		if live[rr.ID] {
			continue
		}
		removed[rr.ID] = true
		r := &kvmodel.Request{ID: rr.ID, WorkflowName: wf, JobName: rr.JobName, State: rr.State, IsDone: true, IsBlocking: rr.IsBlocking,
			CreatedTimestamp: rr.CreatedTimestamp, DoneTimestamp: rr.DoneTimestamp}
		if rr.ErrorKind != "" {
			r.Error = &kvmodel.Failure{Kind: rr.ErrorKind}
		}
		reqs = append(reqs, r)
	}
	sort.Slice(reqs, func(i, j int) bool {
		if reqs[i].CreatedTimestamp != reqs[j].CreatedTimestamp {
			return reqs[i].CreatedTimestamp > reqs[j].CreatedTimestamp
		}
		return reqs[i].ID < reqs[j].ID
	})
	out := []gin.H{}
	now := time.Now()
	for _, r := range reqs[:min(limit, len(reqs))] {
		item := gin.H{"request_id": r.ID, "job_name": r.JobName, "state": r.State, "is_done": r.IsDone,
			"is_blocking": r.IsBlocking, "keep": r.Keep, "created_timestamp": r.CreatedTimestamp, "done_timestamp": r.DoneTimestamp,
			"removed": removed[r.ID]}
		if d, ok := duration(r, now); ok {
			item["duration_seconds"] = d.Seconds()
		}
		if r.Error != nil {
			item["error_kind"] = r.Error.Kind
		}
		out = append(out, item)
	}
	c.JSON(http.StatusOK, gin.H{"requests": out, "truncated": resp.More})
}

// duration is how long a request took, or has been running.
func duration(r *kvmodel.Request, now time.Time) (time.Duration, bool) {
	start, err := kvmodel.ParseTimestamp(r.CreatedTimestamp)
	if err != nil {
		return 0, false
	}
	end := now
	if r.DoneTimestamp != "" {
		if end, err = kvmodel.ParseTimestamp(r.DoneTimestamp); err != nil {
			return 0, false
		}
	}
	return end.Sub(start), true
}
