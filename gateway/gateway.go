// Package gateway is jobx's HTTP API: it accepts job requests, queues
// their root invocation and, for blocking requests, waits for the result.
//
//	gw, err := gateway.New(ctx, opts)
//	go gw.Run(ctx) // serves opts.Addr until ctx is cancelled
//	defer gw.Close()
//
// Routes: POST /job/<workflow>/<job>?blocking=true|false&keep=true,
// GET /request/<workflow>/<id>, GET /request/<workflow>/<id>/graph,
// GET /ui/ (the web UI), GET /api/workflows/... and GET /api/runners (its data),
// GET /metrics, GET /healthz, GET /.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jobx/jobx/internal/queue"
	"github.com/jobx/jobx/kvmodel"
)

// Response headers (JobX's names).
const (
	HeaderRequestID   = "X-MR-REQUEST-ID"
	HeaderFulfilledBy = "X-FULFILLED-BY"
	// HeaderExceptionType and HeaderExceptionMessage are on every answer
	// that reports an error (an error answer, a failed request's result or
	// status): the error's kind (JobX put an exception class name there)
	// and its message on one line, at most maxExceptionMessage bytes.
	HeaderExceptionType    = "X-MR-EXCEPTION-TYPE"
	HeaderExceptionMessage = "X-MR-EXCEPTION-MESSAGE"
)

// Gateway serves the HTTP API. It is safe for concurrent use.
type Gateway struct {
	opts    Options
	log     *slog.Logger
	store   *kvmodel.Store
	catalog *kvmodel.Catalog
	runners *kvmodel.Registry
	metrics *metrics
	pub     *queue.Publisher
	cleanup *deliveredCleanups
	waiters *waiters
	engine  *gin.Engine
	ln      net.Listener
	srv     *http.Server

	closeOnce sync.Once
	closeErr  error // Close's result
}

// New validates opts, loads the catalog, connects the publisher and binds
// the listen address (so Addr is known before Run). When it fails, it
// releases whatever it had started.
func New(ctx context.Context, opts *Options) (_ *Gateway, err error) {
	o := *opts
	if err := o.validate(); err != nil {
		return nil, err
	}
	g := &Gateway{opts: o, log: o.Log.With("component", "gateway"), store: kvmodel.NewStore(o.Etcd), metrics: newMetrics()}
	defer func() {
		if err != nil {
			g.Close()
		}
	}()
	if g.pub, err = queue.NewPublisherWith(queue.PublisherOptions{NSQDs: o.NSQDs, Lookupds: o.Lookupds, TLS: o.NSQTLS, Log: g.log}); err != nil {
		return nil, err
	}
	if g.catalog, err = kvmodel.NewCatalog(ctx, g.store, g.log); err != nil {
		return nil, err
	}
	if g.runners, err = kvmodel.NewRegistry(ctx, g.store, g.log); err != nil {
		return nil, err
	}
	if g.waiters, err = startWaiters(ctx, o.Etcd, g.log); err != nil {
		return nil, err
	}
	g.cleanup = newDeliveredCleanups(g.store, g.log)
	g.engine = g.routes()
	if o.Addr != "" {
		if g.ln, err = net.Listen("tcp", o.Addr); err != nil {
			return nil, fmt.Errorf("gateway: listen on %s: %w", o.Addr, err)
		}
	}
	return g, nil
}

// Addr returns the bound listen address.
func (g *Gateway) Addr() string {
	if g.ln == nil {
		return ""
	}
	return g.ln.Addr().String()
}

// Handler returns the HTTP handler (for httptest or embedding).
func (g *Gateway) Handler() http.Handler { return g.engine }

// Catalog returns the gateway's view of workflow definitions.
func (g *Gateway) Catalog() *kvmodel.Catalog { return g.catalog }

// Run serves until ctx is cancelled, then shuts down gracefully (blocking
// requests in flight get up to 10 s).
func (g *Gateway) Run(ctx context.Context) error {
	if g.ln == nil {
		return errors.New("gateway: no listen address")
	}
	g.srv = &http.Server{Handler: g.engine, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() {
		if g.opts.TLSCert != "" {
			errc <- g.srv.ServeTLS(g.ln, g.opts.TLSCert, g.opts.TLSKey)
			return
		}
		errc <- g.srv.Serve(g.ln)
	}()
	g.log.Info("gateway listening", "addr", g.Addr())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		g.srv.Shutdown(sctx)
		return nil
	}
}

// Close releases what New started. Call it once Run has returned (cancel
// Run's context first): Close does not wait for requests in flight. It
// shuts down in this order:
//
//  1. closes the listener, if Run has not already (no new connections);
//  2. stops the catalog's, the runner registry's and the blocking
//     requests' etcd watches (a wait still registered ends in an error);
//  3. stops the delivered-request cleanups, writing the ones still queued;
//  4. stops the NSQ publisher.
//
// It returns the first error, and is idempotent: later calls return the
// first call's result. The etcd client in Options is the caller's to close.
func (g *Gateway) Close() error {
	g.closeOnce.Do(func() {
		if g.ln != nil {
			if err := g.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
				g.closeErr = fmt.Errorf("gateway: close listener: %w", err)
			}
		}
		if g.catalog != nil {
			g.catalog.Close()
		}
		if g.runners != nil {
			g.runners.Close()
		}
		if g.waiters != nil {
			g.waiters.close()
		}
		if g.cleanup != nil {
			g.cleanup.close()
		}
		if g.pub != nil {
			g.pub.Close()
		}
	})
	return g.closeErr
}

func (g *Gateway) routes() *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.Use(gin.Recovery(), func(c *gin.Context) {
		c.Header(HeaderFulfilledBy, g.opts.Hostname)
		c.Next()
	}, func(c *gin.Context) {
		// Outside respondErrors, so errors are counted with their status.
		if c.FullPath() != "/job/:workflow/:job" {
			c.Next()
			return
		}
		start := time.Now()
		c.Next()
		g.metrics.observe(c, start)
	}, respondErrors)
	e.HandleMethodNotAllowed = true
	e.NoRoute(func(c *gin.Context) {
		c.Error(&apiError{http.StatusNotFound, "not_found", fmt.Sprintf(
			"no route for %s %s (names cannot contain '/'; the routes are POST /job/<workflow>/<job>, GET /request/<workflow>/<id>, /ui/, /healthz, /metrics)",
			c.Request.Method, c.Request.URL.EscapedPath())})
	})
	e.NoMethod(func(c *gin.Context) {
		c.Error(&apiError{http.StatusMethodNotAllowed, "method_not_allowed", fmt.Sprintf("%s is not allowed on %s", c.Request.Method, c.Request.URL.EscapedPath())})
	})
	e.GET("/", func(c *gin.Context) { c.String(http.StatusOK, "Map me. Reduce me.\n") })
	e.GET("/healthz", g.healthz)
	e.GET("/metrics", g.metricsHandler())
	e.POST("/job/:workflow/:job", g.requireToken, g.submit)
	e.GET("/request/:workflow/:id", g.requireToken, g.status)
	e.GET("/request/:workflow/:id/graph", g.requireToken, g.graph)
	e.GET("/ui", uiRedirect)
	e.GET("/ui/*filepath", g.uiHandler())
	e.GET("/api/workflows", g.apiWorkflows)
	e.GET("/api/runners", g.apiRunners)
	e.GET("/api/workflows/:workflow", g.requireToken, g.apiWorkflow)
	e.GET("/api/workflows/:workflow/handlers/:handler", g.requireToken, g.apiHandler)
	e.GET("/api/workflows/:workflow/requests", g.requireToken, g.apiRequests)
	return e
}

func (g *Gateway) healthz(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
	defer cancel()
	if _, err := g.store.Client().Get(ctx, "/jobx/health"); err != nil {
		c.JSON(http.StatusServiceUnavailable, gin.H{"status": "unavailable", "etcd": err.Error()})
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}
