package kvmodel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

const runnersRoot = JobxRoot + "runners/"

// RunnerInfo is what a runner announces about itself in etcd, under a
// lease: when the runner dies its entry expires with the lease.
type RunnerInfo struct {
	ID           string    `json:"id"`
	Host         string    `json:"host"`
	Capabilities []string  `json:"capabilities"`
	Workflows    []string  `json:"workflows"` // empty: every workflow
	Sandbox      string    `json:"sandbox"`   // the sandbox's kind: namespace, containerd or SandboxNone
	Version      string    `json:"version"`
	Concurrency  int       `json:"concurrency"`
	InFlight     int       `json:"in_flight"`
	Started      time.Time `json:"started"`
	Updated      time.Time `json:"updated"`
	// Holding lists, by NSQ topic, the invocations whose messages the
	// runner is processing, as of Updated: the recovery runner tells work
	// in progress from work whose message was lost.
	Holding map[string][]string `json:"holding,omitempty"`
}

// SandboxNone is the Sandbox of a runner started with --sandbox none: its
// handlers run unisolated, as the runner's user.
const SandboxNone = "none"

// SandboxIsolates reports whether handlers run isolated in the sandbox of
// kind sandbox: in every sandbox but SandboxNone.
func SandboxIsolates(sandbox string) bool { return sandbox != SandboxNone }

// Isolated reports whether the runner's handlers run isolated.
func (ri *RunnerInfo) Isolated() bool { return SandboxIsolates(ri.Sandbox) }

// Serves reports whether the runner consumes the topics of workflow wf for
// capability c.
func (ri *RunnerInfo) Serves(wf, c string) bool {
	return slices.Contains(ri.Capabilities, c) && (len(ri.Workflows) == 0 || slices.Contains(ri.Workflows, wf))
}

// Announcement keeps a runner's entry alive under a lease. Close revokes
// the lease, removing the entry at once.
type Announcement struct {
	store *Store
	lease clientv3.LeaseID
	key   string
	done  chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	info  RunnerInfo
	lost  chan struct{}
}

// Announce writes info under a lease of ttl and keeps the lease alive until
// Close. Lost is closed if the lease cannot be kept (etcd unreachable for
// longer than ttl): the runner must then stop taking work.
func (s *Store) Announce(ctx context.Context, info RunnerInfo, ttl time.Duration) (*Announcement, error) {
	lctx, cancel := s.ctx(ctx)
	defer cancel()
	lease, err := s.cli.Grant(lctx, int64(max(ttl/time.Second, 2)))
	if err != nil {
		return nil, fmt.Errorf("announce runner %s: %w", info.ID, err)
	}
	a := &Announcement{store: s, lease: lease.ID, key: runnersRoot + info.ID, done: make(chan struct{}), info: info, lost: make(chan struct{})}
	if err := a.put(lctx); err != nil {
		return nil, err
	}
	ka, err := s.cli.KeepAlive(context.Background(), lease.ID)
	if err != nil {
		return nil, fmt.Errorf("announce runner %s: keepalive: %w", info.ID, err)
	}
	// The lease is lost once etcd has not acknowledged it for a whole TTL:
	// the server may have expired it by then, whatever the client's
	// keep-alive loop (which goes on retrying) reports later.
	ttlD := time.Duration(lease.TTL) * time.Second
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		expiry := time.NewTimer(ttlD)
		defer expiry.Stop()
		for {
			select {
			case <-a.done:
				return
			case <-expiry.C:
				close(a.lost)
				return
			case _, ok := <-ka:
				if !ok {
					close(a.lost)
					return
				}
				expiry.Reset(ttlD)
			}
		}
	}()
	return a, nil
}

func (a *Announcement) put(ctx context.Context) error {
	a.mu.Lock()
	a.info.Updated = time.Now().UTC()
	v, _ := json.Marshal(a.info)
	a.mu.Unlock()
	if _, err := a.store.cli.Put(ctx, a.key, string(v), clientv3.WithLease(a.lease)); err != nil {
		return fmt.Errorf("announce runner: %w", err)
	}
	return nil
}

// Update changes the announced load.
func (a *Announcement) Update(ctx context.Context, inFlight int) error {
	a.mu.Lock()
	a.info.InFlight = inFlight
	a.mu.Unlock()
	ctx, cancel := a.store.ctx(ctx)
	defer cancel()
	return a.put(ctx)
}

// Hold sets the invocations (by topic) that the next Update announces as
// held.
func (a *Announcement) Hold(holding map[string][]string) {
	a.mu.Lock()
	a.info.Holding = holding
	a.mu.Unlock()
}

// Lost is closed when the lease could not be kept alive.
func (a *Announcement) Lost() <-chan struct{} { return a.lost }

// Close revokes the lease. It is idempotent.
func (a *Announcement) Close() {
	select {
	case <-a.done:
		return
	default:
	}
	close(a.done)
	a.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	a.store.cli.Revoke(ctx, a.lease)
}

// Runners lists the live runners, by id.
func (s *Store) Runners(ctx context.Context) ([]*RunnerInfo, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, runnersRoot, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list runners: %w", err)
	}
	var out []*RunnerInfo
	for _, kv := range resp.Kvs {
		ri := &RunnerInfo{}
		if err := json.Unmarshal(kv.Value, ri); err == nil {
			out = append(out, ri)
		}
	}
	return out, nil
}

// Registry is a watched view of the live runners. It is safe for
// concurrent use; Close stops its watch.
type Registry struct {
	store  *Store
	log    *slog.Logger
	mu     sync.RWMutex
	byID   map[string]*RunnerInfo
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewRegistry loads the live runners and watches for changes.
func NewRegistry(ctx context.Context, store *Store, log *slog.Logger) (*Registry, error) {
	if log == nil {
		log = slog.Default()
	}
	r := &Registry{store: store, log: log, byID: map[string]*RunnerInfo{}}
	gctx, cancel := store.ctx(ctx)
	resp, err := store.cli.Get(gctx, runnersRoot, clientv3.WithPrefix())
	cancel()
	if err != nil {
		return nil, fmt.Errorf("load runner registry: %w", err)
	}
	for _, kv := range resp.Kvs {
		r.apply(string(kv.Key), kv.Value, false)
	}
	wctx, wcancel := context.WithCancel(context.Background())
	r.cancel = wcancel
	r.wg.Add(1)
	go r.watch(wctx, resp.Header.Revision+1)
	return r, nil
}

func (r *Registry) apply(key string, value []byte, deleted bool) {
	id := strings.TrimPrefix(key, runnersRoot)
	r.mu.Lock()
	defer r.mu.Unlock()
	if deleted {
		delete(r.byID, id)
		return
	}
	if ri := r.decode(key, value); ri != nil {
		r.byID[id] = ri
	}
}

// decode decodes a runner entry; nil (logged) when it is not one.
func (r *Registry) decode(key string, value []byte) *RunnerInfo {
	ri := &RunnerInfo{}
	if err := json.Unmarshal(value, ri); err != nil {
		r.log.Warn("registry: undecodable runner entry", "key", key, "err", err)
		return nil
	}
	return ri
}

// watch follows the registry from revision from. When etcd compacted the
// history the watch needs (ErrCompacted), it reads the registry again and
// watches on from that read's revision.
func (r *Registry) watch(ctx context.Context, from int64) {
	defer r.wg.Done()
	for ctx.Err() == nil {
		var werr error
		for wr := range r.store.cli.Watch(clientv3.WithRequireLeader(ctx), runnersRoot, clientv3.WithPrefix(), clientv3.WithRev(from)) {
			if werr = wr.Err(); werr != nil {
				break
			}
			for _, ev := range wr.Events {
				r.apply(string(ev.Kv.Key), ev.Kv.Value, ev.Type == clientv3.EventTypeDelete)
				from = ev.Kv.ModRevision + 1
			}
		}
		if errors.Is(werr, rpctypes.ErrCompacted) {
			r.log.Info("runner registry watch behind a compaction of etcd's history; reading again", "from", from)
			rev, err := r.resync(ctx)
			if err == nil {
				from = rev + 1
				continue
			}
			r.log.Warn("runner registry: read again", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// resync replaces the view with a fresh read and returns its revision.
func (r *Registry) resync(ctx context.Context) (int64, error) {
	gctx, cancel := r.store.ctx(ctx)
	resp, err := r.store.cli.Get(gctx, runnersRoot, clientv3.WithPrefix())
	cancel()
	if err != nil {
		return 0, fmt.Errorf("read runner registry: %w", err)
	}
	byID := make(map[string]*RunnerInfo, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		if ri := r.decode(string(kv.Key), kv.Value); ri != nil {
			byID[strings.TrimPrefix(string(kv.Key), runnersRoot)] = ri
		}
	}
	r.mu.Lock()
	r.byID = byID
	r.mu.Unlock()
	return resp.Header.Revision, nil
}

// Offers reports whether some live runner serves capability c of workflow
// wf. A miss is confirmed with a read from etcd, so a runner that started a
// moment ago is not reported missing.
func (r *Registry) Offers(ctx context.Context, wf, c string) bool {
	r.mu.RLock()
	for _, ri := range r.byID {
		if ri.Serves(wf, c) {
			r.mu.RUnlock()
			return true
		}
	}
	r.mu.RUnlock()
	runners, err := r.store.Runners(ctx)
	if err != nil {
		return false
	}
	for _, ri := range runners {
		if ri.Serves(wf, c) {
			return true
		}
	}
	return false
}

// Runners returns the live runners sorted by id.
func (r *Registry) Runners() []*RunnerInfo {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]*RunnerInfo, 0, len(r.byID))
	for _, ri := range r.byID {
		out = append(out, ri)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Holding returns the invocations the live runners hold (RunnerInfo.Holding)
// and how many each topic has.
func (r *Registry) Holding() (ids map[string]bool, perTopic map[string]int) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	ids, perTopic = map[string]bool{}, map[string]int{}
	for _, ri := range r.byID {
		for topic, held := range ri.Holding {
			perTopic[topic] += len(held)
			for _, id := range held {
				ids[id] = true
			}
		}
	}
	return ids, perTopic
}

// Close stops the watch.
func (r *Registry) Close() {
	r.cancel()
	r.wg.Wait()
}
