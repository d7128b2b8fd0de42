package runner

import (
	"maps"
	"slices"
	"sync"
)

// holdings are the invocations whose messages the runner is processing,
// by NSQ topic. The runner announces them in its registry entry, so the
// recovery runner can tell work in progress from work whose message was
// lost with an nsqd; and a second message for an invocation held here is
// a duplicate the runner drops (the held one commits, or requeues itself).
// It is safe for concurrent use.
type holdings struct {
	mu      sync.Mutex // guards byTopic
	byTopic map[string]map[string]bool
}

// hold records that the runner processes invocation id from topic; false
// when it already does.
func (h *holdings) hold(topic, id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.byTopic == nil {
		h.byTopic = map[string]map[string]bool{}
	}
	ids := h.byTopic[topic]
	if ids == nil {
		ids = map[string]bool{}
		h.byTopic[topic] = ids
	}
	if ids[id] {
		return false
	}
	ids[id] = true
	return true
}

// release forgets what hold recorded.
func (h *holdings) release(topic, id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.byTopic[topic], id)
	if len(h.byTopic[topic]) == 0 {
		delete(h.byTopic, topic)
	}
}

// snapshot returns the held invocation ids by topic, sorted.
func (h *holdings) snapshot() map[string][]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string][]string, len(h.byTopic))
	for topic, ids := range h.byTopic {
		out[topic] = slices.Sorted(maps.Keys(ids))
	}
	return out
}
