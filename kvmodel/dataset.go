package kvmodel

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// DatasetType names one of an invocation's datasets.
type DatasetType string

// JobX's dataset types.
const (
	Arguments   DatasetType = "arguments"
	PostCombine DatasetType = "post_combine"
	PostReduce  DatasetType = "post_reduce"
)

// ChunkSize is the largest dataset chunk value, in bytes.
const ChunkSize = 512 << 10

// DatasetPrefix is the key prefix of one dataset's chunks.
func DatasetPrefix(workflow, invocation string, typ DatasetType) string {
	return QueueRoot + "dataset/" + workflow + "/" + invocation + "/" + string(typ) + "/"
}

// DatasetOps returns the ops that replace a dataset with data: one put per
// ChunkSize bytes, then a delete of any chunks beyond them left by an
// earlier, longer write. An empty data still writes one empty chunk, so an
// empty dataset exists.
func DatasetOps(workflow, invocation string, typ DatasetType, data []byte) []Op {
	return chunkOps(DatasetPrefix(workflow, invocation, typ), data, ChunkSize)
}

// chunkOps writes data as numbered chunks under prefix and deletes higher
// numbered leftovers (a range that no put of the same batch falls in).
func chunkOps(prefix string, data []byte, size int) []Op {
	var ops []Op
	i := 0
	for ; i == 0 || len(data) > 0; i++ {
		n := min(len(data), size)
		ops = append(ops, Op{Key: fmt.Sprintf("%s%08d", prefix, i), Value: data[:n]})
		data = data[n:]
	}
	return append(ops, Op{Key: fmt.Sprintf("%s%08d", prefix, i), End: clientv3.GetPrefixRangeEnd(prefix), Delete: true})
}

// ReadDataset returns a dataset's bytes; ErrNotFound if it was never written.
func (s *Store) ReadDataset(ctx context.Context, workflow, invocation string, typ DatasetType) ([]byte, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, DatasetPrefix(workflow, invocation, typ), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("read %s of invocation %s: %w", typ, invocation, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("%s of invocation %s: %w", typ, invocation, ErrNotFound)
	}
	return joinChunks(resp.Kvs), nil
}

func joinChunks[KV interface{ GetValue() []byte }](kvs []KV) []byte {
	n := 0
	for _, kv := range kvs {
		n += len(kv.GetValue())
	}
	out := make([]byte, 0, n)
	for _, kv := range kvs {
		out = append(out, kv.GetValue()...)
	}
	return out
}

// ReadDatasets reads one dataset type of many invocations, batching the
// reads into transactions. Missing datasets are absent from the map.
func (s *Store) ReadDatasets(ctx context.Context, workflow string, invocations []string, typ DatasetType) (map[string][]byte, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	out := make(map[string][]byte, len(invocations))
	for start := 0; start < len(invocations); start += MaxTxnOps {
		batch := invocations[start:min(start+MaxTxnOps, len(invocations))]
		ops := make([]clientv3.Op, len(batch))
		for i, inv := range batch {
			ops[i] = clientv3.OpGet(DatasetPrefix(workflow, inv, typ), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
		}
		resp, err := s.cli.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return nil, fmt.Errorf("read %s of %d invocations: %w", typ, len(batch), err)
		}
		for i, r := range resp.Responses {
			if kvs := r.GetResponseRange().Kvs; len(kvs) > 0 {
				out[batch[i]] = joinChunks(kvs)
			}
		}
	}
	return out, nil
}

// Pair is one key/value pair, both raw JSON.
type Pair struct {
	Key   json.RawMessage
	Value json.RawMessage
}

// MarshalJSON encodes a pair as [key, value].
func (p Pair) MarshalJSON() ([]byte, error) {
	return []byte("[" + string(p.Key) + "," + string(p.Value) + "]"), nil
}

// ParsePair decodes a JSON [key, value] array. The key and value are kept
// compact; they do not share memory with line.
func ParsePair(line []byte) (Pair, error) {
	if k, v, ok := splitCompactPair(line); ok {
		// One copy for both: a pair per output line of every handler.
		c := bytes.Clone(line)
		return Pair{Key: c[k[0]:k[1]:k[1]], Value: c[v[0]:v[1]:v[1]]}, nil
	}
	return parsePairJSON(line)
}

// parsePairJSON is ParsePair by encoding/json, for any line.
func parsePairJSON(line []byte) (Pair, error) {
	var a []json.RawMessage
	if err := json.Unmarshal(line, &a); err != nil {
		return Pair{}, fmt.Errorf("not a JSON [key, value] pair: %w", err)
	}
	if len(a) != 2 {
		return Pair{}, fmt.Errorf("want a [key, value] pair, got an array of %d", len(a))
	}
	return Pair{Key: compact(a[0]), Value: compact(a[1])}, nil
}

// splitCompactPair finds the key and the value of line when it is a valid
// JSON array of two elements without whitespace outside strings, which is
// what the runtimes write: once json.Valid has checked the line, a scan
// that follows only strings and nesting finds the top-level comma. Any
// other line (spaced, invalid, another length) is left to encoding/json.
func splitCompactPair(line []byte) (key, value [2]int, ok bool) {
	n := len(line)
	if n < 5 || line[0] != '[' || line[n-1] != ']' || !json.Valid(line) {
		return key, value, false
	}
	comma, depth, inString := -1, 0, false
	for i := 1; i < n-1; i++ {
		c := line[i]
		if inString {
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '[', '{':
			depth++
		case ']', '}':
			depth--
		case ',':
			if depth == 0 {
				if comma >= 0 {
					return key, value, false // more than two elements
				}
				comma = i
			}
		case ' ', '\t', '\n', '\r':
			return key, value, false // not compact
		}
	}
	if comma < 0 {
		return key, value, false
	}
	return [2]int{1, comma}, [2]int{comma + 1, n - 1}, true
}

// Group is one key with its values, as a combiner or reducer reads it.
type Group struct {
	Key    json.RawMessage
	Values []json.RawMessage
}

// MarshalJSON encodes a group as [key, [values...]].
func (g Group) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('[')
	b.Write(g.Key)
	b.WriteString(",[")
	for i, v := range g.Values {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(v)
	}
	b.WriteString("]]")
	return b.Bytes(), nil
}

// ParseGroup decodes a JSON [key, [values...]] array.
func ParseGroup(line []byte) (Group, error) {
	var a []json.RawMessage
	if err := json.Unmarshal(line, &a); err != nil {
		return Group{}, fmt.Errorf("not a JSON [key, [values...]] group: %w", err)
	}
	if len(a) != 2 {
		return Group{}, fmt.Errorf("want a [key, [values...]] group, got an array of %d", len(a))
	}
	var vs []json.RawMessage
	if err := json.Unmarshal(a[1], &vs); err != nil || vs == nil {
		return Group{}, fmt.Errorf("want a [key, [values...]] group: the second element is not an array")
	}
	for i := range vs {
		vs[i] = compact(vs[i])
	}
	return Group{Key: compact(a[0]), Values: vs}, nil
}

func compact(raw json.RawMessage) json.RawMessage {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return raw
	}
	return b.Bytes()
}

// AppendPairItem appends the dataset item {"p":[k,v]} and a newline.
func AppendPairItem(buf []byte, p Pair) []byte {
	buf = append(buf, `{"p":[`...)
	buf = append(buf, p.Key...)
	buf = append(buf, ',')
	buf = append(buf, p.Value...)
	return append(buf, "]}\n"...)
}

// MaxInlineResult bounds the result a done request carries itself
// (Request.Result), in bytes of its dataset.
const MaxInlineResult = 4 << 10

// inlineResult is the pairs of dataset data as a JSON array of [key,
// value], or nil when data is larger than MaxInlineResult or not a pair
// dataset.
func inlineResult(data []byte) json.RawMessage {
	if len(data) > MaxInlineResult {
		return nil
	}
	items, err := DecodePairArrays(data)
	if err != nil {
		return nil
	}
	buf := make([]byte, 0, len(data)+2)
	buf = append(buf, '[')
	for i, j := range items {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, j...)
	}
	return append(buf, ']')
}

// AppendGroupItem appends the dataset item {"k":k,"vl":[v...]} and a newline.
func AppendGroupItem(buf []byte, g Group) []byte {
	buf = append(buf, `{"k":`...)
	buf = append(buf, g.Key...)
	buf = append(buf, `,"vl":[`...)
	for i, v := range g.Values {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, v...)
	}
	return append(buf, "]}\n"...)
}

// DecodePairArrays parses a dataset of {"p":[k,v]} items into their [k,v]
// arrays, as a request's result gives its pairs. On error it returns the
// items before the bad one.
func DecodePairArrays(data []byte) ([]json.RawMessage, error) {
	pairs, err := DecodePairItems(data)
	items := make([]json.RawMessage, len(pairs))
	for i, p := range pairs {
		items[i], _ = p.MarshalJSON()
	}
	return items, err
}

// DecodePairItems parses a dataset of {"p":[k,v]} items.
func DecodePairItems(data []byte) ([]Pair, error) {
	var out []Pair
	err := eachLine(data, func(line []byte) error {
		if p, ok := bytes.CutPrefix(line, []byte(`{"p":`)); ok && bytes.HasSuffix(p, []byte("}")) {
			// As AppendPairItem writes it.
			if pair, err := ParsePair(p[:len(p)-1]); err == nil {
				out = append(out, pair)
				return nil
			}
		}
		var item struct {
			P json.RawMessage `json:"p"`
		}
		if err := json.Unmarshal(line, &item); err != nil {
			return err
		}
		p, err := ParsePair(item.P)
		if err != nil {
			return err
		}
		out = append(out, p)
		return nil
	})
	return out, err
}

// DecodeGroupItems parses a dataset of {"k":k,"vl":[...]} items.
func DecodeGroupItems(data []byte) ([]Group, error) {
	var out []Group
	err := eachLine(data, func(line []byte) error {
		var item struct {
			K  json.RawMessage   `json:"k"`
			VL []json.RawMessage `json:"vl"`
		}
		if err := json.Unmarshal(line, &item); err != nil {
			return err
		}
		out = append(out, Group{Key: item.K, Values: item.VL})
		return nil
	})
	return out, err
}

func eachLine(data []byte, fn func([]byte) error) error {
	for n := 1; len(data) > 0; n++ {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if err := fn(line); err != nil {
			return fmt.Errorf("dataset item %d: %w", n, err)
		}
	}
	return nil
}

// GroupByKey groups pairs by key (JobX's default combiner), keys in order
// of first appearance, values in pair order.
func GroupByKey(pairs []Pair) []Group {
	index := make(map[string]int)
	var out []Group
	for _, p := range pairs {
		i, ok := index[string(p.Key)]
		if !ok {
			i = len(out)
			index[string(p.Key)] = i
			out = append(out, Group{Key: p.Key})
		}
		out[i].Values = append(out[i].Values, p.Value)
	}
	return out
}
