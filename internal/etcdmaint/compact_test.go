package etcdmaint

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jobx/jobx/internal/testenv"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
)

func TestPickTakesTheNewestSampleAtLeastRetentionOld(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	for _, tc := range []struct {
		name    string
		samples []sample
		cutoff  time.Time
		want    int64 // 0: none
		left    int
	}{
		{"no sample picks nothing", nil, at(10), 0, 0},
		{"samples all newer than the cutoff pick nothing", []sample{{at(5), 50}, {at(6), 60}}, at(4), 0, 2},
		{"a sample exactly at the cutoff is old enough", []sample{{at(5), 50}, {at(6), 60}}, at(5), 50, 2},
		{"the newest old enough wins and the older ones go", []sample{{at(1), 10}, {at(2), 20}, {at(3), 30}, {at(9), 90}}, at(4), 30, 2},
		{"every sample old enough keeps only the newest", []sample{{at(1), 10}, {at(2), 20}}, at(8), 20, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := append([]sample(nil), tc.samples...)
			got, ok := pick(&s, tc.cutoff)
			if ok != (tc.want != 0) || got.rev != tc.want {
				t.Errorf("pick = %d, %v; want %d", got.rev, ok, tc.want)
			}
			if len(s) != tc.left {
				t.Errorf("%d samples left, want %d", len(s), tc.left)
			}
		})
	}
}

func TestNewCompactorRefusesNegativeDurationsAndPicksDefaults(t *testing.T) {
	_, cli := testenv.Etcd(t)
	if _, err := NewCompactor(cli, CompactOptions{Retention: -time.Second}); err == nil {
		t.Error("a negative retention was accepted")
	}
	for _, tc := range []struct{ retention, want time.Duration }{
		{DefaultCompactRetention, time.Minute},
		{time.Hour, time.Minute},
		{2 * time.Second, time.Second},
		{30 * time.Second, 6 * time.Second},
	} {
		c, err := NewCompactor(cli, CompactOptions{Retention: tc.retention})
		if err != nil {
			t.Fatal(err)
		}
		if c.o.Interval != tc.want {
			t.Errorf("retention %s: interval %s, want %s", tc.retention, c.o.Interval, tc.want)
		}
	}
}

func TestRetentionZeroDisablesCompaction(t *testing.T) {
	_, cli := testenv.Etcd(t)
	c, err := NewCompactor(cli, CompactOptions{Log: testenv.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	returnsAtOnce(t, "Run with retention 0", c.Run)
	resp, err := cli.Get(t.Context(), CompactElection, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count != 0 {
		t.Fatalf("a disabled compactor campaigned: %d keys, %v", resp.Count, err)
	}
}

// write is one put of the writer: its revision and a time before it was
// sent.
type write struct {
	issued time.Time
	rev    int64
}

// writer puts a key every few milliseconds until the test ends and
// remembers each put.
type writer struct {
	mu     sync.Mutex
	writes []write
}

func startWriter(t *testing.T, cli *clientv3.Client) *writer {
	w := &writer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			issued := time.Now()
			resp, err := cli.Put(ctx, "/test/key", issued.String())
			if err == nil {
				w.mu.Lock()
				w.writes = append(w.writes, write{issued, resp.Header.Revision})
				w.mu.Unlock()
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return w
}

// firstAfter returns the revision of the first put sent after t (0: none).
func (w *writer) firstAfter(t time.Time) int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, wr := range w.writes {
		if wr.issued.After(t) {
			return wr.rev
		}
	}
	return 0
}

// lastBefore returns the revision of the last put that had returned by t.
func (w *writer) lastBefore(t time.Time) int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	var rev int64
	for _, wr := range w.writes {
		if wr.issued.Before(t) {
			rev = wr.rev
		}
	}
	return rev
}

func runCompactor(t *testing.T, cli *clientv3.Client, o CompactOptions) (c *Compactor, stop func()) {
	t.Helper()
	if o.Log == nil {
		o.Log = testenv.Logger(t).With("compactor", o.ID)
	}
	c, err := NewCompactor(cli, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return c, stop
}

// returnsAtOnce fails the test unless run (a loop that is switched off)
// returns nil within 5 s.
func returnsAtOnce(t *testing.T, what string, run func(context.Context) error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- run(t.Context()) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal(what + " did not return")
	}
}

// waitFor polls cond until it holds, failing the test after within.
func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// assertCompactedTo checks that etcd's history before rev is gone. (A
// compaction in flight when its compactor stopped may have gone further.)
func assertCompactedTo(t *testing.T, cli *clientv3.Client, rev int64) {
	t.Helper()
	if _, err := cli.Get(t.Context(), "/test/key", clientv3.WithRev(rev-1)); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Errorf("read at revision %d (before the compaction to %d): %v, want ErrCompacted", rev-1, rev, err)
	}
}

// The compactor removes only history that is at least Retention old: when
// a compaction to revision L is seen at time T, every put sent after
// T - Retention has a revision above L. And it does compact: a revision
// written just now is compacted within Retention and a few Intervals.
func TestCompactorCompactsOnlyRevisionsOlderThanRetention(t *testing.T) {
	_, cli := testenv.Etcd(t)
	w := startWriter(t, cli)
	const retention = 600 * time.Millisecond
	c, stop := runCompactor(t, cli, CompactOptions{Retention: retention, Interval: 50 * time.Millisecond, ID: "only", TTL: 2 * time.Second})
	start := time.Now()
	var seen []int64
	for len(seen) < 5 {
		if time.Since(start) > 20*time.Second {
			t.Fatalf("%d compactions in 20s: %v", len(seen), seen)
		}
		l := c.LastCompacted()
		now := time.Now()
		if l != 0 && (len(seen) == 0 || l != seen[len(seen)-1]) {
			if len(seen) == 0 && now.Sub(start) < retention {
				t.Fatalf("first compaction %s after the start, within the retention of %s", now.Sub(start), retention)
			}
			if first := w.firstAfter(now.Add(-retention)); first != 0 && first <= l {
				t.Fatalf("compacted to revision %d, but revision %d was written less than %s before", l, first, retention)
			}
			seen = append(seen, l)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !c.Leading() {
		t.Error("the only compactor does not lead")
	}
	target := w.lastBefore(time.Now())
	waitFor(t, "a revision written just now to be compacted", retention+5*time.Second, func() bool { return c.LastCompacted() >= target })
	stop()
	assertCompactedTo(t, cli, c.LastCompacted())
	t.Logf("compacted to revisions %v", seen)
}

// holdRole takes the compactor role for the test; resign gives it up.
func holdRole(t *testing.T, cli *clientv3.Client) (resign func()) {
	t.Helper()
	sess, err := concurrency.NewSession(cli, concurrency.WithTTL(5))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	el := concurrency.NewElection(sess, CompactElection)
	if err := el.Campaign(t.Context(), "test"); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := el.Resign(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
}

// A compactor that is not elected leaves etcd's history alone, however old;
// once the role is free it takes it and compacts.
func TestCompactorCompactsOnlyWhenElected(t *testing.T) {
	_, cli := testenv.Etcd(t)
	resign := holdRole(t, cli)
	w := startWriter(t, cli)
	c, stop := runCompactor(t, cli, CompactOptions{Retention: 100 * time.Millisecond, Interval: 20 * time.Millisecond, ID: "waiting", TTL: 2 * time.Second})
	time.Sleep(time.Second)
	if c.Leading() || c.Compactions() != 0 || c.LastCompacted() != 0 {
		t.Fatalf("compactor without the role: leading %v, %d compactions", c.Leading(), c.Compactions())
	}
	if _, err := cli.Get(t.Context(), "/test/key", clientv3.WithRev(w.firstAfter(time.Time{}))); err != nil {
		t.Fatalf("history was compacted while the role was held elsewhere: %v", err)
	}
	resign()
	waitFor(t, "the compactor to take the free role and compact", 10*time.Second, func() bool { return c.Compactions() > 0 })
	stop()
	assertCompactedTo(t, cli, c.LastCompacted())
}

// Two compactors of one etcd elect one: only it compacts, never both lead
// at once, and when it stops the other takes over at once (the stopped one
// revokes its lease) and compacts.
func TestTwoCompactorsElectOne(t *testing.T) {
	endpoint, cli := testenv.Etcd(t)
	cli2, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli2.Close() })
	startWriter(t, cli)
	o := CompactOptions{Retention: 100 * time.Millisecond, Interval: 20 * time.Millisecond, TTL: 5 * time.Second}
	oa, ob := o, o
	oa.ID, ob.ID = "a", "b"
	a, stopA := runCompactor(t, cli, oa)
	b, stopB := runCompactor(t, cli2, ob)

	waitFor(t, "one compactor to compact", 10*time.Second, func() bool { return a.Compactions()+b.Compactions() >= 3 })
	leader, other, stop := a, b, stopA
	if b.Compactions() > 0 {
		leader, other, stop = b, a, stopB
	}
	for range 50 {
		if a.Leading() && b.Leading() {
			t.Fatal("both compactors lead")
		}
		time.Sleep(2 * time.Millisecond)
	}
	if !leader.Leading() || other.Leading() || other.Compactions() != 0 {
		t.Fatalf("leader %s: leading %v; other %s: leading %v, %d compactions",
			leader.o.ID, leader.Leading(), other.o.ID, other.Leading(), other.Compactions())
	}

	stopped := time.Now()
	stop()
	if leader.Leading() {
		t.Error("a stopped compactor still leads")
	}
	// Well within the session TTL of 5 s: the role was handed over, not
	// left to expire.
	waitFor(t, "the other compactor to take over", 3*time.Second, func() bool { return other.Leading() })
	t.Logf("the role changed hands %s after the leader stopped", time.Since(stopped).Round(time.Millisecond))
	waitFor(t, "the new leader to compact", 5*time.Second, func() bool { return other.Compactions() > 0 })
	if other.LastCompacted() <= leader.LastCompacted() {
		t.Errorf("the new leader compacted to %d, not past the old one's %d", other.LastCompacted(), leader.LastCompacted())
	}
	stopA()
	stopB()
	assertCompactedTo(t, cli, other.LastCompacted())
}
