package runner

import (
	"slices"
	"testing"
)

// A runner holds one message per invocation: a second one for an
// invocation it holds is a duplicate; once released, it may hold it again.
func TestHoldingsRefuseAnInvocationHeldAlready(t *testing.T) {
	var h holdings
	if !h.hold("t1", "a") || !h.hold("t1", "b") || !h.hold("t2", "c") {
		t.Fatal("distinct invocations refused")
	}
	if h.hold("t1", "a") {
		t.Fatal("an invocation held twice")
	}
	got := h.snapshot()
	if !slices.Equal(got["t1"], []string{"a", "b"}) || !slices.Equal(got["t2"], []string{"c"}) {
		t.Fatalf("snapshot %v", got)
	}
	h.release("t1", "a")
	h.release("t2", "c")
	if !h.hold("t1", "a") {
		t.Fatal("a released invocation refused")
	}
	if got := h.snapshot(); len(got) != 1 || len(got["t1"]) != 2 {
		t.Fatalf("snapshot after release %v", got)
	}
}
