// Package pool keeps warm sandboxes (boxes) by key for the isolating
// sandboxes: a box runs one invocation at a time, settles (its leftovers
// killed, its scratch cleaned) before it runs the next, and waits idle for
// the next invocation of its key.
//
// The pool creates boxes on demand while the live boxes stay within
// MaxBoxes and their memory within MemoryBudget, evicting idle boxes of
// other keys to make room, and stops boxes used MaxReuse times, boxes idle
// longer than IdleTimeout, and, of a key with more than MaxIdle idle boxes,
// the extra ones once idle longer than Linger. A burst of concurrent
// invocations thus keeps its boxes while it lasts instead of destroying and
// creating one per invocation. With MaxIdle 0 no box outlives its
// invocation.
package pool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Box is what the pool keeps: a warm sandbox of one key.
type Box[K comparable] interface {
	comparable
	// Key is the box's key: boxes of one key are interchangeable.
	Key() K
	// Alive reports whether the box can still run invocations.
	Alive() bool
	// Score rates the box for a run of handler with reuse key reuse
	// (RunSpec.Reuse; "" for none): the pool takes the idle box with the
	// highest score, the most recently used among equals. A box that holds
	// a process kept for exactly that run scores highest.
	Score(reuse, handler string) int
	// HoldsOtherKey says whether a run of reuse would cost the box
	// processes it keeps for another reuse key (which it then kills).
	HoldsOtherKey(reuse string) bool
}

// Settings size a pool. The isolating sandboxes' options embed them;
// DefaultSettings gives the defaults.
type Settings struct {
	// MemoryBudget bounds the sum of the memory limits of live boxes.
	MemoryBudget int64
	// MaxSandboxes bounds the live boxes (warm or busy).
	MaxSandboxes int
	// MaxIdle bounds the idle boxes kept per key once demand falls: the
	// extra ones are stopped after Linger idle. 0 keeps none, not even
	// during a burst.
	MaxIdle int
	// Linger is how long idle boxes beyond MaxIdle are kept for the next
	// invocations of a burst.
	Linger time.Duration
	// IdleTimeout stops a box idle that long.
	IdleTimeout time.Duration
	// MaxReuse stops a box after that many invocations (0: no limit).
	MaxReuse int
}

// DefaultSettings returns half the host's memory as the budget, four boxes
// per CPU, two idle per key for five minutes (more for two seconds after a
// burst), no reuse limit.
func DefaultSettings() Settings {
	return Settings{MemoryBudget: hostMemory() / 2, MaxSandboxes: 4 * runtime.NumCPU(), MaxIdle: 2,
		Linger: 2 * time.Second, IdleTimeout: 5 * time.Minute}
}

// Check gives zero durations and a MaxSandboxes below one their defaults,
// and refuses a budget below one box of memory boxMemory.
func (s *Settings) Check(boxMemory int64) error {
	if s.MemoryBudget < boxMemory {
		return fmt.Errorf("memory budget %d is below one sandbox's default memory %d (--sandbox-memory-budget)", s.MemoryBudget, boxMemory)
	}
	s.MaxSandboxes = max(s.MaxSandboxes, 1)
	if s.IdleTimeout <= 0 {
		s.IdleTimeout = 5 * time.Minute
	}
	if s.Linger <= 0 {
		s.Linger = 2 * time.Second
	}
	return nil
}

// hostMemory is the host's memory in bytes (4 GiB when unknown).
func hostMemory() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err == nil {
		var kb int64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			return kb << 10
		}
	}
	return 4 << 30
}

// Options configure a Pool.
type Options[K comparable, B Box[K]] struct {
	Settings
	// Create starts a box of key k; Destroy stops one. Destroy must be
	// idempotent.
	Create  func(ctx context.Context, k K) (B, error)
	Destroy func(b B)
	// Memory is the memory limit of a box of key k, counted against
	// MemoryBudget.
	Memory func(k K) int64
}

// ErrClosed is returned by Acquire once the pool is closed.
var ErrClosed = errors.New("sandbox pool is closed")

// Pool keeps warm boxes per key. It is safe for concurrent use.
type Pool[K comparable, B Box[K]] struct {
	o Options[K, B]

	mu       sync.Mutex // guards the fields below
	idle     map[K][]*entry[B]
	byBox    map[B]*entry[B]
	live     int        // boxes created or being created, not destroyed
	liveKey  map[K]int  // the same, per key
	memory   int64      // sum of their memory limits
	settling map[B]bool // boxes whose last run is settling
	waiting  map[K]int  // acquires waiting for one of them, per key
	changed  chan struct{}
	closed   bool
	settles  sync.WaitGroup
	destroys sync.WaitGroup
	created  atomic.Int64
	stop     context.CancelFunc
	janitor  sync.WaitGroup
}

type entry[B any] struct {
	box      B
	uses     int
	lastUsed time.Time
}

// New returns a pool and starts its janitor; Close stops both.
func New[K comparable, B Box[K]](o Options[K, B]) *Pool[K, B] {
	p := &Pool[K, B]{o: o, idle: map[K][]*entry[B]{}, byBox: map[B]*entry[B]{}, liveKey: map[K]int{},
		settling: map[B]bool{}, waiting: map[K]int{}, changed: make(chan struct{})}
	ctx, stop := context.WithCancel(context.Background())
	p.stop = stop
	p.janitor.Add(1)
	go func() { defer p.janitor.Done(); p.sweep(ctx) }()
	return p
}

func (p *Pool[K, B]) notify() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// Acquire returns an idle box of k (fresh=false) or a new one, for a run
// of handler with reuse key reuse. While no box of k is idle but more are
// settling than acquires wait for them, it waits for one rather than
// create another: a settle takes about a millisecond, a new box tens. A run
// with a reuse key is the exception while its key has fewer than
// reuseBoxes boxes: rather than take a box whose kept processes it would
// kill, or wait for a settling one that may hold such processes, it gets a
// box of its own, so that the handlers of a sequence (a mapper and its
// reducer, request after request) each keep their process.
func (p *Pool[K, B]) Acquire(ctx context.Context, k K, reuse, handler string) (b B, fresh bool, err error) {
	var zero B
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return zero, false, ErrClosed
		}
		own := reuse != "" && p.liveKey[k] < p.reuseBoxes() && p.roomLocked(k)
		for len(p.idle[k]) > 0 {
			l := p.idle[k]
			i := pick(l, reuse, handler)
			if own && l[i].box.HoldsOtherKey(reuse) {
				break
			}
			e := l[i]
			p.idle[k] = append(l[:i], l[i+1:]...)
			if e.box.Alive() {
				p.mu.Unlock()
				return e.box, false, nil
			}
			p.dropLocked(e)
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
				return zero, false, fmt.Errorf("waiting for a sandbox: %w", ctx.Err())
			}
			continue
		}
		if p.roomLocked(k) {
			p.live++
			p.liveKey[k]++
			p.memory += p.o.Memory(k)
			p.mu.Unlock()
			b, err := p.o.Create(ctx, k)
			p.mu.Lock()
			if err != nil {
				p.forgetLocked(k)
				p.notify()
				p.mu.Unlock()
				return zero, false, err
			}
			p.byBox[b] = &entry[B]{box: b}
			p.mu.Unlock()
			p.created.Add(1)
			return b, true, nil
		}
		if e := p.oldestIdleLocked(); e != nil {
			p.dropLocked(e)
			p.mu.Unlock()
			continue
		}
		if m := p.o.Memory(k); m > p.o.MemoryBudget {
			p.mu.Unlock()
			return zero, false, fmt.Errorf("memory limit %d exceeds the runner's sandbox memory budget %d", m, p.o.MemoryBudget)
		}
		wait := p.changed
		p.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return zero, false, fmt.Errorf("waiting for a sandbox: %w", ctx.Err())
		}
	}
}

// settlingLocked counts the boxes of k that are settling; with a reuse
// key, only those holding no kept processes of another key.
func (p *Pool[K, B]) settlingLocked(k K, reuse string) int {
	n := 0
	for b := range p.settling {
		if b.Key() == k && (reuse == "" || !b.HoldsOtherKey(reuse)) {
			n++
		}
	}
	return n
}

// roomLocked says whether a box of k can be created without stopping
// another.
func (p *Pool[K, B]) roomLocked(k K) bool {
	return p.live < p.o.MaxSandboxes && p.memory+p.o.Memory(k) <= p.o.MemoryBudget
}

// reuseBoxes is how many boxes a key may have so that runs with reuse keys
// get boxes of their own (see Acquire): the idle boxes a key keeps, and at
// least two, for a mapper and its reducer.
func (p *Pool[K, B]) reuseBoxes() int { return max(p.o.MaxIdle, 2) }

// pick chooses among idle boxes l (oldest first) the best for a run: the
// highest score, the most recently used among equals.
func pick[K comparable, B Box[K]](l []*entry[B], reuse, handler string) int {
	best, bestScore := len(l)-1, l[len(l)-1].box.Score(reuse, handler)
	for i := len(l) - 2; i >= 0; i-- {
		if s := l[i].box.Score(reuse, handler); s > bestScore {
			best, bestScore = i, s
		}
	}
	return best
}

// Settle runs fn (a run's clean-up, which says whether b may run again)
// in the background, then returns b to the idle boxes, or destroys it.
// Once the pool is closed it runs fn at once (Close dropped b already).
func (p *Pool[K, B]) Settle(b B, fn func() bool) {
	p.mu.Lock()
	if p.closed {
		// Close dropped b, and may be waiting for the settles already:
		// an Add now would race its Wait. Settle here; nothing is kept.
		p.mu.Unlock()
		fn()
		return
	}
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
func (p *Pool[K, B]) releaseLocked(b B, keep bool) {
	e, ok := p.byBox[b]
	if !ok {
		return // destroyed by Close while it ran
	}
	e.uses++
	e.lastUsed = time.Now()
	if !keep || p.closed || !b.Alive() || (p.o.MaxReuse > 0 && e.uses >= p.o.MaxReuse) || p.o.MaxIdle == 0 {
		p.dropLocked(e)
		return
	}
	p.idle[b.Key()] = append(p.idle[b.Key()], e)
	p.notify()
}

func (p *Pool[K, B]) forgetLocked(k K) {
	p.live--
	if p.liveKey[k]--; p.liveKey[k] == 0 {
		delete(p.liveKey, k)
	}
	p.memory -= p.o.Memory(k)
}

// dropLocked forgets e's box and destroys it in the background.
func (p *Pool[K, B]) dropLocked(e *entry[B]) {
	p.forgetLocked(e.box.Key())
	delete(p.byBox, e.box)
	p.notify()
	p.destroys.Add(1)
	go func() {
		defer p.destroys.Done()
		p.o.Destroy(e.box)
	}()
}

func (p *Pool[K, B]) oldestIdleLocked() *entry[B] {
	var old *entry[B]
	var ok K
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

// sweep stops boxes idle longer than IdleTimeout, and the idle boxes of a
// key beyond MaxIdle once idle longer than Linger, until ctx ends.
func (p *Pool[K, B]) sweep(ctx context.Context) {
	every := min(p.o.IdleTimeout, p.o.Linger) / 4
	every = min(max(every, 10*time.Millisecond), 10*time.Second)
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
			extra := len(l) - p.o.MaxIdle
			kept := l[:0]
			for i, e := range l {
				idle := time.Since(e.lastUsed)
				if idle > p.o.IdleTimeout || (i < extra && idle > p.o.Linger) || !e.box.Alive() {
					p.dropLocked(e)
				} else {
					kept = append(kept, e)
				}
			}
			p.idle[k] = kept
		}
		p.mu.Unlock()
	}
}

// Close destroys every box, those running an invocation too (which then
// fails), and waits for every settle and destroy. It is idempotent.
func (p *Pool[K, B]) Close() {
	p.mu.Lock()
	p.closed = true
	for k := range p.idle {
		delete(p.idle, k)
	}
	for _, e := range p.byBox {
		p.dropLocked(e)
	}
	p.mu.Unlock()
	p.stop()
	p.janitor.Wait()
	p.settles.Wait()
	p.destroys.Wait()
}

// Stats reports the live boxes, the sum of their memory limits and how
// many run no invocation (idle, or settling after one).
func (p *Pool[K, B]) Stats() (live int, memory int64, idle int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.idle {
		idle += len(l)
	}
	return p.live, p.memory, idle + len(p.settling)
}

// Created counts the boxes the pool has started.
func (p *Pool[K, B]) Created() int64 { return p.created.Load() }
