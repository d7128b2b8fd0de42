package gateway

import (
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the gateway's Prometheus metrics, on a registry of its own.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "jobx_requests_total", Help: "Job requests answered, by workflow, job and outcome (done, failed, accepted, timeout, rejected).",
	}, []string{"workflow", "job", "outcome"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "jobx_request_duration_seconds", Help: "Time from receiving a blocking request to answering it, by workflow and job.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 20),
	}, []string{"workflow", "job"})
	m.reg.MustRegister(m.requests, m.duration, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// observe records a POST /job answer after it is written.
func (m *metrics) observe(c *gin.Context, start time.Time) {
	wf, job := c.Param("workflow"), c.Param("job")
	outcome := "rejected"
	switch status := c.Writer.Status(); {
	case status == 200:
		outcome = "done"
	case status == 202:
		outcome = "accepted"
	case status == 504:
		outcome = "timeout"
	case status == 500 && c.GetBool("job_failed"):
		outcome = "failed"
	}
	if outcome == "rejected" {
		// Unknown names must not grow the label space.
		wf, job = "", ""
	}
	m.requests.WithLabelValues(wf, job, outcome).Inc()
	if outcome == "done" || outcome == "failed" {
		m.duration.WithLabelValues(wf, job).Observe(time.Since(start).Seconds())
	}
}

func (g *Gateway) metricsHandler() gin.HandlerFunc {
	h := promhttp.HandlerFor(g.metrics.reg, promhttp.HandlerOpts{})
	return func(c *gin.Context) { h.ServeHTTP(c.Writer, c.Request) }
}
