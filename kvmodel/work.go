package kvmodel

import (
	"context"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Work is what one queue message names, read at one revision: the
// invocation, its request, and the data the invocation consumes.
type Work struct {
	Request    *Request    // nil when the request no longer exists
	Invocation *Invocation // nil when the invocation does not exist
	// Data is a map invocation's arguments, or the post_combine dataset of
	// the map invocation a reduce invocation reduces.
	Data []byte
	// Map is, for a reduce invocation, the map invocation it reduces; nil
	// otherwise or when it does not exist.
	Map *Invocation
}

// ReadWork reads invocation inv of request req in workflow wf in one etcd
// transaction, with what it consumes: a map invocation's arguments
// (reduces is ""), or else the post_combine dataset and the entity of map
// invocation reduces.
func (s *Store) ReadWork(ctx context.Context, wf, req, inv, reduces string) (*Work, error) {
	w := &Work{Request: &Request{WorkflowName: wf, ID: req}, Invocation: &Invocation{WorkflowName: wf, ID: inv}}
	ops := []clientv3.Op{clientv3.OpGet(Key(w.Invocation)), clientv3.OpGet(Key(w.Request))}
	sorted := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)}
	if reduces == "" {
		ops = append(ops, clientv3.OpGet(DatasetPrefix(wf, inv, Arguments), sorted...))
	} else {
		w.Map = &Invocation{WorkflowName: wf, ID: reduces}
		ops = append(ops, clientv3.OpGet(DatasetPrefix(wf, reduces, PostCombine), sorted...), clientv3.OpGet(Key(w.Map)))
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	resp, err := s.cli.Txn(rctx).Then(ops...).Commit()
	cancel()
	if err != nil {
		return nil, fmt.Errorf("read invocation %s: %w", inv, err)
	}
	kvs := func(i int) []*mvccpb.KeyValue { return resp.Responses[i].GetResponseRange().GetKvs() }
	decode := func(e Entity, kvs []*mvccpb.KeyValue) (bool, error) {
		if len(kvs) == 0 {
			return false, nil
		}
		return true, Decode(e, string(kvs[0].Key), kvs[0].Value, kvs[0].ModRevision)
	}
	if ok, err := decode(w.Invocation, kvs(0)); err != nil {
		return nil, err
	} else if !ok {
		w.Invocation = nil
	}
	if ok, err := decode(w.Request, kvs(1)); err != nil {
		return nil, err
	} else if !ok {
		w.Request = nil
	}
	if data := kvs(2); len(data) > 0 {
		w.Data = joinChunks(data)
	}
	if w.Map != nil {
		if ok, err := decode(w.Map, kvs(3)); err != nil {
			return nil, err
		} else if !ok {
			w.Map = nil
		}
	}
	return w, nil
}
