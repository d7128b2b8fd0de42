package queue

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

// Stats is the part of nsqd's GET /stats?format=json that jobx reads.
type Stats struct {
	StartTime int64 `json:"start_time"` // unix seconds
	Topics    []struct {
		Name         string `json:"topic_name"`
		Depth        int64  `json:"depth"`
		MessageCount uint64 `json:"message_count"` // since nsqd started
		Channels     []struct {
			Name         string `json:"channel_name"`
			Depth        int64  `json:"depth"`
			InFlight     int64  `json:"in_flight_count"`
			Deferred     int64  `json:"deferred_count"`
			MessageCount uint64 `json:"message_count"` // given to the channel since nsqd started
		} `json:"channels"`
	} `json:"topics"`
}

// FetchStats reads the stats of the nsqd whose HTTP address is addr,
// without its clients.
func FetchStats(ctx context.Context, client *http.Client, addr string) (*Stats, error) {
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
	st := &Stats{}
	return st, json.NewDecoder(resp.Body).Decode(st)
}
