package kvmodel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// catalogClasses are the entity classes a Catalog mirrors.
var catalogClasses = []string{"workflow", "job", "step", "handler"}

// Change is one catalog update, delivered to OnChange subscribers.
type Change struct {
	Class    string // workflow, job, step or handler
	Workflow string
	Name     string
	Deleted  bool
	Revision int64
}

type wfKey struct{ wf, name string }

// Catalog is an in-memory view of every workflow, job, step and handler,
// kept current by etcd watches. Lookups that miss fall back to etcd, so a
// definition written a moment ago is never reported missing. Returned
// entities are shared: callers must not modify them. A Catalog is safe for
// concurrent use; Close stops its watches.
type Catalog struct {
	store *Store
	log   *slog.Logger

	mu        sync.RWMutex
	cond      *sync.Cond
	workflows map[string]*Workflow
	jobs      map[wfKey]*Job
	steps     map[wfKey]*Step
	handlers  map[wfKey]*Handler
	revision  int64
	subs      []func(Change)
	closed    bool

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewCatalog loads the catalog at one etcd revision and starts watching
// from the next.
func NewCatalog(ctx context.Context, store *Store, log *slog.Logger) (*Catalog, error) {
	if log == nil {
		log = slog.Default()
	}
	c := &Catalog{
		store:     store,
		log:       log,
		workflows: map[string]*Workflow{},
		jobs:      map[wfKey]*Job{},
		steps:     map[wfKey]*Step{},
		handlers:  map[wfKey]*Handler{},
	}
	c.cond = sync.NewCond(&c.mu)
	ops := make([]clientv3.Op, len(catalogClasses))
	for i, class := range catalogClasses {
		ops[i] = clientv3.OpGet(EntityRoot+class+"/", clientv3.WithPrefix())
	}
	rctx, cancel := store.ctx(ctx)
	resp, err := store.cli.Txn(rctx).Then(ops...).Commit()
	cancel()
	if err != nil {
		return nil, fmt.Errorf("load catalog: %w", err)
	}
	for i, class := range catalogClasses {
		for _, kv := range resp.Responses[i].GetResponseRange().Kvs {
			c.apply(class, string(kv.Key), kv.Value, kv.ModRevision, false)
		}
	}
	c.revision = resp.Header.Revision
	wctx, wcancel := context.WithCancel(context.Background())
	c.cancel = wcancel
	for _, class := range catalogClasses {
		c.wg.Add(1)
		go c.watch(wctx, class, resp.Header.Revision+1)
	}
	return c, nil
}

// Close stops the watches and waits for them. It is idempotent.
func (c *Catalog) Close() {
	c.cancel()
	c.wg.Wait()
	c.mu.Lock()
	c.closed = true
	c.cond.Broadcast()
	c.mu.Unlock()
}

// watch follows one class from revision from. When etcd compacted the
// history the watch needs (ErrCompacted: it fell behind, or resumed after
// a lost connection past a compaction), it reads the class again and
// watches on from that read's revision.
func (c *Catalog) watch(ctx context.Context, class string, from int64) {
	defer c.wg.Done()
	prefix := EntityRoot + class + "/"
	for ctx.Err() == nil {
		var werr error
		wch := c.store.cli.Watch(clientv3.WithRequireLeader(ctx), prefix, clientv3.WithPrefix(), clientv3.WithRev(from))
		for wr := range wch {
			if werr = wr.Err(); werr != nil {
				break
			}
			for _, ev := range wr.Events {
				deleted := ev.Type == clientv3.EventTypeDelete
				c.mu.Lock()
				ch := c.apply(class, string(ev.Kv.Key), ev.Kv.Value, ev.Kv.ModRevision, deleted)
				subs := c.subs
				c.mu.Unlock()
				for _, fn := range subs {
					fn(ch)
				}
				from = ev.Kv.ModRevision + 1
			}
			c.mu.Lock()
			if wr.Header.Revision > c.revision {
				c.revision = wr.Header.Revision
			}
			c.cond.Broadcast()
			c.mu.Unlock()
		}
		if errors.Is(werr, rpctypes.ErrCompacted) {
			c.log.Info("catalog watch behind a compaction of etcd's history; reading again", "class", class, "from", from)
			rev, err := c.resync(ctx, class)
			if err == nil {
				from = rev + 1
				continue
			}
			werr = err
		}
		if werr != nil && ctx.Err() == nil {
			c.log.Warn("catalog watch interrupted", "class", class, "err", werr)
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// resync reads one class again and applies what differs from the maps,
// telling the subscribers of each change as the watch would (a deletion
// with the read's revision). It returns the read's revision.
func (c *Catalog) resync(ctx context.Context, class string) (int64, error) {
	rctx, cancel := c.store.ctx(ctx)
	resp, err := c.store.cli.Get(rctx, EntityRoot+class+"/", clientv3.WithPrefix())
	cancel()
	if err != nil {
		return 0, fmt.Errorf("read the catalog's %ss again: %w", class, err)
	}
	var changes []Change
	c.mu.Lock()
	known := c.known(class)
	for _, kv := range resp.Kvs {
		key := string(kv.Key)
		rev, ok := known[key]
		delete(known, key)
		if !ok || rev != kv.ModRevision {
			changes = append(changes, c.apply(class, key, kv.Value, kv.ModRevision, false))
		}
	}
	for key := range known {
		changes = append(changes, c.apply(class, key, nil, resp.Header.Revision, true))
	}
	subs := c.subs
	c.mu.Unlock()
	for _, ch := range changes {
		for _, fn := range subs {
			fn(ch)
		}
	}
	c.mu.Lock()
	if resp.Header.Revision > c.revision {
		c.revision = resp.Header.Revision
	}
	c.cond.Broadcast()
	c.mu.Unlock()
	return resp.Header.Revision, nil
}

// known returns the keys of a class's entities in the maps and their
// revisions; c.mu must be held.
func (c *Catalog) known(class string) map[string]int64 {
	m := map[string]int64{}
	add := func(e Entity) { m[Key(e)] = e.Revision() }
	switch class {
	case "workflow":
		for _, e := range c.workflows {
			add(e)
		}
	case "job":
		for _, e := range c.jobs {
			add(e)
		}
	case "step":
		for _, e := range c.steps {
			add(e)
		}
	case "handler":
		for _, e := range c.handlers {
			add(e)
		}
	}
	return m
}

// apply updates the maps; c.mu must be held (or c not yet shared).
func (c *Catalog) apply(class, key string, value []byte, modRev int64, deleted bool) Change {
	var e Entity
	switch class {
	case "workflow":
		e = &Workflow{}
	case "job":
		e = &Job{}
	case "step":
		e = &Step{}
	case "handler":
		e = &Handler{}
	}
	ch := Change{Class: class, Deleted: deleted, Revision: modRev}
	if deleted {
		Decode(e, key, []byte("{}"), modRev)
	} else if err := Decode(e, key, value, modRev); err != nil {
		c.log.Warn("catalog: skipping undecodable entity", "key", key, "err", err)
		return ch
	}
	id := e.Identity()
	if len(id) == 1 {
		ch.Workflow, ch.Name = id[0], id[0]
	} else if len(id) == 2 {
		ch.Workflow, ch.Name = id[0], id[1]
	} else {
		return ch
	}
	k := wfKey{ch.Workflow, ch.Name}
	switch v := e.(type) {
	case *Workflow:
		setOrDelete(c.workflows, v.Name, v, deleted)
	case *Job:
		setOrDelete(c.jobs, k, v, deleted)
	case *Step:
		setOrDelete(c.steps, k, v, deleted)
	case *Handler:
		setOrDelete(c.handlers, k, v, deleted)
	}
	return ch
}

func setOrDelete[K comparable, V any](m map[K]V, k K, v V, deleted bool) {
	if deleted {
		delete(m, k)
	} else {
		m[k] = v
	}
}

// OnChange registers fn to be called, from the watch goroutine, after each
// change is applied. fn must not block for long.
func (c *Catalog) OnChange(fn func(Change)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.subs = append(c.subs, fn)
}

// WaitRevision blocks until the catalog has applied every change up to rev.
func (c *Catalog) WaitRevision(ctx context.Context, rev int64) error {
	stop := context.AfterFunc(ctx, func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	defer stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.revision < rev && !c.closed {
		if err := ctx.Err(); err != nil {
			return err
		}
		c.cond.Wait()
	}
	return ctx.Err()
}

// Workflows returns the names of all workflows, sorted.
func (c *Catalog) Workflows() []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]string, 0, len(c.workflows))
	for name := range c.workflows {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// Workflow returns a workflow by name.
func (c *Catalog) Workflow(ctx context.Context, name string) (*Workflow, error) {
	return lookup(ctx, c, c.workflows, name, &Workflow{Name: name})
}

// Job returns a job of a workflow.
func (c *Catalog) Job(ctx context.Context, wf, name string) (*Job, error) {
	return lookup(ctx, c, c.jobs, wfKey{wf, name}, &Job{WorkflowName: wf, Name: name})
}

// Step returns a step of a workflow.
func (c *Catalog) Step(ctx context.Context, wf, name string) (*Step, error) {
	return lookup(ctx, c, c.steps, wfKey{wf, name}, &Step{WorkflowName: wf, Name: name})
}

// Handler returns a handler of a workflow.
func (c *Catalog) Handler(ctx context.Context, wf, name string) (*Handler, error) {
	return lookup(ctx, c, c.handlers, wfKey{wf, name}, &Handler{WorkflowName: wf, Name: name})
}

// Handlers returns a workflow's handlers, sorted by name.
func (c *Catalog) Handlers(wf string) []*Handler {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []*Handler
	for k, h := range c.handlers {
		if k.wf == wf {
			out = append(out, h)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Steps returns a workflow's steps, sorted by name.
func (c *Catalog) Steps(wf string) []*Step {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []*Step
	for k, s := range c.steps {
		if k.wf == wf {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Jobs returns a workflow's jobs, sorted by name.
func (c *Catalog) Jobs(wf string) []*Job {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []*Job
	for k, j := range c.jobs {
		if k.wf == wf {
			out = append(out, j)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func lookup[K comparable, V Entity](ctx context.Context, c *Catalog, m map[K]V, k K, fresh V) (V, error) {
	c.mu.RLock()
	v, ok := m[k]
	c.mu.RUnlock()
	if ok {
		return v, nil
	}
	if err := c.store.Get(ctx, fresh); err != nil {
		var zero V
		return zero, err
	}
	return fresh, nil
}
