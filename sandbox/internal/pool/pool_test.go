package pool

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type testBox struct {
	key  string
	dead atomic.Bool
}

func (b *testBox) Key() string                     { return b.key }
func (b *testBox) Alive() bool                     { return !b.dead.Load() }
func (b *testBox) Score(reuse, handler string) int { return 0 }
func (b *testBox) HoldsOtherKey(reuse string) bool { return false }

func newTestPool() *Pool[string, *testBox] {
	return New(Options[string, *testBox]{
		Settings: Settings{MaxSandboxes: 8, MaxIdle: 2, IdleTimeout: time.Minute},
		Create:   func(ctx context.Context, k string) (*testBox, error) { return &testBox{key: k}, nil },
		Destroy:  func(b *testBox) { b.dead.Store(true) },
		Memory:   func(string) int64 { return 0 },
	})
}

// Runs that end while the pool closes settle without racing Close's wait
// for them (go test -race): a settle after Close runs at once, and its box
// is not kept.
func TestSettleDuringAndAfterCloseDoesNotRaceIt(t *testing.T) {
	for range 50 {
		p := newTestPool()
		var boxes []*testBox
		for range 4 {
			b, _, err := p.Acquire(context.Background(), "k", "", "")
			if err != nil {
				t.Fatal(err)
			}
			boxes = append(boxes, b)
		}
		var settled atomic.Int32
		var wg sync.WaitGroup
		for _, b := range boxes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p.Settle(b, func() bool { settled.Add(1); return true })
			}()
		}
		p.Close()
		wg.Wait()
		if n := settled.Load(); n != 4 {
			t.Fatalf("%d of 4 runs settled", n)
		}
		for _, b := range boxes {
			if b.Alive() {
				t.Fatal("a box outlived Close")
			}
		}
		if live, _, _ := p.Stats(); live != 0 {
			t.Fatalf("%d boxes live after Close", live)
		}
	}
}
