package queue_test

import (
	"log/slog"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/jobx/jobx/internal/embedded"
	"github.com/jobx/jobx/internal/queue"
)

// nsqCluster is an nsqlookupd and two nsqd registered with it, in-process
// on loopback.
type nsqCluster struct {
	lookupd *embedded.Lookupd
	nsqd    []*embedded.NSQD
}

func startNSQCluster(t *testing.T) *nsqCluster {
	t.Helper()
	l, err := embedded.StartLookupd(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	c := &nsqCluster{lookupd: l}
	for range 2 {
		n, err := embedded.StartNSQD(t.Context(), embedded.NSQDOptions{Dir: t.TempDir(), TCPAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Lookupds: []string{l.TCPAddr}})
		if err != nil {
			t.Fatal(err)
		}
		c.nsqd = append(c.nsqd, n)
	}
	t.Cleanup(func() {
		for _, n := range c.nsqd {
			n.Close()
		}
	})
	// nsqd registers with nsqlookupd asynchronously.
	waitFor(t, "both nsqd registered", func() bool { return len(c.publisher(t).Targets()) == 2 })
	return c
}

func (c *nsqCluster) publisher(t *testing.T, static ...string) *queue.Publisher {
	t.Helper()
	p, err := queue.NewPublisherWith(queue.PublisherOptions{NSQDs: static, Lookupds: []string{c.lookupd.HTTPAddr}, Refresh: 50 * time.Millisecond, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestPublisherSpreadsOverTheNSQDThatLookupdLists(t *testing.T) {
	c := startNSQCluster(t)
	// The static address is dead: only discovery can make this work.
	p := c.publisher(t, deadAddr(t))
	want := []string{c.nsqd[0].TCPAddr, c.nsqd[1].TCPAddr}
	slices.Sort(want)
	if got := p.Targets(); !slices.Equal(got, want) {
		t.Fatalf("targets %v, want the two nsqd %v", got, want)
	}
	for range 10 {
		if err := p.Publish("spread", []byte("m")); err != nil {
			t.Fatal(err)
		}
	}
	d0, d1 := c.nsqd[0].Depth("spread"), c.nsqd[1].Depth("spread")
	if d0+d1 != 10 || d0 == 0 || d1 == 0 {
		t.Fatalf("depths %d and %d: want 10 messages spread over both nsqd", d0, d1)
	}
}

func TestPublisherFallsOverWhenAnNSQDStops(t *testing.T) {
	c := startNSQCluster(t)
	p := c.publisher(t)
	c.nsqd[0].Close()
	// An in-process nsqd that exits keeps its nsqlookupd connection (a
	// process that exits closes it, and nsqlookupd forgets it at once), so
	// here nsqlookupd goes on listing it: publishing must fall over to the
	// live one.
	for range 10 {
		if err := p.Publish("fallover", []byte("m")); err != nil {
			t.Fatalf("publish with one nsqd stopped: %v", err)
		}
	}
	if d := c.nsqd[1].Depth("fallover"); d != 10 {
		t.Fatalf("the live nsqd holds %d messages, want 10", d)
	}
}

func TestPublisherUsesStaticNSQDWhileLookupdListsNone(t *testing.T) {
	l, err := embedded.StartLookupd(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	n, err := embedded.StartNSQD(t.Context(), embedded.NSQDOptions{Dir: t.TempDir(), TCPAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	p, err := queue.NewPublisherWith(queue.PublisherOptions{NSQDs: []string{n.TCPAddr}, Lookupds: []string{l.HTTPAddr}, Refresh: time.Hour, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	if got := p.Targets(); !slices.Equal(got, []string{n.TCPAddr}) {
		t.Fatalf("targets %v, want the static nsqd", got)
	}
	if err := p.Publish("static", []byte("m")); err != nil {
		t.Fatal(err)
	}
	if d := n.Depth("static"); d != 1 {
		t.Fatalf("depth %d, want 1", d)
	}
}

func TestPublisherUsesStaticNSQDWhileLookupdIsUnreachable(t *testing.T) {
	n, err := embedded.StartNSQD(t.Context(), embedded.NSQDOptions{Dir: t.TempDir(), TCPAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	p, err := queue.NewPublisherWith(queue.PublisherOptions{NSQDs: []string{n.TCPAddr}, Lookupds: []string{deadAddr(t)}, Refresh: time.Hour, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	if err := p.Publish("static", []byte("m")); err != nil {
		t.Fatal(err)
	}
	if d := n.Depth("static"); d != 1 {
		t.Fatalf("depth %d, want 1", d)
	}
}

func TestPublisherOptionsAreValidated(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    queue.PublisherOptions
	}{
		{"no nsqd and no nsqlookupd", queue.PublisherOptions{}},
		{"an nsqd address without a port", queue.PublisherOptions{NSQDs: []string{"nsqd1"}}},
		{"an nsqlookupd URL", queue.PublisherOptions{Lookupds: []string{"http://lookupd:4161/"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if p, err := queue.NewPublisherWith(tc.o); err == nil {
				p.Close()
				t.Fatal("accepted")
			}
		})
	}
}

var quiet = slog.New(slog.DiscardHandler)

func TestPublisherTriesStaticNSQDWhenEveryListedOneFails(t *testing.T) {
	l, err := embedded.StartLookupd(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	listed, err := embedded.StartNSQD(t.Context(), embedded.NSQDOptions{Dir: t.TempDir(), TCPAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Lookupds: []string{l.TCPAddr}})
	if err != nil {
		t.Fatal(err)
	}
	static, err := embedded.StartNSQD(t.Context(), embedded.NSQDOptions{Dir: t.TempDir(), TCPAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(static.Close)
	p, err := queue.NewPublisherWith(queue.PublisherOptions{NSQDs: []string{static.TCPAddr}, Lookupds: []string{l.HTTPAddr}, Refresh: 50 * time.Millisecond, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	waitFor(t, "the listed nsqd is discovered", func() bool { return slices.Equal(p.Targets(), []string{listed.TCPAddr}) })
	// Stopped in-process, it stays listed (see above): every listed nsqd fails.
	listed.Close()
	if err := p.Publish("last-resort", []byte("m")); err != nil {
		t.Fatal(err)
	}
	if d := static.Depth("last-resort"); d != 1 {
		t.Fatalf("the static nsqd holds %d messages, want 1", d)
	}
}
