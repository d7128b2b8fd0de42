package kvmodel

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Limits every etcd request respects: etcd's defaults are 1.5 MiB a request
// and 128 operations a transaction.
const (
	MaxTxnOps   = 128
	MaxTxnBytes = 1 << 20
)

// Store reads and writes jobx's model in etcd. It is safe for concurrent use.
type Store struct {
	cli     *clientv3.Client
	timeout time.Duration
}

// NewStore returns a Store over cli. Every call is bounded by the caller's
// context and, when it has no deadline, by a 10 s default.
func NewStore(cli *clientv3.Client) *Store {
	return &Store{cli: cli, timeout: 10 * time.Second}
}

// Client returns the underlying etcd client.
func (s *Store) Client() *clientv3.Client { return s.cli }

func (s *Store) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, s.timeout)
}

func describe(e Entity) string {
	return e.Class() + " " + strings.Join(e.Identity(), "/")
}

func validateIdentity(e Entity) error {
	id := e.Identity()
	if len(id) > 1 {
		if err := ValidateTopicName("workflow name", id[0]); err != nil {
			return err
		}
	}
	return e.validate()
}

// Encode returns the JSON value stored for e.
func Encode(e Entity) ([]byte, error) { return json.Marshal(e) }

// PutOp returns an Op that writes e (no validation, no precondition); used
// inside larger transactions.
func PutOp(e Entity) Op {
	v, err := Encode(e)
	if err != nil {
		panic(fmt.Sprintf("kvmodel: encoding %s: %v", describe(e), err))
	}
	return Op{Key: Key(e), Value: v}
}

// Create writes e only if its key does not exist (JobX's create-only save);
// ErrExists otherwise.
func (s *Store) Create(ctx context.Context, e Entity) error {
	return s.put(ctx, e, "create", clientv3.Compare(clientv3.CreateRevision(Key(e)), "=", 0), ErrExists)
}

// Update writes e only if its key exists (JobX's update-only save);
// ErrNotFound otherwise.
func (s *Store) Update(ctx context.Context, e Entity) error {
	return s.put(ctx, e, "update", clientv3.Compare(clientv3.CreateRevision(Key(e)), ">", 0), ErrNotFound)
}

// UpdateCAS writes e only if its key is still at the revision e was read
// at; ErrConflict otherwise.
func (s *Store) UpdateCAS(ctx context.Context, e Entity) error {
	return s.put(ctx, e, "update", clientv3.Compare(clientv3.ModRevision(Key(e)), "=", e.Revision()), ErrConflict)
}

// put writes e if cond holds, and sets e's revision to the write's; it
// returns failed, wrapped, when cond does not hold.
func (s *Store) put(ctx context.Context, e Entity, verb string, cond clientv3.Cmp, failed error) error {
	if err := validateIdentity(e); err != nil {
		return err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	resp, err := s.cli.Txn(ctx).If(cond).Then(PutOp(e).etcd()).Commit()
	if err != nil {
		return fmt.Errorf("%s %s: %w", verb, describe(e), err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("%s %s: %w", verb, describe(e), failed)
	}
	e.SetRevision(resp.Header.Revision)
	return nil
}

// Get fills e, whose identity is set, from etcd.
func (s *Store) Get(ctx context.Context, e Entity) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, Key(e))
	if err != nil {
		return fmt.Errorf("get %s: %w", describe(e), err)
	}
	if len(resp.Kvs) == 0 {
		return fmt.Errorf("%s: %w", describe(e), ErrNotFound)
	}
	return decodeInto(e, resp.Kvs[0].Value, resp.Kvs[0].ModRevision)
}

func decodeInto(e Entity, value []byte, modRev int64) error {
	id := e.Identity()
	if err := json.Unmarshal(value, e); err != nil {
		return fmt.Errorf("decode %s: %w", describe(e), err)
	}
	e.setIdentity(id)
	e.SetRevision(modRev)
	return nil
}

// Decode fills e from a stored key and value (as read from a range or watch).
func Decode(e Entity, key string, value []byte, modRev int64) error {
	parts := strings.Split(strings.TrimPrefix(key, EntityRoot+e.Class()+"/"), "/")
	e.setIdentity(parts)
	return decodeInto(e, value, modRev)
}

// Delete removes e; ErrNotFound if it was not there.
func (s *Store) Delete(ctx context.Context, e Entity) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	resp, err := s.cli.Delete(ctx, Key(e))
	if err != nil {
		return fmt.Errorf("delete %s: %w", describe(e), err)
	}
	if resp.Deleted == 0 {
		return fmt.Errorf("%s: %w", describe(e), ErrNotFound)
	}
	return nil
}

type entityPtr[T any] interface {
	*T
	Entity
}

// List returns the entities of one class under a prefix of their identity
// (e.g. a workflow name), ordered by key.
func List[T any, P entityPtr[T]](ctx context.Context, s *Store, prefix ...string) ([]P, error) {
	var zero T
	class := P(&zero).Class()
	key := EntityRoot + class + "/"
	for _, p := range prefix {
		key += p + "/"
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, key, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list %s %s: %w", class, strings.Join(prefix, "/"), err)
	}
	out := make([]P, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		e := P(new(T))
		if err := Decode(e, string(kv.Key), kv.Value, kv.ModRevision); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// Op is one write of a batch: a put, or a delete of a key, a prefix or a
// range. etcd refuses a transaction whose puts fall inside its deleted
// ranges, so a range delete and puts in one transaction must not overlap.
type Op struct {
	Key    string
	End    string // with Delete: delete [Key, End)
	Value  []byte
	Delete bool
	Prefix bool
}

// DeletePrefixOp deletes every key under prefix.
func DeletePrefixOp(prefix string) Op { return Op{Key: prefix, Delete: true, Prefix: true} }

// Size is about what o adds to a transaction's bytes (MaxTxnBytes).
func (o Op) Size() int { return len(o.Key) + len(o.End) + len(o.Value) + 32 }

func (o Op) etcd() clientv3.Op {
	switch {
	case o.Delete && o.Prefix:
		return clientv3.OpDelete(o.Key, clientv3.WithPrefix())
	case o.Delete && o.End != "":
		return clientv3.OpDelete(o.Key, clientv3.WithRange(o.End))
	case o.Delete:
		return clientv3.OpDelete(o.Key)
	default:
		return clientv3.OpPut(o.Key, string(o.Value))
	}
}

// etcdOps converts ops for a transaction.
func etcdOps(ops []Op) []clientv3.Op {
	out := make([]clientv3.Op, len(ops))
	for i, o := range ops {
		out[i] = o.etcd()
	}
	return out
}

// fits reports whether ops can go in one transaction with extra more ops.
func fits(ops []Op, extra int) bool {
	if len(ops)+extra > MaxTxnOps {
		return false
	}
	n := 0
	for _, o := range ops {
		n += o.Size()
	}
	return n <= MaxTxnBytes-64<<10
}

// Apply writes ops in as few transactions as etcd's limits allow, in
// order. It is not atomic across transactions: use it for writes that
// become visible only through a later commit (datasets, children).
//
// Without a deadline in ctx, the 10 s default bounds each transaction, not
// the whole write: a 20,000-child fan-out is hundreds of transactions.
func (s *Store) Apply(ctx context.Context, ops []Op) error {
	for len(ops) > 0 {
		n, size := 0, 0
		for n < len(ops) && n < MaxTxnOps && (n == 0 || size+ops[n].Size() <= MaxTxnBytes-64<<10) {
			size += ops[n].Size()
			n++
		}
		tctx, cancel := s.ctx(ctx)
		_, err := s.cli.Txn(tctx).Then(etcdOps(ops[:n])...).Commit()
		cancel()
		if err != nil {
			return fmt.Errorf("write %d keys from %s: %w", n, ops[0].Key, err)
		}
		ops = ops[n:]
	}
	return nil
}

// Commit writes bulk and then, atomically and only if every cmp holds,
// final. When bulk and final fit one transaction they go together, so the
// common case costs one round trip. It returns the transaction response so
// callers can inspect Succeeded and their else-reads.
func (s *Store) Commit(ctx context.Context, cmps []clientv3.Cmp, bulk, final []Op, orElse ...clientv3.Op) (*clientv3.TxnResponse, error) {
	then := final
	if fits(append(bulk[:len(bulk):len(bulk)], final...), len(cmps)+len(orElse)) {
		then = append(bulk[:len(bulk):len(bulk)], final...)
	} else if err := s.Apply(ctx, bulk); err != nil {
		return nil, err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	resp, err := s.cli.Txn(ctx).If(cmps...).Then(etcdOps(then)...).Else(orElse...).Commit()
	if err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	return resp, nil
}
