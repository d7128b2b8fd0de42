package kvmodel_test

import (
	"context"
	"testing"

	"github.com/jobx/jobx/kvmodel"
)

func TestReadWorkReadsWhatAMessageNames(t *testing.T) {
	st, _ := newStore(t)
	ctx := context.Background()

	t.Run("a map invocation comes with its request and its arguments", func(t *testing.T) {
		req, root := started(t, st)
		w, err := st.ReadWork(ctx, "wf", req.ID, root.ID, "")
		if err != nil {
			t.Fatal(err)
		}
		if w.Request == nil || w.Request.Revision() != req.Revision() || w.Invocation == nil || w.Invocation.Revision() != root.Revision() {
			t.Fatalf("read %+v", w)
		}
		if string(w.Data) != `["k",1]`+"\n" || w.Map != nil {
			t.Fatalf("data %q, map %v", w.Data, w.Map)
		}
	})

	t.Run("a reduce invocation comes with the map invocation it reduces and its combined output", func(t *testing.T) {
		req, root := started(t, st)
		red := kvmodel.NewReduceInvocation(root)
		if err := st.RecordLeaf(ctx, kvmodel.Seen{Invocation: root, Request: req}, done(root), []byte(`["k",[1]]`+"\n"), red); err != nil {
			t.Fatal(err)
		}
		w, err := st.ReadWork(ctx, "wf", req.ID, red.ID, root.ID)
		if err != nil {
			t.Fatal(err)
		}
		if w.Invocation == nil || w.Invocation.ID != red.ID || w.Map == nil || w.Map.State != kvmodel.StateDone {
			t.Fatalf("read %+v", w)
		}
		if string(w.Data) != `["k",[1]]`+"\n" {
			t.Fatalf("data %q", w.Data)
		}
	})

	t.Run("what does not exist is nil", func(t *testing.T) {
		req, _ := started(t, st)
		w, err := st.ReadWork(ctx, "wf", req.ID, kvmodel.NewID(), kvmodel.NewID())
		if err != nil {
			t.Fatal(err)
		}
		if w.Request == nil || w.Invocation != nil || w.Map != nil || w.Data != nil {
			t.Fatalf("read %+v", w)
		}
		if w, err = st.ReadWork(ctx, "wf", kvmodel.NewID(), kvmodel.NewID(), ""); err != nil || w.Request != nil {
			t.Fatalf("a request that does not exist: %+v, %v", w, err)
		}
	})
}
