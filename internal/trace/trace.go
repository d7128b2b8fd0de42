// Package trace reads a request's invocation graph from etcd (while the
// request is kept) and renders it: an indented tree, a dump with each
// invocation's data, Graphviz DOT, or JSON. It is what JobX's tracing
// scripts did (mr_get_invocation_flat_list, mr_get_invocation_graph,
// mr_draw_invocation_graph).
package trace

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jobx/jobx/kvmodel"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Node is one invocation. A map node lists the map invocations it branched
// to (Children) and the reduce invocation that reduced it (Reduce).
type Node struct {
	ID        string           `json:"invocation_id"`
	Kind      string           `json:"kind"` // map or reduce
	Step      string           `json:"step"`
	Handler   string           `json:"handler"`
	State     string           `json:"state"` // pending, running, done or failed (see stateOf)
	Created   string           `json:"created_timestamp,omitempty"`
	Finished  string           `json:"finished_timestamp,omitempty"`
	Datasets  Datasets         `json:"datasets"`
	Failure   *kvmodel.Failure `json:"failure,omitempty"`
	Log       string           `json:"log,omitempty"` // its handler's log tail (kept requests)
	Data      *Data            `json:"data,omitempty"`
	Children  []*Node          `json:"children,omitempty"`
	Reduce    *Node            `json:"reduce,omitempty"`
	branchOut bool
}

// Datasets says which of a map invocation's datasets exist.
type Datasets struct {
	Arguments   bool `json:"arguments"`
	PostCombine bool `json:"post_combine"`
	PostReduce  bool `json:"post_reduce"`
}

// Data holds a map invocation's datasets, decoded, for dumps.
type Data struct {
	Arguments   []json.RawMessage `json:"arguments,omitempty"`
	PostCombine []json.RawMessage `json:"post_combine,omitempty"`
	PostReduce  []json.RawMessage `json:"post_reduce,omitempty"`
}

// Graph is a request and its invocation tree.
type Graph struct {
	Request *kvmodel.Request `json:"request"`
	Root    *Node            `json:"root"`
	Counts  Counts           `json:"counts"`
}

// Counts summarise the graph's invocations.
type Counts struct {
	Invocations int `json:"invocations"`
	Done        int `json:"done"`
	Failed      int `json:"failed"`
	Pending     int `json:"pending"`
	Running     int `json:"running"`
}

// Load reads request id of workflow wf and its whole invocation graph;
// withData also reads every map invocation's datasets.
func Load(ctx context.Context, st *kvmodel.Store, wf, id string, withData bool) (*Graph, error) {
	req := &kvmodel.Request{WorkflowName: wf, ID: id}
	if err := st.Get(ctx, req); err != nil {
		return nil, fmt.Errorf("request %s of workflow %s (requests are kept until cleaned up; submit with keep=true to trace one): %w", id, wf, err)
	}
	steps := map[string]*kvmodel.Step{}
	l := &loader{ctx: ctx, st: st, wf: wf, steps: steps, data: withData}
	root, err := l.load(req.InvocationID)
	if err != nil {
		return nil, err
	}
	g := &Graph{Request: req, Root: root}
	g.Walk(func(n *Node, _ int) {
		g.Counts.Invocations++
		switch n.State {
		case kvmodel.StateDone:
			g.Counts.Done++
		case kvmodel.StateFailed:
			g.Counts.Failed++
		case StateRunning:
			g.Counts.Running++
		default:
			g.Counts.Pending++
		}
	})
	return g, nil
}

type loader struct {
	ctx   context.Context
	st    *kvmodel.Store
	wf    string
	steps map[string]*kvmodel.Step
	data  bool
}

func (l *loader) step(name string) *kvmodel.Step {
	if s, ok := l.steps[name]; ok {
		return s
	}
	s := &kvmodel.Step{WorkflowName: l.wf, Name: name}
	if l.st.Get(l.ctx, s) != nil {
		s = nil
	}
	l.steps[name] = s
	return s
}

// load reads the tree of map invocation root: each node with its reduce
// invocation and datasets, a branch's children in transactions of
// nodesPerTxn (a request of thousands of invocations is read in tens of
// transactions, not thousands).
func (l *loader) load(root string) (*Node, error) {
	level, err := l.read([]string{root})
	if err != nil {
		return nil, err
	}
	top := level[0]
	for len(level) > 0 {
		var next []*Node
		for _, n := range level {
			if !n.branchOut {
				continue
			}
			ids, err := l.st.Children(l.ctx, l.wf, n.ID)
			if err != nil {
				return nil, err
			}
			if n.Children, err = l.read(ids); err != nil {
				return nil, err
			}
			next = append(next, n.Children...)
		}
		level = next
	}
	return top, nil
}

// datasetTypes are the datasets read for each map invocation, in order.
var datasetTypes = []kvmodel.DatasetType{kvmodel.Arguments, kvmodel.PostCombine, kvmodel.PostReduce}

// opsPerNode is the reads per map invocation: it, its reduce invocation
// and its datasets.
var opsPerNode = 2 + len(datasetTypes)

// nodesPerTxn keeps a transaction within etcd's operation limit.
var nodesPerTxn = kvmodel.MaxTxnOps / opsPerNode

// read reads map invocations ids (without their children), in order.
func (l *loader) read(ids []string) ([]*Node, error) {
	out := make([]*Node, 0, len(ids))
	for start := 0; start < len(ids); start += nodesPerTxn {
		batch := ids[start:min(start+nodesPerTxn, len(ids))]
		ops := make([]clientv3.Op, 0, opsPerNode*len(batch))
		for _, m := range batch {
			ops = append(ops,
				clientv3.OpGet(kvmodel.Key(&kvmodel.Invocation{WorkflowName: l.wf, ID: m})),
				clientv3.OpGet(kvmodel.Key(&kvmodel.Invocation{WorkflowName: l.wf, ID: kvmodel.ReduceID(m)})))
			for _, typ := range datasetTypes {
				opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)}
				if !l.data {
					opts = append(opts, clientv3.WithCountOnly())
				}
				ops = append(ops, clientv3.OpGet(kvmodel.DatasetPrefix(l.wf, m, typ), opts...))
			}
		}
		resp, err := l.st.Client().Txn(l.ctx).Then(ops...).Commit()
		if err != nil {
			return nil, fmt.Errorf("read invocations %s...: %w", batch[0], err)
		}
		for i, m := range batch {
			n, err := l.nodeOf(m, resp.Responses[opsPerNode*i:opsPerNode*(i+1)])
			if err != nil {
				return nil, err
			}
			out = append(out, n)
		}
	}
	return out, nil
}

// nodeOf builds map invocation m's node from its reads (see read).
func (l *loader) nodeOf(m string, rs []*etcdserverpb.ResponseOp) (*Node, error) {
	inv, err := decode(rs[0].GetResponseRange())
	if err != nil || inv == nil {
		return nil, fmt.Errorf("invocation %s: %w", m, kvmodel.ErrNotFound)
	}
	n := l.node(inv, kvmodel.DirectionMap)
	ds := []*bool{&n.Datasets.Arguments, &n.Datasets.PostCombine, &n.Datasets.PostReduce}
	for i, typ := range datasetTypes {
		rr := rs[2+i].GetResponseRange()
		*ds[i] = rr.Count > 0
		if l.data && rr.Count > 0 {
			if n.Data == nil {
				n.Data = &Data{}
			}
			var raw []byte
			for _, kv := range rr.Kvs {
				raw = append(raw, kv.Value...)
			}
			items, err := decodeItems(typ, raw)
			if err != nil {
				return nil, fmt.Errorf("invocation %s %s: %w", m, typ, err)
			}
			switch typ {
			case kvmodel.Arguments:
				n.Data.Arguments = items
			case kvmodel.PostCombine:
				n.Data.PostCombine = items
			case kvmodel.PostReduce:
				n.Data.PostReduce = items
			}
		}
	}
	if red, _ := decode(rs[1].GetResponseRange()); red != nil {
		n.Reduce = l.node(red, kvmodel.DirectionReduce)
	}
	n.branchOut = inv.IsBranch()
	return n, nil
}

func (l *loader) node(inv *kvmodel.Invocation, kind string) *Node {
	n := &Node{ID: inv.ID, Kind: kind, Step: inv.StepName, Handler: inv.HandlerName, State: stateOf(inv),
		Created: inv.CreatedTimestamp, Finished: inv.FinishedTimestamp, Failure: inv.Failure, Log: inv.Log}
	if n.Handler == "" {
		if s := l.step(inv.StepName); s != nil {
			n.Handler = s.MapHandlerName
			if kind == kvmodel.DirectionReduce {
				n.Handler = s.ReduceHandlerName
			}
		}
	}
	return n
}

// StateRunning is the display state of an invocation a runner is working
// on. Runners do not record it yet; see stateOf.
const StateRunning = "running"

// stateOf is the one place where an invocation's display state is decided.
// Runners store pending, done or failed; an invocation being run is still
// pending in etcd. When runners record that they took an invocation (a
// stored state "running", or a claim key read here), map it to
// StateRunning in this function: counts, colours and pages follow.
func stateOf(inv *kvmodel.Invocation) string {
	if inv.State == "" {
		return kvmodel.StatePending
	}
	return inv.State
}

// RequestState is the request's state for display: pending until one of
// its invocations has finished, then running until the request is done or
// failed.
func (g *Graph) RequestState() string {
	s := g.Request.State
	if s == "" || s == kvmodel.StatePending {
		if g.Counts.Done+g.Counts.Failed+g.Counts.Running > 0 {
			return StateRunning
		}
		return kvmodel.StatePending
	}
	return s
}

func decode(rr interface {
	GetKvs() []*mvccKV
}) (*kvmodel.Invocation, error) {
	kvs := rr.GetKvs()
	if len(kvs) == 0 {
		return nil, nil
	}
	inv := &kvmodel.Invocation{}
	return inv, kvmodel.Decode(inv, string(kvs[0].Key), kvs[0].Value, kvs[0].ModRevision)
}

func decodeItems(typ kvmodel.DatasetType, raw []byte) ([]json.RawMessage, error) {
	var out []json.RawMessage
	if typ == kvmodel.PostCombine {
		groups, err := kvmodel.DecodeGroupItems(raw)
		for _, g := range groups {
			j, _ := g.MarshalJSON()
			out = append(out, j)
		}
		return out, err
	}
	return kvmodel.DecodePairArrays(raw)
}

// Walk visits every invocation depth-first, map invocations before their
// children and their reduce invocation after them; depth is the map depth.
func (g *Graph) Walk(fn func(n *Node, depth int)) {
	var walk func(n *Node, depth int)
	walk = func(n *Node, depth int) {
		fn(n, depth)
		for _, c := range n.Children {
			walk(c, depth+1)
		}
		if n.Reduce != nil {
			fn(n.Reduce, depth)
		}
	}
	walk(g.Root, 0)
}
