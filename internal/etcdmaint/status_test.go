package etcdmaint

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jobx/jobx/internal/testenv"
)

func TestStatusReportsTheMembersSizesRevisionAndRole(t *testing.T) {
	const quota = 64 << 20
	endpoint, cli := testenv.EtcdWithQuota(t, quota)
	put, err := cli.Put(t.Context(), "/test/key", strings.Repeat("x", 100<<10))
	if err != nil {
		t.Fatal(err)
	}
	// etcd commits its backend every 100 ms: the size follows the put then.
	var m MemberStatus
	waitFor(t, "the status to count the put", 5*time.Second, func() bool {
		members, err := Status(t.Context(), cli)
		if err != nil {
			t.Fatal(err)
		}
		if len(members) != 1 {
			t.Fatalf("%d members, want 1: %+v", len(members), members)
		}
		m = members[0]
		return m.DBSize >= 100<<10
	})
	switch {
	case !m.Answered():
		t.Fatalf("the member did not answer: %s", m.Err)
	case m.Endpoint != endpoint:
		t.Errorf("endpoint %q, want %q", m.Endpoint, endpoint)
	case m.ID == 0 || m.Name != "jobx":
		t.Errorf("member %q id %s", m.Name, m.ID)
	case !m.Leader:
		t.Error("the only member is not the leader")
	case m.DBSize < 100<<10 || m.DBSizeInUse <= 0 || m.DBSizeInUse > m.DBSize:
		t.Errorf("db size %d, in use %d, after a 100 KiB put", m.DBSize, m.DBSizeInUse)
	case m.Quota != quota:
		t.Errorf("quota %d, want %d", m.Quota, quota)
	case m.Revision < put.Header.Revision || m.RaftIndex == 0:
		t.Errorf("revision %d (the put's: %d), raft index %d", m.Revision, put.Header.Revision, m.RaftIndex)
	case m.Alarms == nil || len(m.Alarms) != 0 || m.NoSpace():
		t.Errorf("alarms %#v, want an empty list", m.Alarms)
	}
}

func TestStatusReportsEtcdsDefaultQuotaWhenNoneIsSet(t *testing.T) {
	_, cli := testenv.Etcd(t)
	members, err := Status(t.Context(), cli)
	if err != nil {
		t.Fatal(err)
	}
	if members[0].Quota != DefaultQuota {
		t.Errorf("quota %d, want etcd's default %d", members[0].Quota, DefaultQuota)
	}
}

func TestFragmentationIsTheShareOfFreePages(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    MemberStatus
		want float64
	}{
		{"an empty database has none", MemberStatus{}, 0},
		{"a database all in use has none", MemberStatus{DBSize: 100, DBSizeInUse: 100}, 0},
		{"a quarter in use leaves three quarters free", MemberStatus{DBSize: 100, DBSizeInUse: 25}, 0.75},
		{"a member that did not answer has none", MemberStatus{Name: "e2", Err: "connection refused"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.m.Fragmentation(); got != tc.want {
				t.Errorf("Fragmentation() = %g, want %g", got, tc.want)
			}
		})
	}
}

func TestMemberIDsMarshalInHexAsEtcdctlShowsThem(t *testing.T) {
	m := MemberStatus{ID: 0x8e9e05c52164694d, Alarms: []string{}}
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `"id":"8e9e05c52164694d"`) {
		t.Errorf("JSON %s does not carry the id in hex", raw)
	}
	var back MemberStatus
	if err := json.Unmarshal(raw, &back); err != nil || back.ID != m.ID {
		t.Errorf("round trip: %s, %v", back.ID, err)
	}
}
