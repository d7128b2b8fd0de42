package runner

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/jobx/jobx/kvmodel"
)

const (
	// cleanupPage is how many due cleanups one read of the queue takes.
	cleanupPage = 100
	// cleanupWorkers is how many batches of a page are cleaned at once:
	// etcd commits the transactions of concurrent ones with one fsync.
	cleanupWorkers = 4
)

// cleaner prunes the requests whose retention has passed (their cleanups
// are due), at the pace requests end: every tick it works through the
// whole queue of due cleanups, a page at a time, in batches that each read
// and delete many requests per round trip, several batches at once. A pass
// that took one page a tick would bound cleanups at a page a second, and
// under a faster stream of requests etcd would fill up with ended ones.
type cleaner struct {
	store   *kvmodel.Store
	log     *slog.Logger
	page    int64
	workers int
}

// loop runs a pass every interval until ctx ends.
func (c *cleaner) loop(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.pass(ctx)
	}
}

// pass carries out the cleanups due now, page after page, until a page
// comes back short of full or cleans nothing (etcd refuses, or every one
// fails: the next pass tries again).
func (c *cleaner) pass(ctx context.Context) {
	for ctx.Err() == nil {
		due, err := c.store.DueCleanups(ctx, time.Now(), c.page)
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				c.log.Warn("read cleanup queue", "err", err)
			}
			return
		}
		if c.clean(ctx, due) == 0 || int64(len(due)) < c.page {
			return
		}
	}
}

// clean carries out cleanups due, split among c.workers batches that run
// at once (kvmodel.Store.CleanMany), and keeps the histories they added to
// within their bound; it returns how many it carried out.
func (c *cleaner) clean(ctx context.Context, due []kvmodel.DueCleanup) int {
	var (
		mu      sync.Mutex
		cleaned int
		trim    = map[string]bool{} // the workflows whose histories grew
		wg      sync.WaitGroup
	)
	size := (len(due) + c.workers - 1) / c.workers
	for batch := range slices.Chunk(due, max(size, 1)) {
		wg.Go(func() {
			n, sum, errs := c.store.CleanMany(ctx, batch)
			for _, err := range errs {
				if ctx.Err() == nil {
					c.log.Warn("cleanup", "err", err)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			cleaned += n
			for wf := range sum {
				trim[wf] = true
			}
		})
	}
	wg.Wait()
	// The histories' bound, kept once per page: a trim reads a workflow's
	// summaries (keys only), and etcd walks what it deleted since the last
	// compaction to do so.
	for wf := range trim {
		if err := c.store.TrimHistory(ctx, wf); err != nil && ctx.Err() == nil {
			c.log.Debug("trim the request history", "workflow", wf, "err", err)
		}
	}
	return cleaned
}
