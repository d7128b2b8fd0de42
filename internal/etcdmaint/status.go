package etcdmaint

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// DefaultQuota is etcd's quota when --quota-backend-bytes is 0: 2 GiB.
const DefaultQuota = 2 << 30

// callTimeout bounds one status, member list or alarm call.
const callTimeout = 5 * time.Second

// callCtx bounds one call to etcd by callTimeout, or by ctx's own deadline
// when that is sooner.
func callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, callTimeout)
}

// Revision returns etcd's current revision.
func Revision(ctx context.Context, cli *clientv3.Client) (int64, error) {
	ctx, cancel := callCtx(ctx)
	defer cancel()
	resp, err := cli.Get(ctx, DefragElection, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, fmt.Errorf("read etcd's revision: %w", err)
	}
	return resp.Header.Revision, nil
}

// MemberID is an etcd member id. It prints and marshals in hex, as etcdctl
// shows it.
type MemberID uint64

func (id MemberID) String() string { return strconv.FormatUint(uint64(id), 16) }

// MarshalText writes the id in hex.
func (id MemberID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText reads an id in hex.
func (id *MemberID) UnmarshalText(b []byte) error {
	n, err := strconv.ParseUint(string(b), 16, 64)
	*id = MemberID(n)
	return err
}

// MemberStatus is one etcd member as Status found it.
type MemberStatus struct {
	Name     string   `json:"name"`
	ID       MemberID `json:"id"`
	Endpoint string   `json:"endpoint"` // the client URL that answered
	// DBSize is the size of the member's database file in bytes: what
	// etcd's quota counts. Compaction frees pages inside it; only
	// defragmentation gives them back and shrinks it.
	DBSize int64 `json:"db_size"`
	// DBSizeInUse is the part of DBSize that holds data; the rest is free
	// pages.
	DBSizeInUse int64 `json:"db_size_in_use"`
	// Quota is the member's --quota-backend-bytes (DefaultQuota when not
	// set): at DBSize >= Quota etcd raises NOSPACE and refuses writes.
	Quota     int64  `json:"quota"`
	Revision  int64  `json:"revision"`
	RaftIndex uint64 `json:"raft_index"`
	Leader    bool   `json:"leader"`
	Learner   bool   `json:"learner,omitempty"`
	Version   string `json:"version"`
	// Alarms are the alarms raised on this member: "NOSPACE", "CORRUPT".
	Alarms []string `json:"alarms"`
	// Err says why the member did not answer; the fields above but Name,
	// ID and Alarms are then zero.
	Err string `json:"error,omitempty"`
}

// Answered reports whether the member answered Status.
func (m MemberStatus) Answered() bool { return m.Err == "" }

// Fragmentation is the share of the database file that is free pages,
// (DBSize - DBSizeInUse) / DBSize: what defragmentation would give back.
// It is 0 for a member that did not answer.
func (m MemberStatus) Fragmentation() float64 {
	if m.DBSize <= 0 || m.DBSizeInUse > m.DBSize {
		return 0
	}
	return float64(m.DBSize-m.DBSizeInUse) / float64(m.DBSize)
}

// NoSpace reports whether the member has a NOSPACE alarm.
func (m MemberStatus) NoSpace() bool { return slices.Contains(m.Alarms, "NOSPACE") }

// Status asks every member of the cluster that cli talks to for its
// status, one member at a time, through the client URLs the member list
// gives (as etcdctl endpoint status --cluster does), and adds the alarms
// raised on each, sorted by name, then id. A member that does not answer
// is listed with Err set.
//
// The member list is read without quorum. The alarms need quorum: when
// they cannot be read, Status returns the members it has and an error.
func Status(ctx context.Context, cli *clientv3.Client) ([]MemberStatus, error) {
	lctx, cancel := callCtx(ctx)
	list, err := cli.MemberList(lctx, clientv3.WithSerializable())
	cancel()
	if err != nil {
		return nil, fmt.Errorf("list etcd members: %w", err)
	}
	out := make([]MemberStatus, 0, len(list.Members))
	for _, m := range list.Members {
		out = append(out, memberStatus(ctx, cli, m.Name, MemberID(m.ID), m.ClientURLs))
	}
	slices.SortStableFunc(out, func(a, b MemberStatus) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID))
	})
	alarms, err := Alarms(ctx, cli)
	for _, a := range alarms {
		for i := range out {
			if out[i].ID == a.Member {
				out[i].Alarms = append(out[i].Alarms, a.Type)
			}
		}
	}
	for i := range out {
		if out[i].Alarms == nil {
			out[i].Alarms = []string{}
		}
	}
	return out, err
}

// memberStatus asks one member through the first of its URLs that answers.
func memberStatus(ctx context.Context, cli *clientv3.Client, name string, id MemberID, urls []string) MemberStatus {
	ms := MemberStatus{Name: name, ID: id}
	if len(urls) == 0 {
		ms.Err = "not started (no client URL)"
		return ms
	}
	var errs []error
	for _, u := range urls {
		sctx, cancel := callCtx(ctx)
		resp, err := cli.Status(sctx, u)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", u, err))
			continue
		}
		ms.Endpoint = u
		ms.DBSize, ms.DBSizeInUse, ms.Quota = resp.DbSize, resp.DbSizeInUse, resp.DbSizeQuota
		if ms.Quota == 0 {
			ms.Quota = DefaultQuota
		}
		ms.Revision, ms.RaftIndex = resp.Header.Revision, resp.RaftIndex
		ms.Leader = resp.Leader != 0 && resp.Leader == resp.Header.MemberId
		ms.Learner, ms.Version = resp.IsLearner, resp.Version
		return ms
	}
	ms.Endpoint = urls[0]
	ms.Err = errors.Join(errs...).Error()
	return ms
}
