package etcdmaint

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// NoSpaceHelp says what etcd's NOSPACE means for jobx and how an operator
// ends it. The gateway answers it (503, kind storage_full) and runners log
// it.
const NoSpaceHelp = "etcd is out of space: its database reached its quota (etcd --quota-backend-bytes; jobx up --etcd-quota) " +
	"and etcd refuses writes until space is reclaimed and its NOSPACE alarm is disarmed; nothing already accepted is lost. " +
	"The runners compact etcd's history to a few minutes behind; to reclaim space now, remove what is no longer needed " +
	"(jobx request cleanup for kept requests), then run jobx etcd compact, jobx etcd defrag and jobx etcd disarm " +
	"(runners started with --etcd-defrag-threshold defragment and disarm by themselves); then submit again"

// noSpaceText is the text of etcd's NOSPACE error, with or without the
// "etcdserver: " prefix.
const noSpaceText = "mvcc: database space exceeded"

// IsNoSpace reports whether err is etcd's NOSPACE error ("mvcc: database
// space exceeded"): as the client returns it (rpctypes.ErrNoSpace), as the
// server's gRPC status (code ResourceExhausted, rpctypes.ErrGRPCNoSpace),
// or either wrapped, with %w or only in the text.
func IsNoSpace(err error) bool {
	if err == nil {
		return false
	}
	return errors.Is(err, rpctypes.ErrNoSpace) || errors.Is(err, rpctypes.ErrGRPCNoSpace) ||
		strings.Contains(err.Error(), noSpaceText)
}

// Alarm is an alarm raised on an etcd member.
type Alarm struct {
	Member MemberID `json:"member_id"`
	// Type is the alarm: "NOSPACE" (the database reached its quota; etcd
	// refuses writes) or "CORRUPT" (a member's data differs from the
	// others').
	Type string `json:"alarm"`
}

// Alarms lists the alarms raised in the cluster. It needs quorum.
func Alarms(ctx context.Context, cli *clientv3.Client) ([]Alarm, error) {
	ctx, cancel := callCtx(ctx)
	defer cancel()
	resp, err := cli.AlarmList(ctx)
	if err != nil {
		return nil, fmt.Errorf("list etcd alarms: %w", err)
	}
	out := make([]Alarm, 0, len(resp.Alarms))
	for _, a := range resp.Alarms {
		out = append(out, Alarm{Member: MemberID(a.MemberID), Type: a.Alarm.String()})
	}
	return out, nil
}

// Disarm disarms every NOSPACE alarm and returns those it disarmed (none
// when none was raised). A CORRUPT alarm is left alone: it needs an
// operator, not jobx. Disarming while a member's database is still at its
// quota is allowed, but etcd raises the alarm again at the next write:
// reclaim space first (compact, defragment).
func Disarm(ctx context.Context, cli *clientv3.Client) ([]Alarm, error) {
	alarms, err := Alarms(ctx, cli)
	if err != nil {
		return nil, err
	}
	var done []Alarm
	for _, a := range alarms {
		if a.Type != etcdserverpb.AlarmType_NOSPACE.String() {
			continue
		}
		cctx, cancel := callCtx(ctx)
		_, err := cli.AlarmDisarm(cctx, &clientv3.AlarmMember{MemberID: uint64(a.Member), Alarm: etcdserverpb.AlarmType_NOSPACE})
		cancel()
		if err != nil {
			return done, fmt.Errorf("disarm NOSPACE on etcd member %s: %w", a.Member, err)
		}
		done = append(done, a)
	}
	return done, nil
}
