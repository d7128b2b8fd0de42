package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jobx/jobx/kvmodel"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// waiters hands blocking requests their end through one etcd watch over
// every request's key, kept for the gateway's life. A watch per request
// cost a round trip to etcd before the request could be created (the
// watch had to exist first, to miss nothing) and a cancel after it; the
// shared watch costs neither. Its price: etcd sends this gateway every
// request's changes, the other gateways' too (a few per request); those
// nobody waits for are dropped by key before they are decoded.
//
// A wait registers (add) before its request is created, so the watch,
// which runs from before the registration, sees every change that
// matters. When the watch breaks it resumes from the revision after the
// last one it handled; when etcd compacted that history, it reads every
// waited-for request again and resumes from before those reads.
type waiters struct {
	cli *clientv3.Client
	log *slog.Logger

	mu     sync.Mutex // guards byKey and closed
	byKey  map[string]*waiter
	closed error // set when the watch stopped for good

	cancel context.CancelFunc
	done   chan struct{}
}

// waiter is one blocking request's wait: end gets the request once it is
// done, or an error when it was deleted or the watch stopped.
type waiter struct {
	end chan waitEnd // buffered 1; the first end wins
}

type waitEnd struct {
	req *kvmodel.Request
	err error
}

// requestPrefix is the prefix of every request's key (kvmodel.Key).
var requestPrefix = kvmodel.EntityRoot + (&kvmodel.Request{}).Class() + "/"

// startWaiters starts the watch and returns once etcd has created it, so
// that a wait registered afterwards misses no change.
func startWaiters(ctx context.Context, cli *clientv3.Client, log *slog.Logger) (*waiters, error) {
	wctx, cancel := context.WithCancel(context.Background())
	w := &waiters{cli: cli, log: log, byKey: map[string]*waiter{}, cancel: cancel, done: make(chan struct{})}
	watch := w.watch(wctx, 0)
	select {
	case wr, ok := <-watch:
		if !ok || wr.Err() != nil || !wr.Created {
			cancel()
			return nil, fmt.Errorf("gateway: watch the requests: %w", errors.Join(wr.Err(), errors.New("the watch did not start")))
		}
		go w.run(wctx, watch, wr.Header.Revision+1)
		return w, nil
	case <-ctx.Done():
		cancel()
		return nil, fmt.Errorf("gateway: watch the requests: %w", ctx.Err())
	}
}

// watch watches every request key from revision rev (0: from now).
func (w *waiters) watch(ctx context.Context, rev int64) clientv3.WatchChan {
	opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithCreatedNotify()}
	if rev > 0 {
		opts = append(opts, clientv3.WithRev(rev))
	}
	return w.cli.Watch(clientv3.WithRequireLeader(ctx), requestPrefix, opts...)
}

// add registers a wait for req's end; call it before req is created, and
// remove once done with it.
func (w *waiters) add(req *kvmodel.Request) (*waiter, error) {
	wt := &waiter{end: make(chan waitEnd, 1)}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed != nil {
		return nil, w.closed
	}
	w.byKey[kvmodel.Key(req)] = wt
	return wt, nil
}

func (w *waiters) remove(req *kvmodel.Request) {
	w.mu.Lock()
	delete(w.byKey, kvmodel.Key(req))
	w.mu.Unlock()
}

// waiting returns the wait registered for key, or nil.
func (w *waiters) waiting(key string) *waiter {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.byKey[key]
}

// finish ends the wait with e; a wait takes its first end only.
func (wt *waiter) finish(e waitEnd) {
	select {
	case wt.end <- e:
	default:
	}
}

// follow ends wt when kv, its request as etcd holds it (nil: deleted),
// is done, gone or unreadable.
func (wt *waiter) follow(key string, kv *mvccpb.KeyValue) {
	if kv == nil {
		wt.finish(waitEnd{err: errors.New("the request was deleted while waiting")})
		return
	}
	r := &kvmodel.Request{}
	if err := kvmodel.Decode(r, key, kv.Value, kv.ModRevision); err != nil {
		wt.finish(waitEnd{err: err})
	} else if r.IsDone {
		wt.finish(waitEnd{req: r})
	}
}

// run follows watch, which resumes at revision next, until ctx ends.
func (w *waiters) run(ctx context.Context, watch clientv3.WatchChan, next int64) {
	defer close(w.done)
	for {
		for wr := range watch {
			if err := wr.Err(); err != nil {
				if errors.Is(err, rpctypes.ErrCompacted) {
					w.log.Info("the requests' watch fell behind a compaction of etcd's history; reading the waited-for requests again")
					next = w.resync(ctx, next)
				}
				break
			}
			w.handle(wr.Events)
			// Only events and progress notices move the revision on: a
			// resumed watch's created notice carries etcd's current
			// revision, ahead of the events still to come.
			if n := len(wr.Events); n > 0 {
				next = max(next, wr.Events[n-1].Kv.ModRevision+1)
			} else if wr.IsProgressNotify() {
				next = max(next, wr.Header.Revision+1)
			}
		}
		select {
		case <-ctx.Done():
			w.stop(errors.New("gateway: closed"))
			return
		case <-time.After(50 * time.Millisecond):
		}
		watch = w.watch(ctx, next)
	}
}

// handle passes the events of waited-for requests on.
func (w *waiters) handle(evs []*clientv3.Event) {
	for _, ev := range evs {
		key := string(ev.Kv.Key)
		wt := w.waiting(key)
		if wt == nil {
			continue
		}
		if ev.Type == clientv3.EventTypeDelete {
			wt.follow(key, nil)
		} else {
			wt.follow(key, ev.Kv)
		}
	}
}

// resync reads every waited-for request after a compaction took the
// history the watch needed, ends the waits of those done or gone, and
// returns the revision to watch from. That revision is read before the
// waits are listed: a wait registered later belongs to a request created
// later, whose changes the watch then sees. A failed read is retried
// until ctx ends.
func (w *waiters) resync(ctx context.Context, next int64) int64 {
	for ctx.Err() == nil {
		rev, err := w.resyncOnce(ctx)
		if err == nil {
			return rev + 1
		}
		w.log.Warn("read the waited-for requests again", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	return next
}

func (w *waiters) resyncOnce(ctx context.Context) (int64, error) {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	head, err := w.cli.Get(rctx, requestPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, err
	}
	w.mu.Lock()
	keys := make([]string, 0, len(w.byKey))
	for k := range w.byKey {
		keys = append(keys, k)
	}
	w.mu.Unlock()
	for _, key := range keys {
		resp, err := w.cli.Get(rctx, key)
		if err != nil {
			return 0, fmt.Errorf("request %s: %w", key, err)
		}
		wt := w.waiting(key)
		if wt == nil {
			continue // its wait ended meanwhile
		}
		var kv *mvccpb.KeyValue
		if len(resp.Kvs) > 0 {
			kv = resp.Kvs[0]
		}
		wt.follow(key, kv)
	}
	return head.Header.Revision, nil
}

// stop ends every wait with err and refuses new ones.
func (w *waiters) stop(err error) {
	w.mu.Lock()
	w.closed = err
	waits := w.byKey
	w.byKey = map[string]*waiter{}
	w.mu.Unlock()
	for _, wt := range waits {
		wt.finish(waitEnd{err: err})
	}
}

// close stops the watch and ends the waits still registered.
func (w *waiters) close() {
	w.cancel()
	<-w.done
}

// wait returns req once it is done, or the error that ended the wait, or
// ctx's.
func (wt *waiter) wait(ctx context.Context) (*kvmodel.Request, error) {
	select {
	case e := <-wt.end:
		return e.req, e.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
