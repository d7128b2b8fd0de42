package gateway

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jobx/jobx/internal/testenv"
	"github.com/jobx/jobx/kvmodel"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// rereads counts the gateway's "reading the request again" log lines and
// passes every record on to next.
type rereads struct {
	slog.Handler
	n    *atomic.Int32
	seen chan struct{} // gets a value per re-read
}

func (h rereads) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "blocking wait behind a compaction of etcd's history; reading the request again" {
		h.n.Add(1)
		select {
		case h.seen <- struct{}{}:
		default:
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h rereads) WithAttrs(as []slog.Attr) slog.Handler {
	return rereads{h.Handler.WithAttrs(as), h.n, h.seen}
}

func (h rereads) WithGroup(name string) slog.Handler {
	return rereads{h.Handler.WithGroup(name), h.n, h.seen}
}

// compactAll writes a key twice and compacts etcd's history to the
// current revision, so every watch that resumes from before it gets
// ErrCompacted.
func compactAll(t *testing.T, cli *clientv3.Client) int64 {
	t.Helper()
	ctx := t.Context()
	var rev int64
	for range 2 {
		resp, err := cli.Put(ctx, "/test/filler", "x")
		if err != nil {
			t.Fatal(err)
		}
		rev = resp.Header.Revision
	}
	start := time.Now()
	if _, err := cli.Compact(ctx, rev, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	t.Logf("compacted etcd's history to revision %d in %s", rev, time.Since(start).Round(time.Microsecond))
	return rev
}

// A blocking wait whose watch resumes past a compaction of etcd's history
// (the gateway lost its etcd connection meanwhile) reads the request again
// and still gets its end: when the request ended before the compaction
// (the read finds it done) and when it ends after the read (the watch
// resumed from the read's revision sees it).
func TestBlockingWaitSurvivesACompaction(t *testing.T) {
	for _, tc := range []struct {
		name       string
		endDuring  bool // the request ends while the gateway is cut off
		finalState string
	}{
		{"a request that ended before the compaction is read done", true, kvmodel.StateDone},
		{"a request that ends after the read is seen by the resumed watch", false, kvmodel.StateFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			endpoint, cli := testenv.Etcd(t)
			relay, gwCli := testenv.EtcdThrough(t, endpoint)
			n := &atomic.Int32{}
			seen := make(chan struct{}, 1)
			log := slog.New(rereads{testenv.Logger(t).Handler(), n, seen})
			g := &Gateway{log: log, store: kvmodel.NewStore(gwCli)}
			st := kvmodel.NewStore(cli)

			req := &kvmodel.Request{ID: kvmodel.NewID(), WorkflowName: "wf", InvocationID: kvmodel.NewID(), IsBlocking: true, State: kvmodel.StatePending}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			watch := gwCli.Watch(clientv3.WithRequireLeader(ctx), kvmodel.Key(req), clientv3.WithCreatedNotify())
			if wr := <-watch; !wr.Created {
				t.Fatalf("watch not created: %v", wr.Err())
			}
			if err := st.Create(ctx, req); err != nil {
				t.Fatal(err)
			}
			type result struct {
				req *kvmodel.Request
				err error
			}
			res := make(chan result, 1)
			go func() {
				r, err := g.waitDone(ctx, watch, req)
				res <- result{r, err}
			}()

			relay.Cut()
			req.State = "running"
			if tc.endDuring {
				req.IsDone, req.State = true, tc.finalState
			}
			if err := st.Update(ctx, req); err != nil {
				t.Fatal(err)
			}
			compactAll(t, cli)
			relay.Heal()

			if !tc.endDuring {
				select {
				case <-seen:
				case r := <-res:
					t.Fatalf("the wait ended before the request did: %+v, %v", r.req, r.err)
				case <-ctx.Done():
					t.Fatal("the wait never read the request again")
				}
				time.Sleep(200 * time.Millisecond) // let the read and the new watch go first
				req.IsDone, req.State = true, tc.finalState
				if err := st.Update(ctx, req); err != nil {
					t.Fatal(err)
				}
			}
			r := <-res
			if r.err != nil {
				t.Fatalf("wait: %v", r.err)
			}
			if !r.req.IsDone || r.req.State != tc.finalState {
				t.Fatalf("wait returned the request done=%v state=%q, want done in state %q", r.req.IsDone, r.req.State, tc.finalState)
			}
			if n.Load() != 1 {
				t.Errorf("the request was read again %d times, want once", n.Load())
			}
		})
	}
}
