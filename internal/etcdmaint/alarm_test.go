package etcdmaint

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jobx/jobx/internal/testenv"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestIsNoSpaceRecognisesEtcdsErrorInEveryForm(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"the client's error is NOSPACE", rpctypes.ErrNoSpace, true},
		{"the server's gRPC status is NOSPACE", rpctypes.ErrGRPCNoSpace, true},
		{"a gRPC ResourceExhausted status with etcd's text is NOSPACE", status.Error(codes.ResourceExhausted, "etcdserver: mvcc: database space exceeded"), true},
		{"the client's error wrapped with %w is NOSPACE", fmt.Errorf("commit: %w", rpctypes.ErrNoSpace), true},
		{"the error's text alone, wrapped with %v, is NOSPACE", fmt.Errorf("write 3 keys: %v", rpctypes.ErrNoSpace), true},
		{"nil is not", nil, false},
		{"a compacted revision is not", rpctypes.ErrCompacted, false},
		{"a deadline is not", fmt.Errorf("commit: %w", context.DeadlineExceeded), false},
		{"another ResourceExhausted status is not", status.Error(codes.ResourceExhausted, "grpc: received message larger than max"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := IsNoSpace(tc.err); got != tc.want {
				t.Errorf("IsNoSpace(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

// fillValue is the value fill writes: big, so a small quota fills fast.
var fillValue = strings.Repeat("x", 256<<10)

// fill puts fillValue under prefix until etcd answers NOSPACE and returns
// how many puts it accepted.
func fill(t *testing.T, cli *clientv3.Client, prefix string) int {
	t.Helper()
	for i := range 1000 {
		_, err := cli.Put(t.Context(), fmt.Sprintf("%s%04d", prefix, i), fillValue)
		if IsNoSpace(err) {
			return i
		}
		if err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	t.Fatal("etcd took 1000 puts of 256 KiB without NOSPACE")
	return 0
}

// reclaim deletes prefix and compacts to the current revision (both
// allowed while NOSPACE is raised).
func reclaim(t *testing.T, cli *clientv3.Client, prefix string) {
	t.Helper()
	if _, err := cli.Delete(t.Context(), prefix, clientv3.WithPrefix()); err != nil {
		t.Fatalf("delete %s (deletes are allowed while NOSPACE is raised): %v", prefix, err)
	}
	if _, err := Compact(t.Context(), cli, 0); err != nil {
		t.Fatal(err)
	}
}

// A full etcd raises NOSPACE and refuses puts; deleting and compacting
// free space inside the file but etcd still refuses puts; Disarm alone
// would not do (the file is still at the quota: etcd raises NOSPACE again
// at the next put); defragmenting and then disarming lets puts through.
func TestAFullEtcdTakesCompactionDefragmentationAndDisarmToWriteAgain(t *testing.T) {
	const quota = 4 << 20
	_, cli := testenv.EtcdWithQuota(t, quota)
	n := fill(t, cli, "/test/fill/")
	t.Logf("etcd with a %d-byte quota took %d puts of 256 KiB before NOSPACE", quota, n)

	members, err := Status(t.Context(), cli)
	if err != nil {
		t.Fatal(err)
	}
	if len(members) != 1 || !members[0].NoSpace() {
		t.Fatalf("status after NOSPACE: %+v, want one member with a NOSPACE alarm", members)
	}
	if members[0].Quota != quota {
		t.Errorf("quota %d, want %d", members[0].Quota, quota)
	}

	reclaim(t, cli, "/test/fill/")
	if _, err := cli.Put(t.Context(), "/test/after", "x"); !IsNoSpace(err) {
		t.Fatalf("put with the alarm raised: %v, want NOSPACE", err)
	}

	members, _ = Status(t.Context(), cli)
	before := members[0].DBSize
	done, err := DefragmentMembers(t.Context(), cli, members)
	if err != nil {
		t.Fatal(err)
	}
	if len(done) != 1 || done[0].Before != before || done[0].After >= before || done[0].After == 0 {
		t.Fatalf("defragmented %+v; the database was %d bytes", done, before)
	}
	disarmed, err := Disarm(t.Context(), cli)
	if err != nil {
		t.Fatal(err)
	}
	if len(disarmed) != 1 || disarmed[0].Type != "NOSPACE" || disarmed[0].Member != members[0].ID {
		t.Fatalf("disarmed %+v, want member %s's NOSPACE", disarmed, members[0].ID)
	}
	if _, err := cli.Put(t.Context(), "/test/after", "x"); err != nil {
		t.Fatalf("put after compact, defrag and disarm: %v", err)
	}
	if alarms, err := Alarms(t.Context(), cli); err != nil || len(alarms) != 0 {
		t.Fatalf("alarms after the recovery: %v, %v", alarms, err)
	}
	if again, err := Disarm(t.Context(), cli); err != nil || len(again) != 0 {
		t.Fatalf("a second disarm: %v, %v; want nothing to do", again, err)
	}
}

// Disarming a full etcd without reclaiming space lets at most the writes
// that fit through: etcd raises NOSPACE again.
func TestDisarmWithoutReclaimingSpaceDoesNotLast(t *testing.T) {
	_, cli := testenv.EtcdWithQuota(t, 4<<20)
	fill(t, cli, "/test/fill/")
	if disarmed, err := Disarm(t.Context(), cli); err != nil || len(disarmed) != 1 {
		t.Fatalf("disarm: %v, %v", disarmed, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err := cli.Put(ctx, "/test/fill/more", fillValue)
	if !IsNoSpace(err) {
		t.Fatalf("a big put after disarming a full etcd: %v, want NOSPACE", err)
	}
	alarms, err := Alarms(t.Context(), cli)
	if err != nil || len(alarms) != 1 || alarms[0].Type != "NOSPACE" {
		t.Fatalf("alarms: %v, %v; want NOSPACE raised again", alarms, err)
	}
}
