package etcdmaint

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jobx/jobx/internal/testenv"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

func TestNeedsDefragmentsPastTheThresholdAndFloorOrToEndNoSpace(t *testing.T) {
	o := NewDefragOptions()
	o.Threshold, o.MinSize = 0.5, 64<<20
	const quota = 1 << 30 // disarm level: 819 MiB
	member := func(size, inUse int64) MemberStatus {
		return MemberStatus{Name: "e1", DBSize: size << 20, DBSizeInUse: inUse << 20, Quota: quota, Alarms: []string{}}
	}
	for _, tc := range []struct {
		name    string
		o       DefragOptions
		m       MemberStatus
		nospace bool
		want    bool
	}{
		{"a member fragmented past the threshold and above the floor needs it", o, member(100, 40), false, true},
		{"a member fragmented exactly to the threshold does not", o, member(100, 50), false, false},
		{"a member below the floor does not, however fragmented", o, member(50, 1), false, false},
		{"a member that does not answer does not", o, MemberStatus{Name: "e1", Err: "connection refused"}, false, false},
		{"threshold 0 turns fragmentation alone off", DefragOptions{MinSize: 0, DisarmBelow: 0.8}, member(100, 1), false, false},
		{"at 70% of its quota, a member fragmented past half the threshold needs it", o, member(720, 500), false, true},
		{"at 70% of its quota, a member fragmented to half the threshold does not", o, member(720, 540), false, false},
		{"below 70% of its quota, half the threshold is not enough", o, member(700, 490), false, false},
		{"near its quota, a member below the floor does not", func() DefragOptions { o := o; o.MinSize = 2 << 30; return o }(), member(1000, 100), false, false},
		{"threshold 0 turns the near-quota rule off too", DefragOptions{MinSize: 0, DisarmBelow: 0.8}, member(1000, 1), false, false},
		{"under NOSPACE, a member compaction brought below the disarm level needs it, floor and threshold aside", DefragOptions{Threshold: 0.99, MinSize: 4 << 30, DisarmBelow: 0.8}, member(1024, 700), true, true},
		{"under NOSPACE, a member still in use above the disarm level does not (compact first)", DefragOptions{Threshold: 0.99, DisarmBelow: 0.8}, member(1024, 900), true, false},
		{"under NOSPACE, a member already below the disarm level does not", DefragOptions{Threshold: 0.99, DisarmBelow: 0.8}, member(500, 100), true, false},
		{"without NOSPACE, the disarm level plays no part", DefragOptions{Threshold: 0.99, DisarmBelow: 0.8}, member(1024, 700), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.o.Needs(tc.m, tc.nospace); got != tc.want {
				t.Errorf("Needs(size %d, in use %d, nospace %v) = %v, want %v", tc.m.DBSize, tc.m.DBSizeInUse, tc.nospace, got, tc.want)
			}
		})
	}
}

func TestDefragOptionsValidateNamesTheFlag(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*DefragOptions)
		want   string // "": valid
	}{
		{"the defaults are valid (and off)", func(*DefragOptions) {}, ""},
		{"a threshold of one half is valid", func(o *DefragOptions) { o.Threshold = 0.5 }, ""},
		{"a negative threshold is refused", func(o *DefragOptions) { o.Threshold = -0.1 }, "--etcd-defrag-threshold"},
		{"a threshold of 1 is refused (nothing is ever that fragmented)", func(o *DefragOptions) { o.Threshold = 1 }, "--etcd-defrag-threshold"},
		{"a negative floor is refused", func(o *DefragOptions) { o.MinSize = -1 }, "--etcd-defrag-min-size"},
		{"a disarm level above the quota is refused", func(o *DefragOptions) { o.DisarmBelow = 1.5 }, "disarm level"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := NewDefragOptions()
			tc.change(&o)
			err := o.Validate()
			if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v, want an error naming %q", err, tc.want)
			}
		})
	}
}

// fragment writes 1 MiB of live data and 4 MiB of history to one key,
// deletes that key and compacts: the database is then about three quarters
// free pages. It returns the member's status.
func fragment(t *testing.T, cli *clientv3.Client) MemberStatus {
	t.Helper()
	for i := range 4 {
		if _, err := cli.Put(t.Context(), fmt.Sprintf("/test/live/%d", i), strings.Repeat("x", 256<<10)); err != nil {
			t.Fatal(err)
		}
	}
	for range 16 {
		if _, err := cli.Put(t.Context(), "/test/frag", strings.Repeat("x", 256<<10)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cli.Delete(t.Context(), "/test/frag"); err != nil {
		t.Fatal(err)
	}
	if _, err := Compact(t.Context(), cli, 0); err != nil {
		t.Fatal(err)
	}
	// bbolt frees a transaction's pages once no reader can see them, so
	// etcd counts them out of the space in use a few commits later: write
	// something meanwhile.
	var m MemberStatus
	waitFor(t, "the compaction to free the history's pages", 5*time.Second, func() bool {
		if _, err := cli.Put(t.Context(), "/test/tick", "x"); err != nil {
			t.Fatal(err)
		}
		members, err := Status(t.Context(), cli)
		if err != nil {
			t.Fatal(err)
		}
		m = members[0]
		return m.DBSize >= 5<<20 && m.Fragmentation() > 0.5
	})
	return m
}

func TestCompactDropsTheHistoryBeforeItsRevision(t *testing.T) {
	_, cli := testenv.Etcd(t)
	first, err := cli.Put(t.Context(), "/test/key", "1")
	if err != nil {
		t.Fatal(err)
	}
	second, err := cli.Put(t.Context(), "/test/key", "2")
	if err != nil {
		t.Fatal(err)
	}
	rev, err := Compact(t.Context(), cli, second.Header.Revision)
	if err != nil || rev != second.Header.Revision {
		t.Fatalf("Compact to %d = %d, %v", second.Header.Revision, rev, err)
	}
	if _, err := cli.Get(t.Context(), "/test/key", clientv3.WithRev(first.Header.Revision)); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Errorf("read at the first put's revision after compaction: %v, want ErrCompacted", err)
	}
	if _, err := Compact(t.Context(), cli, first.Header.Revision); err != nil {
		t.Errorf("compacting again to an older revision: %v, want no error", err)
	}
	cur, err := Compact(t.Context(), cli, 0)
	if err != nil || cur < second.Header.Revision {
		t.Errorf("Compact to the current revision = %d, %v", cur, err)
	}
}

func TestDefragmentationGivesBackWhatCompactionFreed(t *testing.T) {
	_, cli := testenv.Etcd(t)
	m := fragment(t, cli)
	done, err := DefragmentMembers(t.Context(), cli, []MemberStatus{m})
	if err != nil {
		t.Fatal(err)
	}
	if len(done) != 1 || done[0].After == 0 || done[0].After > m.DBSize/2 {
		t.Fatalf("defragmented %+v; before: %d bytes, %d in use", done, m.DBSize, m.DBSizeInUse)
	}
	t.Logf("defragmentation: %d -> %d bytes in %s", done[0].Before, done[0].After, done[0].Took)
}

func newDefragmenter(t *testing.T, cli *clientv3.Client, o DefragOptions) *Defragmenter {
	t.Helper()
	if o.Log == nil {
		o.Log = testenv.Logger(t).With("defragmenter", o.ID)
	}
	d, err := NewDefragmenter(cli, o)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestPassDefragmentsOnlyPastTheThresholdAndTheFloor(t *testing.T) {
	_, cli := testenv.Etcd(t)
	m := fragment(t, cli)
	for _, o := range []DefragOptions{
		{Threshold: 0.3, MinSize: 1 << 30},
		{Threshold: 0.95, MinSize: 0},
	} {
		rep, err := newDefragmenter(t, cli, o).Pass(t.Context())
		if err != nil || len(rep.Defragmented) != 0 {
			t.Fatalf("threshold %g, floor %d, on %d bytes %.0f%% free: %+v, %v; want nothing done", o.Threshold, o.MinSize, m.DBSize, 100*m.Fragmentation(), rep, err)
		}
	}
	d := newDefragmenter(t, cli, DefragOptions{Threshold: 0.3, MinSize: 1 << 20})
	rep, err := d.Pass(t.Context())
	if err != nil || len(rep.Defragmented) != 1 || rep.Defragmented[0].After >= m.DBSize || len(rep.Disarmed) != 0 {
		t.Fatalf("pass: %+v, %v; want the member defragmented", rep, err)
	}
	if rep, err := d.Pass(t.Context()); err != nil || len(rep.Defragmented) != 0 {
		t.Fatalf("second pass: %+v, %v; want nothing left to do", rep, err)
	}
}

// The loop's automatic recovery. On a full etcd a pass compacts to the
// current revision and defragments, but the live data keeps the database
// above the disarm level, so it does not disarm, and a second pass with
// nothing new does nothing. Once data is deleted, a pass compacts and
// defragments again and, with AutoDisarm, disarms: etcd takes writes
// again. Without AutoDisarm the alarm stays for the operator.
func TestPassEndsNoSpaceOnceDataIsDeleted(t *testing.T) {
	const quota = 4 << 20
	_, cli := testenv.EtcdWithQuota(t, quota)
	fill(t, cli, "/test/fill/")
	// Threshold and floor so that only the NOSPACE rules act; a disarm
	// level of half the quota, which the live data of a full etcd is above.
	auto := newDefragmenter(t, cli, DefragOptions{Threshold: 0.99, MinSize: 1 << 30, AutoDisarm: true, DisarmBelow: 0.5})
	manual := newDefragmenter(t, cli, DefragOptions{Threshold: 0.99, MinSize: 1 << 30, AutoDisarm: false, DisarmBelow: 0.5})

	rep, err := auto.Pass(t.Context())
	if err != nil || rep.Compacted == 0 || len(rep.Defragmented) != 1 || len(rep.Disarmed) != 0 {
		t.Fatalf("pass on a full etcd: %+v, %v; want a compaction, a defragmentation and no disarm", rep, err)
	}
	if rep, err := auto.Pass(t.Context()); err != nil || rep.Compacted != 0 || len(rep.Defragmented)+len(rep.Disarmed) != 0 {
		t.Fatalf("second pass with nothing deleted: %+v, %v; want nothing done", rep, err)
	}

	if _, err := cli.Delete(t.Context(), "/test/fill/", clientv3.WithPrefix()); err != nil {
		t.Fatalf("delete (allowed while NOSPACE is raised): %v", err)
	}
	rep, err = manual.Pass(t.Context())
	if err != nil || rep.Compacted == 0 || len(rep.Defragmented) != 1 || len(rep.Disarmed) != 0 {
		t.Fatalf("pass without AutoDisarm: %+v, %v; want a compaction, a defragmentation and no disarm", rep, err)
	}
	if rep.Defragmented[0].After >= quota/2 {
		t.Fatalf("defragmented to %d bytes, not below the disarm level", rep.Defragmented[0].After)
	}
	if alarms, _ := Alarms(t.Context(), cli); len(alarms) != 1 {
		t.Fatalf("alarms after a pass without AutoDisarm: %v, want NOSPACE still raised", alarms)
	}
	if _, err := cli.Put(t.Context(), "/test/after", "x"); !IsNoSpace(err) {
		t.Fatalf("put before the disarm: %v, want NOSPACE", err)
	}
	rep, err = auto.Pass(t.Context())
	if err != nil || len(rep.Disarmed) != 1 || rep.Disarmed[0].Type != "NOSPACE" {
		t.Fatalf("pass with AutoDisarm: %+v, %v; want NOSPACE disarmed", rep, err)
	}
	if _, err := cli.Put(t.Context(), "/test/after", "x"); err != nil {
		t.Fatalf("put after the automatic recovery: %v", err)
	}
	if rep, err := auto.Pass(t.Context()); err != nil || rep.Compacted != 0 || len(rep.Defragmented)+len(rep.Disarmed) != 0 {
		t.Fatalf("pass once recovered: %+v, %v; want nothing done", rep, err)
	}
}

func runDefragmenter(t *testing.T, cli *clientv3.Client, o DefragOptions) (d *Defragmenter, stop func()) {
	t.Helper()
	d = newDefragmenter(t, cli, o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return d, stop
}

func TestThresholdZeroLeavesTheLoopOff(t *testing.T) {
	_, cli := testenv.Etcd(t)
	d := newDefragmenter(t, cli, NewDefragOptions())
	returnsAtOnce(t, "Run with threshold 0", d.Run)
}

// Two defragmenters of one etcd elect one; when it stops, the other takes
// over at once (the stopped one revokes its lease).
func TestTwoDefragmentersElectOne(t *testing.T) {
	endpoint, cli := testenv.Etcd(t)
	cli2, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli2.Close() })
	o := DefragOptions{Threshold: 0.5, Interval: 20 * time.Millisecond, TTL: 5 * time.Second}
	oa, ob := o, o
	oa.ID, ob.ID = "a", "b"
	a, stopA := runDefragmenter(t, cli, oa)
	b, stopB := runDefragmenter(t, cli2, ob)
	waitFor(t, "one defragmenter to lead", 10*time.Second, func() bool { return a.Leading() || b.Leading() })
	for range 50 {
		if a.Leading() && b.Leading() {
			t.Fatal("both defragmenters lead")
		}
		time.Sleep(2 * time.Millisecond)
	}
	leader, other, stop := a, b, stopA
	if b.Leading() {
		leader, other, stop = b, a, stopB
	}
	stop()
	if leader.Leading() {
		t.Error("a stopped defragmenter still leads")
	}
	waitFor(t, "the other defragmenter to take over", 3*time.Second, other.Leading)
}
