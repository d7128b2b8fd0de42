package containerd

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// pool keeps warm boxes per key. It creates boxes on demand while the live
// boxes stay within MaxSandboxes and their memory limits within
// MemoryBudget, evicting idle boxes of other keys to make room, and stops
// boxes used MaxReuse times, boxes idle longer than IdleTimeout, and, of a
// key with more than MaxIdle idle boxes, the extra ones once idle longer
// than Linger. A burst of concurrent invocations thus keeps its boxes
// while it lasts instead of destroying and creating one per invocation.
// With MaxIdle 0 no box outlives its invocation.
type pool struct {
	s *Sandbox

	mu       sync.Mutex // guards the fields below
	idle     map[key][]*box
	live     int           // boxes created or being created, not destroyed
	liveKey  map[key]int   // the same, per key
	memory   int64         // sum of their memory limits
	settling map[*box]bool // boxes whose last run is settling
	waiting  map[key]int   // acquires waiting for one of them, per key
	changed  chan struct{}
	closed   bool
	settles  sync.WaitGroup
	destroys sync.WaitGroup
	created  atomic.Int64 // boxes started, for tests and figures
}

func newPool(s *Sandbox) *pool {
	return &pool{s: s, idle: map[key][]*box{}, liveKey: map[key]int{}, settling: map[*box]bool{}, waiting: map[key]int{}, changed: make(chan struct{})}
}

func (p *pool) notify() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// acquire returns an idle box for k (fresh=false) or a new one. Of the
// idle boxes it prefers one with a child parked for reuse key reuse and
// handler, then one with children parked for reuse, then one with none
// parked, the most recently used first. While no box of k is idle but
// more are settling than acquires wait for them, it waits for one rather
// than create another: a settle takes about a millisecond, a new box a
// hundred. A run with a reuse key is the exception while its key has
// fewer than reuseBoxes boxes: rather than take an idle box whose parked
// children it would kill (they are of another key), or wait for a settling
// one that may hold such children, it gets a box of its own, so that the
// handlers of a sequence (a mapper and its reducer, request after request)
// each keep their parked child.
func (p *pool) acquire(ctx context.Context, k key, reuse, handler string) (b *box, fresh bool, err error) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, false, errClosed
		}
		own := reuse != "" && p.liveKey[k] < p.reuseBoxes() && p.roomLocked(k)
		for len(p.idle[k]) > 0 {
			l := p.idle[k]
			i := pick(l, reuse, handler)
			if own && l[i].holdsOtherKey(reuse) {
				break
			}
			b = l[i]
			p.idle[k] = append(l[:i], l[i+1:]...)
			if b.alive() {
				p.mu.Unlock()
				return b, false, nil
			}
			p.dropLocked(b)
		}
		if p.settlingLocked(k, "") > p.waiting[k] && (!own || p.settlingLocked(k, reuse) > 0) {
			p.waiting[k]++
			wait := p.changed
			p.mu.Unlock()
			select {
			case <-wait:
			case <-ctx.Done():
			}
			p.mu.Lock()
			if p.waiting[k]--; p.waiting[k] == 0 {
				delete(p.waiting, k)
			}
			p.mu.Unlock()
			if ctx.Err() != nil {
				return nil, false, fmt.Errorf("waiting for a sandbox: %w", ctx.Err())
			}
			continue
		}
		if p.roomLocked(k) {
			p.live++
			p.liveKey[k]++
			p.memory += k.memory
			p.mu.Unlock()
			b, err := p.s.create(ctx, k)
			if err != nil {
				p.mu.Lock()
				p.live--
				p.liveKey[k]--
				p.memory -= k.memory
				p.notify()
				p.mu.Unlock()
				return nil, false, err
			}
			p.created.Add(1)
			return b, true, nil
		}
		if v := p.oldestIdleLocked(); v != nil {
			p.dropLocked(v)
			p.mu.Unlock()
			continue
		}
		if k.memory > p.s.opts.MemoryBudget {
			p.mu.Unlock()
			return nil, false, fmt.Errorf("memory limit %d exceeds the runner's sandbox memory budget %d", k.memory, p.s.opts.MemoryBudget)
		}
		wait := p.changed
		p.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, false, fmt.Errorf("waiting for a sandbox: %w", ctx.Err())
		}
	}
}

// settlingLocked counts the boxes of k that are settling; with a reuse
// key, only those holding no parked children of another key (worth
// waiting for).
func (p *pool) settlingLocked(k key, reuse string) int {
	n := 0
	for b := range p.settling {
		if b.key == k && (reuse == "" || !b.holdsOtherKey(reuse)) {
			n++
		}
	}
	return n
}

// roomLocked says whether a box of k can be created without stopping
// another.
func (p *pool) roomLocked(k key) bool {
	return p.live < p.s.opts.MaxSandboxes && p.memory+k.memory <= p.s.opts.MemoryBudget
}

// reuseBoxes is how many boxes a key may have so that runs with reuse keys
// get boxes of their own (see acquire): the idle boxes a key keeps, and at
// least two, for a mapper and its reducer.
func (p *pool) reuseBoxes() int { return max(p.s.opts.MaxIdle, 2) }

// pick chooses among idle boxes l (oldest first) for a run of handler
// with reuse key reuse.
func pick(l []*box, reuse, handler string) int {
	sameKey, unparked := -1, -1
	for i := len(l) - 1; i >= 0; i-- {
		key, h := l[i].parkedFor(reuse, handler)
		if h {
			return i
		}
		if key && sameKey < 0 {
			sameKey = i
		}
		if unparked < 0 {
			if none, _ := l[i].parkedFor("", ""); none {
				unparked = i
			}
		}
	}
	switch {
	case sameKey >= 0:
		return sameKey
	case unparked >= 0:
		return unparked
	}
	return len(l) - 1
}

// settle runs fn (a run's settle) in the background, then releases b as
// fn says.
func (p *pool) settle(b *box, fn func() bool) {
	p.mu.Lock()
	p.settling[b] = true
	p.settles.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.settles.Done()
		keep := fn()
		p.mu.Lock()
		defer p.mu.Unlock()
		delete(p.settling, b)
		p.releaseLocked(b, keep)
	}()
}

// releaseLocked returns b to the idle set, or destroys it.
func (p *pool) releaseLocked(b *box, keep bool) {
	b.uses++
	b.lastUsed = time.Now()
	if !keep || p.closed || !b.alive() || (p.s.opts.MaxReuse > 0 && b.uses >= p.s.opts.MaxReuse) || p.s.opts.MaxIdle == 0 {
		p.dropLocked(b)
		return
	}
	p.idle[b.key] = append(p.idle[b.key], b)
	p.notify()
}

// dropLocked forgets b and destroys it in the background.
func (p *pool) dropLocked(b *box) {
	p.live--
	if p.liveKey[b.key]--; p.liveKey[b.key] == 0 {
		delete(p.liveKey, b.key)
	}
	p.memory -= b.key.memory
	p.notify()
	p.destroys.Add(1)
	go func() {
		defer p.destroys.Done()
		p.s.destroy(b)
	}()
}

func (p *pool) oldestIdleLocked() *box {
	var old *box
	var ok key
	for k, l := range p.idle {
		if len(l) > 0 && (old == nil || l[0].lastUsed.Before(old.lastUsed)) {
			old, ok = l[0], k
		}
	}
	if old != nil {
		p.idle[ok] = p.idle[ok][1:]
	}
	return old
}

// janitor stops boxes idle longer than IdleTimeout, and the idle boxes of
// a key beyond MaxIdle once idle longer than Linger.
func (p *pool) janitor(ctx context.Context) {
	every := min(p.s.opts.IdleTimeout, p.s.opts.Linger) / 4
	if every > 10*time.Second {
		every = 10 * time.Second
	}
	if every < 10*time.Millisecond {
		every = 10 * time.Millisecond
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p.mu.Lock()
		for k, l := range p.idle {
			// l is in release order: the boxes beyond MaxIdle are the
			// longest idle, at its front.
			extra := len(l) - p.s.opts.MaxIdle
			kept := l[:0]
			for i, b := range l {
				idle := time.Since(b.lastUsed)
				if idle > p.s.opts.IdleTimeout || (i < extra && idle > p.s.opts.Linger) || !b.alive() {
					p.dropLocked(b)
				} else {
					kept = append(kept, b)
				}
			}
			p.idle[k] = kept
		}
		p.mu.Unlock()
	}
}

// close destroys the idle boxes and waits for every destroy; busy boxes
// are destroyed as their invocations release them, and the caller's Close
// removes any the shutdown raced with.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	for k, l := range p.idle {
		for _, b := range l {
			p.dropLocked(b)
		}
		delete(p.idle, k)
	}
	p.mu.Unlock()
	p.settles.Wait()
	p.destroys.Wait()
}

// stats reports the live boxes, their memory and how many run no
// invocation (idle, or settling after one).
func (p *pool) stats() (live int, memory int64, idle int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.idle {
		idle += len(l)
	}
	return p.live, p.memory, idle + len(p.settling)
}
