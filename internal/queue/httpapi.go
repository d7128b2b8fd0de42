package queue

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
)

// The HTTP APIs of nsqd and nsqlookupd, as far as jobx reads them.

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
	st := &Stats{}
	if err := getJSON(ctx, client, addr, "/stats", "?format=json&include_clients=false", "", st); err != nil {
		return nil, err
	}
	return st, nil
}

// Node is an nsqd that nsqlookupd lists: its TCP and HTTP addresses, ""
// when it announced no such port.
type Node struct{ TCP, HTTP string }

// LookupNodes returns the nsqd that the nsqlookupd whose HTTP address is
// lookupd lists (GET /nodes).
func LookupNodes(ctx context.Context, client *http.Client, lookupd string) ([]Node, error) {
	var n struct {
		Producers []struct {
			BroadcastAddress string `json:"broadcast_address"`
			TCPPort          int    `json:"tcp_port"`
			HTTPPort         int    `json:"http_port"`
		} `json:"producers"`
	}
	if err := getJSON(ctx, client, lookupd, "/nodes", "", "application/vnd.nsq; version=1.0", &n); err != nil {
		return nil, err
	}
	var out []Node
	for _, p := range n.Producers {
		if p.BroadcastAddress == "" {
			continue
		}
		var nd Node
		if p.TCPPort > 0 {
			nd.TCP = net.JoinHostPort(p.BroadcastAddress, strconv.Itoa(p.TCPPort))
		}
		if p.HTTPPort > 0 {
			nd.HTTP = net.JoinHostPort(p.BroadcastAddress, strconv.Itoa(p.HTTPPort))
		}
		out = append(out, nd)
	}
	return out, nil
}

// getJSON decodes into v the JSON that GET path (with query) answers on
// the HTTP address addr, sending accept as Accept unless it is "".
func getJSON(ctx context.Context, client *http.Client, addr, path, query, accept string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path+query, nil)
	if err != nil {
		return err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return nil
}
