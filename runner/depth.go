package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// nsqdStats is the part of nsqd's GET /stats?format=json a runner reads.
type nsqdStats struct {
	StartTime int64 `json:"start_time"` // unix seconds
	Topics    []struct {
		Name         string `json:"topic_name"`
		Depth        int64  `json:"depth"`
		MessageCount uint64 `json:"message_count"` // since nsqd started
		Channels     []struct {
			Name     string `json:"channel_name"`
			Depth    int64  `json:"depth"`
			InFlight int64  `json:"in_flight_count"`
			Deferred int64  `json:"deferred_count"`
		} `json:"channels"`
	} `json:"topics"`
}

// pollDepth samples, every interval, the depth of the runner's channel on
// each topic it consumes from the nsqd HTTP addresses in Options.NSQDHTTP,
// into jobx_queue_depth (messages waiting, summed over the nsqd).
func (r *Runner) pollDepth(ctx context.Context, interval time.Duration) {
	client := &http.Client{Timeout: 5 * time.Second}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		depth := map[string]float64{}
		for _, addr := range r.opts.NSQDHTTP {
			st, err := fetchStats(ctx, client, addr)
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

func fetchStats(ctx context.Context, client *http.Client, addr string) (*nsqdStats, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/stats?format=json&include_clients=false", nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /stats: %s", resp.Status)
	}
	st := &nsqdStats{}
	return st, json.NewDecoder(resp.Body).Decode(st)
}
