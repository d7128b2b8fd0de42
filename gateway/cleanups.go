package gateway

import (
	"context"
	"log/slog"
	"sync"

	"github.com/jobx/jobx/kvmodel"
)

// deliveredCleanups brings forward the cleanup of requests whose results a
// blocking client has received. The write is an fsync'd etcd transaction,
// so it runs off the response's path, in batches. A request whose
// brought-forward cleanup is lost (the gateway stops first) is still
// removed: ending it scheduled its cleanup after --retention.
type deliveredCleanups struct {
	store *kvmodel.Store
	log   *slog.Logger
	ops   chan kvmodel.Op
	stop  chan struct{}
	done  chan struct{}

	mu     sync.Mutex // orders schedule's sends before close's final drain
	closed bool
}

func newDeliveredCleanups(store *kvmodel.Store, log *slog.Logger) *deliveredCleanups {
	d := &deliveredCleanups{store: store, log: log, ops: make(chan kvmodel.Op, 4096), stop: make(chan struct{}), done: make(chan struct{})}
	go d.loop()
	return d
}

// schedule queues op; when the queue is full or closed it writes op at
// once, so a burst slows its senders rather than growing without bound.
func (d *deliveredCleanups) schedule(op kvmodel.Op) {
	d.mu.Lock()
	if !d.closed {
		select {
		case d.ops <- op:
			d.mu.Unlock()
			return
		default:
		}
	}
	d.mu.Unlock()
	d.apply([]kvmodel.Op{op})
}

func (d *deliveredCleanups) loop() {
	defer close(d.done)
	for {
		select {
		case op := <-d.ops:
			d.apply(d.batch(op))
		case <-d.stop:
			for {
				select {
				case op := <-d.ops:
					d.apply(d.batch(op))
				default:
					return
				}
			}
		}
	}
}

// batch is first and whatever else is queued, up to one transaction's ops.
func (d *deliveredCleanups) batch(first kvmodel.Op) []kvmodel.Op {
	ops := []kvmodel.Op{first}
	for len(ops) < kvmodel.MaxTxnOps {
		select {
		case op := <-d.ops:
			ops = append(ops, op)
		default:
			return ops
		}
	}
	return ops
}

func (d *deliveredCleanups) apply(ops []kvmodel.Op) {
	if err := d.store.Apply(context.Background(), ops); err != nil {
		d.log.Warn("bring forward the cleanup of delivered requests (they are removed after their retention instead)", "requests", len(ops), "err", err)
	}
}

// close writes what is queued and stops.
func (d *deliveredCleanups) close() {
	d.mu.Lock()
	if !d.closed {
		d.closed = true
		close(d.stop)
	}
	d.mu.Unlock()
	<-d.done
}
