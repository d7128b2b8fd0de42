package containerd

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// errPoolClosed means the sandbox is closing.
var errPoolClosed = errors.New("containerd sandbox is closed")

// pool keeps warm boxes per key. It bounds the live boxes (MaxSandboxes)
// and the sum of their memory limits (MemoryBudget): when full, it stops an
// idle box of another key, else waits for one to be released.
type pool struct {
	s *Sandbox

	mu     sync.Mutex // guards everything below
	cond   *sync.Cond
	idle   map[key][]*box
	live   int
	mem    int64
	closed bool
}

func newPool(s *Sandbox) *pool {
	p := &pool{s: s, idle: map[key][]*box{}}
	p.cond = sync.NewCond(&p.mu)
	return p
}

// acquire returns a box for k: a warm one when idle (fresh false), else a
// new one.
func (p *pool) acquire(ctx context.Context, k key) (*box, bool, error) {
	stop := context.AfterFunc(ctx, func() {
		p.mu.Lock()
		p.cond.Broadcast()
		p.mu.Unlock()
	})
	defer stop()
	p.mu.Lock()
	for {
		if p.closed {
			p.mu.Unlock()
			return nil, false, errPoolClosed
		}
		if err := ctx.Err(); err != nil {
			p.mu.Unlock()
			return nil, false, err
		}
		if list := p.idle[k]; len(list) > 0 {
			b := list[len(list)-1]
			p.idle[k] = list[:len(list)-1]
			if b.alive() {
				p.mu.Unlock()
				return b, false, nil
			}
			p.drop(b)
			continue
		}
		if p.live < p.s.opts.MaxSandboxes && p.mem+k.memory <= p.s.opts.MemoryBudget {
			p.live++
			p.mem += k.memory
			p.mu.Unlock()
			b, err := p.s.create(ctx, k)
			if err != nil {
				p.mu.Lock()
				p.live--
				p.mem -= k.memory
				p.cond.Broadcast()
				p.mu.Unlock()
				return nil, false, fmt.Errorf("start sandbox %s: %w", k, err)
			}
			return b, true, nil
		}
		if k.memory > p.s.opts.MemoryBudget {
			p.mu.Unlock()
			return nil, false, fmt.Errorf("sandbox %s: its memory limit exceeds the runner's memory budget (%d bytes)", k, p.s.opts.MemoryBudget)
		}
		if victim := p.oldestIdle(); victim != nil {
			p.drop(victim)
			continue
		}
		p.cond.Wait()
	}
}

// release returns b after an invocation; keep says it is clean for reuse.
func (p *pool) release(b *box, keep bool) {
	b.uses++
	b.lastUsed = time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	reuse := keep && !p.closed && b.alive() &&
		(p.s.opts.MaxReuse == 0 || b.uses < p.s.opts.MaxReuse) && len(p.idle[b.key]) < p.s.opts.MaxIdle
	if reuse {
		p.idle[b.key] = append(p.idle[b.key], b)
	} else {
		p.drop(b)
	}
	p.cond.Broadcast()
}

// drop forgets b and destroys it in the background; p.mu must be held.
func (p *pool) drop(b *box) {
	p.live--
	p.mem -= b.key.memory
	go p.s.destroy(b)
}

// oldestIdle removes and returns the idle box unused the longest; p.mu
// must be held.
func (p *pool) oldestIdle() *box {
	var oldest *box
	var at key
	for k, list := range p.idle {
		for _, b := range list {
			if oldest == nil || b.lastUsed.Before(oldest.lastUsed) {
				oldest, at = b, k
			}
		}
	}
	if oldest != nil {
		list := p.idle[at]
		for i, b := range list {
			if b == oldest {
				p.idle[at] = append(list[:i:i], list[i+1:]...)
				break
			}
		}
	}
	return oldest
}

// janitor stops boxes idle longer than IdleTimeout, and dead ones.
func (p *pool) janitor(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p.mu.Lock()
		for k, list := range p.idle {
			kept := list[:0]
			for _, b := range list {
				if !b.alive() || (p.s.opts.IdleTimeout > 0 && time.Since(b.lastUsed) > p.s.opts.IdleTimeout) {
					p.drop(b)
				} else {
					kept = append(kept, b)
				}
			}
			p.idle[k] = kept
		}
		p.cond.Broadcast()
		p.mu.Unlock()
	}
}

// close stops taking boxes and destroys every box, idle or busy (a busy
// box's invocation then fails).
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	p.idle = map[key][]*box{}
	p.cond.Broadcast()
	p.mu.Unlock()
	p.s.boxMu.Lock()
	boxes := make([]*box, 0, len(p.s.byID))
	for _, b := range p.s.byID {
		boxes = append(boxes, b)
	}
	p.s.boxMu.Unlock()
	var wg sync.WaitGroup
	for _, b := range boxes {
		wg.Add(1)
		go func() { defer wg.Done(); p.s.destroy(b) }()
	}
	wg.Wait()
}
