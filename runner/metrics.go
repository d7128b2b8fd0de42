package runner

import (
	"net/http"
	"time"

	"github.com/jobx/jobx/kvmodel"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are a runner's Prometheus metrics, on a registry of its own (so
// several runners may share a process, as in tests and jobx up).
type metrics struct {
	reg         *prometheus.Registry
	invocations *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	starts      *prometheus.CounterVec
	inFlight    prometheus.GaugeFunc
	depth       *prometheus.GaugeVec
	consumers   prometheus.GaugeFunc
	recovered   prometheus.Counter
}

func newMetrics(r *Runner) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	labels := prometheus.Labels{"runner": r.opts.ID}
	m.invocations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "jobx_invocations_total", Help: "Invocations run, by workflow, step, handler, direction and outcome (done, failed kind).",
		ConstLabels: labels,
	}, []string{"workflow", "step", "handler", "direction", "outcome"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "jobx_invocation_duration_seconds", Help: "Handler run time (sandbox start to exit), by workflow, step and handler.",
		ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(0.0005, 2, 20),
	}, []string{"workflow", "step", "handler"})
	m.starts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "jobx_sandbox_starts_total", Help: "Handler runs by sandbox kind and start (warm: forked from a warm interpreter or sandbox; cold: a new one).",
		ConstLabels: labels,
	}, []string{"sandbox", "start"})
	m.inFlight = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "jobx_runner_in_flight", Help: "Invocations being processed.", ConstLabels: labels,
	}, func() float64 { return float64(r.inFlight.Load()) })
	m.consumers = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "jobx_runner_topics", Help: "NSQ topics consumed.", ConstLabels: labels,
	}, func() float64 {
		r.mu.Lock()
		defer r.mu.Unlock()
		return float64(len(r.consumers))
	})
	m.depth = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "jobx_queue_depth", Help: "Messages waiting on each consumed topic for the runner's channel, summed over the nsqd in --nsqd-http.",
		ConstLabels: labels,
	}, []string{"topic"})
	m.recovered = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "jobx_recovered_messages_total", Help: "Messages published again for requests whose work stopped moving (lost queue messages).",
		ConstLabels: labels,
	})
	kind := r.sandbox.Kind()
	isolated := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "jobx_runner_sandbox_isolated", Help: "1 when the runner's sandbox isolates handlers (namespace, containerd), 0 when they run unisolated (--sandbox none).",
		ConstLabels: prometheus.Labels{"runner": r.opts.ID, "sandbox": kind},
	})
	if kvmodel.SandboxIsolates(kind) {
		isolated.Set(1)
	}
	m.reg.MustRegister(m.depth, m.recovered, isolated)
	if ps, ok := r.sandbox.(poolStats); ok {
		for _, g := range []struct {
			name, help string
			value      func() float64
		}{
			{"jobx_runner_sandboxes_live", "Warm or busy sandboxes of the runner's pool.", func() float64 { n, _, _ := ps.Stats(); return float64(n) }},
			{"jobx_runner_sandboxes_idle", "Idle warm sandboxes of the runner's pool.", func() float64 { _, _, n := ps.Stats(); return float64(n) }},
			{"jobx_runner_sandbox_memory_bytes", "Sum of the live sandboxes' memory limits.", func() float64 { _, b, _ := ps.Stats(); return float64(b) }},
		} {
			m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: g.name, Help: g.help, ConstLabels: labels}, g.value))
		}
	}
	m.reg.MustRegister(m.invocations, m.duration, m.starts, m.inFlight, m.consumers,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// poolStats is implemented by sandboxes that keep a pool (containerd).
type poolStats interface {
	Stats() (live int, memory int64, idle int)
}

// observe records one handler run.
func (m *metrics) observe(wf, step, handler, sandbox string, warm bool, d time.Duration) {
	m.duration.WithLabelValues(wf, step, handler).Observe(d.Seconds())
	start := "cold"
	if warm {
		start = "warm"
	}
	m.starts.WithLabelValues(sandbox, start).Inc()
}

// Metrics returns the runner's Prometheus handler (GET /metrics).
func (r *Runner) Metrics() http.Handler {
	return promhttp.HandlerFor(r.metrics.reg, promhttp.HandlerOpts{})
}
