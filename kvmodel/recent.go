package kvmodel

import (
	"context"
	"encoding/json"
	"fmt"
	"math"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// The request history: a request's summary outlives its cleanup, so that
// "recent requests" lists a blocking request cleaned up at delivery too.
// Keys are /jobx/recent/<wf>/<newest-first created ms, 16 digits>/<id>; the
// cleanup that removes a request writes its summary in the same commit,
// then trims the workflow's history to MaxRecent entries. A summary holds
// no arguments or results.
const RecentRoot = JobxRoot + "recent/"

// MaxRecent is how many summaries of removed requests each workflow keeps.
const MaxRecent = 100

// RecentRequest is the summary of a request that the cleanup removed.
type RecentRequest struct {
	ID               string      `json:"request_id"`
	JobName          string      `json:"job_name"`
	State            string      `json:"state"`
	CreatedTimestamp string      `json:"created_timestamp"`
	DoneTimestamp    string      `json:"done_timestamp,omitempty"`
	ErrorKind        FailureKind `json:"error_kind,omitempty"`
	IsBlocking       bool        `json:"is_blocking"`
}

// RecentPrefix is the key prefix of workflow wf's history.
func RecentPrefix(wf string) string { return RecentRoot + wf + "/" }

// recentOp writes req's summary.
func recentOp(req *Request) (Op, error) {
	ms := int64(0)
	if t, err := ParseTimestamp(req.CreatedTimestamp); err == nil {
		ms = t.UnixMilli()
	}
	sum := RecentRequest{ID: req.ID, JobName: req.JobName, State: req.State, CreatedTimestamp: req.CreatedTimestamp,
		DoneTimestamp: req.DoneTimestamp, IsBlocking: req.IsBlocking}
	if req.Error != nil {
		sum.ErrorKind = req.Error.Kind
	}
	v, err := json.Marshal(sum)
	if err != nil {
		return Op{}, err
	}
	// Newest first in key order: one ascending range read lists them.
	key := fmt.Sprintf("%s%016d/%s", RecentPrefix(req.WorkflowName), int64(math.MaxInt64/1000)-ms, req.ID)
	return Op{Key: key, Value: v}, nil
}

// RecentRequests returns up to limit summaries of workflow wf's removed
// requests, newest first.
func (s *Store) RecentRequests(ctx context.Context, wf string, limit int64) ([]RecentRequest, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, RecentPrefix(wf), clientv3.WithPrefix(), clientv3.WithLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("read the request history of %s: %w", wf, err)
	}
	out := make([]RecentRequest, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var r RecentRequest
		if json.Unmarshal(kv.Value, &r) == nil {
			out = append(out, r)
		}
	}
	return out, nil
}

// TrimHistory deletes workflow wf's summaries past the newest MaxRecent.
func (s *Store) TrimHistory(ctx context.Context, wf string) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	prefix := RecentPrefix(wf)
	resp, err := s.cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithLimit(MaxRecent+1))
	if err != nil || len(resp.Kvs) <= MaxRecent {
		return err
	}
	_, err = s.cli.Delete(ctx, string(resp.Kvs[MaxRecent].Key), clientv3.WithRange(clientv3.GetPrefixRangeEnd(prefix)))
	return err
}
