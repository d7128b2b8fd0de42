package recovery

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/jobx/jobx/internal/embedded"
	"github.com/jobx/jobx/internal/testenv"
	"github.com/nsqio/go-nsq"
)

// The queue watch counts what each topic queues, and reports the end of an
// nsqd's life: a restart (even one between two looks, within the same
// second: its counts went back), or two looks in a row without an answer
// (also from the first look on); an nsqd that comes back after that starts
// a new life, not a second loss.
func TestQueueWatchSeesQueuesAndTheEndOfAnNSQDsLife(t *testing.T) {
	dir := t.TempDir()
	addrs := testenv.FreeAddrs(t, 2)
	start := func() *embedded.NSQD {
		n, err := embedded.StartNSQD(context.Background(), embedded.NSQDOptions{Dir: dir, TCPAddr: addrs[0], HTTPAddr: addrs[1]})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	n := start()
	defer func() { n.Close() }()
	w := newQueueWatch([]string{addrs[1]}, nil, "jobx")
	ctx := context.Background()
	look := func() (queueView, []string) {
		t.Helper()
		return w.look(ctx)
	}
	if v, ended := look(); len(ended) > 0 || !v.complete {
		t.Fatalf("first look: ended %v, complete %v", ended, v.complete)
	}

	p, err := nsq.NewProducer(addrs[0], nsq.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	for range 3 {
		if err := p.Publish("mr.wf.map.general", []byte("m")); err != nil {
			t.Fatal(err)
		}
	}
	if v, _ := look(); v.waiting["mr.wf.map.general"] != 3 {
		t.Fatalf("want 3 messages waiting, got %v", v.waiting)
	}

	// Restarted between two looks: the topic's count went back.
	n.Close()
	n = start()
	if _, ended := look(); !slices.ContainsFunc(ended, func(s string) bool { return strings.Contains(s, "restarted") }) {
		t.Fatalf("a restart went unnoticed: %v", ended)
	}
	if _, ended := look(); len(ended) > 0 {
		t.Fatalf("one restart reported twice: %v", ended)
	}

	// Gone: the first look without an answer makes the view incomplete,
	// the second ends the life; its return is a new life.
	n.Close()
	if v, ended := look(); len(ended) > 0 || v.complete {
		t.Fatalf("one missed look: ended %v, complete %v", ended, v.complete)
	}
	if v, ended := look(); len(ended) != 1 || !strings.Contains(ended[0], "does not answer") || !v.complete {
		t.Fatalf("two missed looks: ended %v, complete %v", ended, v.complete)
	}
	if _, ended := look(); len(ended) > 0 {
		t.Fatalf("a dead nsqd reported again: %v", ended)
	}
	n = start()
	if _, ended := look(); len(ended) > 0 {
		t.Fatalf("a new nsqd reported as a loss: %v", ended)
	}

	// One configured but dead before the first look may have taken
	// messages published to it (by a gateway) with it.
	gone := newQueueWatch(testenv.FreeAddrs(t, 1), nil, "jobx")
	gone.look(ctx)
	if _, ended := gone.look(ctx); len(ended) != 1 {
		t.Fatalf("an nsqd dead before the first look: ended %v", ended)
	}
}
