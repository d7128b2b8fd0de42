package kvmodel

import (
	"context"
	"encoding/json"
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// idsPerChunk bounds a mapped-children chunk to about 400 KiB.
const idsPerChunk = 10000

// RelationshipsPrefix is the prefix of all of invocation inv's relationships.
func RelationshipsPrefix(workflow, inv string) string {
	return TreeRoot + "relationships/" + workflow + "/" + inv + "/"
}

// mappedPrefix is the prefix of the chunks that list parent's children.
func mappedPrefix(workflow, parent string) string {
	return RelationshipsPrefix(workflow, parent) + "mapped/"
}

// MappedOps returns the ops that record parent's children, in order, as
// chunks of a JSON id array.
func MappedOps(workflow, parent string, children []string) []Op {
	prefix := mappedPrefix(workflow, parent)
	var ops []Op
	i := 0
	for ; i*idsPerChunk < len(children); i++ {
		v, _ := json.Marshal(children[i*idsPerChunk : min((i+1)*idsPerChunk, len(children))])
		ops = append(ops, Op{Key: fmt.Sprintf("%s%08d", prefix, i), Value: v})
	}
	return append(ops, Op{Key: fmt.Sprintf("%s%08d", prefix, i), End: clientv3.GetPrefixRangeEnd(prefix), Delete: true})
}

// Children returns parent's mapped children in the order they were mapped.
func (s *Store) Children(ctx context.Context, workflow, parent string) ([]string, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, mappedPrefix(workflow, parent), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("children of invocation %s: %w", parent, err)
	}
	return decodeChildren(parent, resp.Kvs)
}

// decodeChildren is parent's children from kvs, its chunks under
// mappedPrefix as read, in key order.
func decodeChildren(parent string, kvs []*mvccpb.KeyValue) ([]string, error) {
	var out []string
	for _, kv := range kvs {
		var ids []string
		if err := json.Unmarshal(kv.Value, &ids); err != nil {
			return nil, fmt.Errorf("children of invocation %s: %s: %w", parent, kv.Key, err)
		}
		out = append(out, ids...)
	}
	return out, nil
}

// ReducedOp records that map invocation m was reduced by reduce invocation r.
func ReducedOp(workflow, m, r string) Op {
	return Op{Key: RelationshipsPrefix(workflow, m) + "reduced/" + m, Value: []byte(`{"ri":"` + r + `"}`)}
}

// SessionPrefix is the prefix of map invocation m's session.
func SessionPrefix(workflow, m string) string {
	return TreeRoot + "sessions/" + workflow + "/" + m + "/"
}
