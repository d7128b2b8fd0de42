package runner

import (
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

type mvccKV = mvccpb.KeyValue

func kvsOf(r *etcdserverpb.ResponseOp) []*mvccKV {
	if rr := r.GetResponseRange(); rr != nil {
		return rr.Kvs
	}
	return nil
}

func joinValues(kvs []*mvccKV) []byte {
	var out []byte
	for _, kv := range kvs {
		out = append(out, kv.Value...)
	}
	return out
}
