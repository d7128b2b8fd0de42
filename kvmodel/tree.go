package kvmodel

import (
	"context"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Node is one map invocation of a request's tree, read with what decides
// its progress: its reduce invocation (nil until one is due) and whether
// its parent has counted it (meaningless for the root).
type Node struct {
	Map     *Invocation
	Reduce  *Invocation
	Counted bool
	// Children are the map invocations it branched to, in order.
	Children []string
}

// WalkTree visits every map invocation of the tree rooted at root, level
// by level, batching the reads of each level into transactions. Nodes whose
// map invocation is missing (a cleaned-up request) are skipped. visit
// returning an error stops the walk.
func (s *Store) WalkTree(ctx context.Context, wf, root string, visit func(Node) error) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	const perNode = 3
	level := []string{root}
	for len(level) > 0 {
		var next []string
		for start := 0; start < len(level); start += MaxTxnOps / perNode {
			batch := level[start:min(start+MaxTxnOps/perNode, len(level))]
			ops := make([]clientv3.Op, 0, perNode*len(batch))
			for _, id := range batch {
				ops = append(ops,
					clientv3.OpGet(Key(&Invocation{WorkflowName: wf, ID: id})),
					clientv3.OpGet(Key(&Invocation{WorkflowName: wf, ID: ReduceID(id)})),
					clientv3.OpGet(CountedKey(wf, id), clientv3.WithCountOnly()))
			}
			resp, err := s.cli.Txn(ctx).Then(ops...).Commit()
			if err != nil {
				return fmt.Errorf("walk the invocations of %s: %w", root, err)
			}
			for i := range batch {
				r := resp.Responses[perNode*i : perNode*i+perNode]
				m, err := decodeInvocation(r[0])
				if err != nil {
					return err
				}
				if m == nil {
					continue
				}
				red, err := decodeInvocation(r[1])
				if err != nil {
					return err
				}
				n := Node{Map: m, Reduce: red, Counted: r[2].GetResponseRange().Count > 0}
				if m.IsBranch() && *m.MappedCount > 0 {
					if n.Children, err = s.Children(ctx, wf, m.ID); err != nil {
						return err
					}
					next = append(next, n.Children...)
				}
				if err := visit(n); err != nil {
					return err
				}
			}
		}
		level = next
	}
	return nil
}

// CountedKey marks that child was counted in its parent's mapped_waiting.
func CountedKey(wf, child string) string {
	return RelationshipsPrefix(wf, child) + "counted"
}

func decodeInvocation(r *pb.ResponseOp) (*Invocation, error) {
	kvs := r.GetResponseRange().Kvs
	if len(kvs) == 0 {
		return nil, nil
	}
	inv := &Invocation{}
	if err := Decode(inv, string(kvs[0].Key), kvs[0].Value, kvs[0].ModRevision); err != nil {
		return nil, err
	}
	return inv, nil
}
