package kvmodel_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jobx/jobx/internal/testenv"
	"github.com/jobx/jobx/kvmodel"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// compactAll writes a key twice and compacts etcd's history to the
// current revision, so every watch that resumes from before it gets
// ErrCompacted.
func compactAll(t *testing.T, cli *clientv3.Client) {
	t.Helper()
	var rev int64
	for range 2 {
		resp, err := cli.Put(t.Context(), "/test/filler", "x")
		if err != nil {
			t.Fatal(err)
		}
		rev = resp.Header.Revision
	}
	start := time.Now()
	if _, err := cli.Compact(t.Context(), rev, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	t.Logf("compacted etcd's history to revision %d in %s", rev, time.Since(start).Round(time.Microsecond))
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func mapper(wf, name, description string) *kvmodel.Handler {
	return &kvmodel.Handler{WorkflowName: wf, Name: name, Description: description, HandlerType: kvmodel.HandlerMapper, SourceType: "shell"}
}

// A catalog cut off from etcd while definitions change and the history of
// those changes is compacted catches up once etcd answers again: its watch
// resumes past the compaction, reads the classes again and tells its
// subscribers of each change (created, changed, deleted), and later changes
// arrive through the watch as before.
func TestCatalogCatchesUpAfterACompactionPastItsWatch(t *testing.T) {
	endpoint, cli := testenv.Etcd(t)
	relay, catCli := testenv.EtcdThrough(t, endpoint)
	st := kvmodel.NewStore(cli)
	ctx := context.Background()
	for _, e := range []kvmodel.Entity{
		&kvmodel.Workflow{Name: "kept"}, &kvmodel.Workflow{Name: "gone"},
		mapper("kept", "h", "first"), mapper("kept", "same", "unchanged"),
	} {
		if err := st.Create(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	cat, err := kvmodel.NewCatalog(ctx, kvmodel.NewStore(catCli), testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	var mu sync.Mutex
	var changes []string
	cat.OnChange(func(c kvmodel.Change) {
		mu.Lock()
		defer mu.Unlock()
		s := c.Class + " " + c.Workflow + "/" + c.Name
		if c.Deleted {
			s += " deleted"
		}
		changes = append(changes, s)
	})

	relay.Cut()
	if err := st.Create(ctx, &kvmodel.Workflow{Name: "made"}); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(ctx, &kvmodel.Workflow{Name: "gone"}); err != nil {
		t.Fatal(err)
	}
	if err := st.Update(ctx, mapper("kept", "h", "second")); err != nil {
		t.Fatal(err)
	}
	compactAll(t, cli)
	relay.Heal()

	eventually(t, "the catalog to catch up", func() bool {
		h, err := cat.Handler(ctx, "kept", "h")
		return slices.Equal(cat.Workflows(), []string{"kept", "made"}) && err == nil && h.Description == "second"
	})
	mu.Lock()
	got := slices.Sorted(slices.Values(changes))
	mu.Unlock()
	if want := []string{"handler kept/h", "workflow gone/gone deleted", "workflow made/made"}; !slices.Equal(got, want) {
		t.Errorf("subscribers were told of %q, want %q", got, want)
	}

	later := &kvmodel.Workflow{Name: "later"}
	if err := st.Create(ctx, later); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := cat.WaitRevision(wctx, later.Revision()); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(cat.Workflows(), "later") {
		t.Fatalf("a workflow made after the catch-up is missing: %v", cat.Workflows())
	}
}

// A runner registry cut off from etcd while runners come and go and the
// history is compacted shows the live runners once etcd answers again, and
// follows later changes through its watch.
func TestRegistryCatchesUpAfterACompactionPastItsWatch(t *testing.T) {
	endpoint, cli := testenv.Etcd(t)
	relay, regCli := testenv.EtcdThrough(t, endpoint)
	st := kvmodel.NewStore(cli)
	ctx := context.Background()
	announce := func(id string) *kvmodel.Announcement {
		a, err := st.Announce(ctx, kvmodel.RunnerInfo{ID: id, Capabilities: []string{"general"}}, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(a.Close)
		return a
	}
	leaving := announce("leaving")
	announce("staying")
	reg, err := kvmodel.NewRegistry(ctx, kvmodel.NewStore(regCli), testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	ids := func() string {
		var out []string
		for _, ri := range reg.Runners() {
			out = append(out, ri.ID)
		}
		return strings.Join(out, " ")
	}
	if got := ids(); got != "leaving staying" {
		t.Fatalf("registry at start: %q", got)
	}

	relay.Cut()
	leaving.Close()
	announce("arrived")
	compactAll(t, cli)
	relay.Heal()
	eventually(t, "the registry to catch up", func() bool { return ids() == "arrived staying" })

	announce("later")
	eventually(t, "the registry to see a runner announced after the catch-up", func() bool { return ids() == "arrived later staying" })
}
