package runner

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/jobx/jobx/internal/queue"
	"github.com/prometheus/client_golang/prometheus"
)

// pollDepth samples, every interval, the depth of the runner's channel on
// each topic it consumes from the nsqd HTTP addresses in Options.NSQDHTTP,
// into jobx_queue_depth (messages waiting, summed over the nsqd).
func (r *Runner) pollDepth(ctx context.Context, interval time.Duration) {
	// A transport of its own, its idle connections closed on return: the
	// default one would keep a connection (and its goroutines) to each
	// nsqd after the runner stopped.
	client := &http.Client{Timeout: 5 * time.Second, Transport: http.DefaultTransport.(*http.Transport).Clone()}
	defer client.CloseIdleConnections()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		depth := map[string]float64{}
		for _, addr := range r.opts.NSQDHTTP {
			st, err := queue.FetchStats(ctx, client, addr)
			if err != nil {
				r.log.Debug("nsqd stats", "addr", addr, "err", err)
				continue
			}
			for _, tp := range st.Topics {
				if !strings.HasPrefix(tp.Name, "mr.") {
					continue
				}
				depth[tp.Name] += float64(tp.Depth) // not yet given to a channel
				for _, ch := range tp.Channels {
					if ch.Name == r.opts.Channel {
						depth[tp.Name] += float64(ch.Depth)
					}
				}
			}
		}
		r.mu.Lock()
		for topic := range r.consumers {
			r.metrics.depth.With(prometheus.Labels{"topic": topic}).Set(depth[topic])
		}
		r.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
