package integration

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/jobx/jobx/internal/testenv"
	"github.com/jobx/jobx/runner"
)

// recorder is a slog handler that keeps every record's message and
// attributes (those given to With included) besides passing it on.
type recorder struct {
	next  slog.Handler
	attrs []slog.Attr
	mu    *sync.Mutex
	recs  *[]map[string]string
}

func newRecorder(next slog.Handler) *recorder {
	return &recorder{next: next, mu: &sync.Mutex{}, recs: &[]map[string]string{}}
}

func (h *recorder) Enabled(ctx context.Context, l slog.Level) bool { return true }

func (h *recorder) Handle(ctx context.Context, r slog.Record) error {
	m := map[string]string{"msg": r.Message, "level": r.Level.String()}
	for _, a := range h.attrs {
		m[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.String(); return true })
	h.mu.Lock()
	*h.recs = append(*h.recs, m)
	h.mu.Unlock()
	return h.next.Handle(ctx, r)
}

func (h *recorder) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr{}, h.attrs...), as...)
	c.next = h.next.WithAttrs(as)
	return &c
}

func (h *recorder) WithGroup(name string) slog.Handler { return h }

// find returns the records with msg.
func (h *recorder) find(msg string) []map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []map[string]string
	for _, m := range *h.recs {
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// A reducer that fails after its leaf mapper, on the runner that ran the
// mapper (the fused path), is logged as a reduction: with its own
// invocation id and direction=reduce, not the map message's.
func TestAFailingReducerIsLoggedAsAReduction(t *testing.T) {
	c := startCluster(t)
	rec := newRecorder(testenv.Logger(t).Handler())
	c.addRunner(func(o *runner.Options) { o.Log = slog.New(rec) })
	c.workflow("wf")
	c.handler("wf", "map_yield", "map/yield.py", yieldPy)
	c.handler("wf", "reduce_boom", "reduce/boom.py", `"""
Fail.

**
handler_type: reducer
"""
raise ValueError("reducer boom")
`)
	c.step("wf", "s", "map_yield", "", "reduce_boom")
	c.job("wf", "j", "s")
	r := c.post("wf", "j", `{"arguments":{"n":3}}`, "")
	e, _ := r.body["error"].(map[string]any)
	if r.status != 500 || e == nil || e["handler"] != "reduce_boom" {
		t.Fatalf("want the reducer's failure, got %d: %s", r.status, r.raw)
	}
	var failed []map[string]string
	for _, m := range rec.find("invocation failed") {
		if m["handler"] == "reduce_boom" {
			failed = append(failed, m)
		}
	}
	if len(failed) != 1 {
		t.Fatalf("want one \"invocation failed\" record of reduce_boom, got %v", failed)
	}
	if got := failed[0]; got["direction"] != "reduce" || got["invocation_id"] != e["invocation_id"] {
		t.Fatalf("the reducer's failure is logged with direction=%s invocation_id=%s, want reduce and %v", got["direction"], got["invocation_id"], e["invocation_id"])
	}
}

// What a handler that succeeds logs reaches the runner's log at its own
// level (LOG.warning at WARN, PRINT at INFO, ...), with the request and
// invocation ids.
func TestHandlerLogLinesKeepTheirLevel(t *testing.T) {
	c := startCluster(t)
	rec := newRecorder(testenv.Logger(t).Handler())
	c.addRunner(func(o *runner.Options) { o.Log = slog.New(rec) })
	c.workflow("wf")
	c.handler("wf", "map_chatty", "map/chatty.py", `"""
Log at every level, then succeed.

**
handler_type: mapper
"""
LOG.debug("a debug line")
LOG.info("an info line")
LOG.warning("a warning line")
LOG.error("an error line")
PRINT("a printed line")
yield MrConfigureToReturn()
yield ('k', 1)
`)
	c.handler("wf", "reduce_sum", "reduce/sum.py", sumPy)
	c.step("wf", "s", "map_chatty", "", "reduce_sum")
	c.job("wf", "j", "s")
	r := c.post("wf", "j", `{"arguments":{}}`, "")
	r.pairs(t)
	id := r.header.Get("X-MR-REQUEST-ID")
	want := map[string]string{"a debug line": "DEBUG", "an info line": "INFO", "a warning line": "WARN", "an error line": "ERROR", "a printed line": "INFO"}
	got := map[string]string{}
	for _, m := range rec.find("handler log") {
		for text := range want {
			if strings.HasSuffix(m["line"], text) {
				got[text] = m["level"]
				if m["request_id"] != id || m["invocation_id"] == "" || m["handler"] != "map_chatty" {
					t.Errorf("%q is logged without its request, invocation or handler: %v", text, m)
				}
			}
		}
	}
	for text, level := range want {
		if got[text] != level {
			t.Errorf("%q logged at %q, want %s", text, got[text], level)
		}
	}
}
