package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jobx/jobx/kvmodel"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// phases breaks a kept word-count request down by the timestamps of its
// invocations (all in seconds), to show where the wall time goes.
type phases struct {
	// RootMap is the root map invocation, from its creation by the
	// gateway to the commit of its branch (every child written).
	RootMap float64 `json:"root_map_s"`
	// Children is from the root map's commit to the last child reduction's
	// commit: all child maps and their reductions.
	Children float64 `json:"children_s"`
	// ChildMapsFirstLast and ChildReducesFirstLast span the first to the
	// last commit of each kind.
	ChildMapsFirstLast    float64 `json:"child_maps_first_to_last_s"`
	ChildReducesFirstLast float64 `json:"child_reduces_first_to_last_s"`
	// RootReduce is the root reduction, from its creation (by the last
	// child reduction) to its commit.
	RootReduce float64 `json:"root_reduce_s"`
	// Gateway is the rest of the wall time: the POST before the root
	// invocation exists and the answer after the request is done.
	Gateway float64 `json:"gateway_and_http_s"`
	// EtcdWrites is the etcd revisions the run added (one per successful
	// write transaction); EtcdProposalsWithoutWrite is raft entries that
	// wrote nothing, mostly transactions whose compare failed (lost CAS
	// races on a parent's counter).
	EtcdWrites                int64 `json:"etcd_write_txns"`
	EtcdProposalsWithoutWrite int64 `json:"etcd_proposals_without_write"`
	// CPU is the CPU used during the request: the machine's busy cores
	// and this process's share (etcd, nsqd, gateway, runner); the rest is
	// mostly the Python handler processes.
	CPU cpuUse `json:"cpu"`
}

// etcdCounters reads the revision and raft index.
func etcdCounters(ctx context.Context, cli *clientv3.Client) (rev, raft int64, err error) {
	ep := cli.Endpoints()[0]
	st, err := cli.Status(ctx, ep)
	if err != nil {
		return 0, 0, fmt.Errorf("etcd status: %w", err)
	}
	return st.Header.Revision, int64(st.RaftIndex), nil
}

// analyze computes the phases of request reqID from its invocations.
func analyze(invs []*kvmodel.Invocation, reqID, rootID string, wall time.Duration) (*phases, error) {
	ts := func(s string) time.Time {
		t, _ := kvmodel.ParseTimestamp(s)
		return t
	}
	var root, rootRed *kvmodel.Invocation
	var mapFirst, mapLast, redFirst, redLast time.Time
	span := func(first, last *time.Time, t time.Time) {
		if first.IsZero() || t.Before(*first) {
			*first = t
		}
		if t.After(*last) {
			*last = t
		}
	}
	for _, inv := range invs {
		if inv.RequestID != reqID {
			continue
		}
		switch {
		case inv.ID == rootID:
			root = inv
		case inv.Direction == kvmodel.DirectionReduce && inv.ParentInvocationID != nil && *inv.ParentInvocationID == rootID:
			rootRed = inv
		case inv.Direction == kvmodel.DirectionMap:
			span(&mapFirst, &mapLast, ts(inv.FinishedTimestamp))
		default:
			span(&redFirst, &redLast, ts(inv.FinishedTimestamp))
		}
	}
	if root == nil || rootRed == nil {
		return nil, fmt.Errorf("request %s: root invocation %s or its reduction not found", reqID, rootID)
	}
	rootDone := ts(root.FinishedTimestamp)
	p := &phases{
		RootMap:               rootDone.Sub(ts(root.CreatedTimestamp)).Seconds(),
		Children:              redLast.Sub(rootDone).Seconds(),
		ChildMapsFirstLast:    mapLast.Sub(mapFirst).Seconds(),
		ChildReducesFirstLast: redLast.Sub(redFirst).Seconds(),
		RootReduce:            ts(rootRed.FinishedTimestamp).Sub(ts(rootRed.CreatedTimestamp)).Seconds(),
	}
	p.Gateway = wall.Seconds() - ts(rootRed.FinishedTimestamp).Sub(ts(root.CreatedTimestamp)).Seconds()
	return p, nil
}

func (p *phases) write(w io.Writer, docs int) {
	fmt.Fprintf(w, "word count phases: root map (branch to %d) %.2fs | children (maps+reduces) %.2fs [maps first..last %.2fs, reduces first..last %.2fs] | root reduce %.2fs | gateway+HTTP %.2fs | etcd write txns %d, proposals without a write %d | CPU busy %.2f of %.0f cores (bench process %.2f, others %.2f)\n",
		docs, p.RootMap, p.Children, p.ChildMapsFirstLast, p.ChildReducesFirstLast, p.RootReduce, p.Gateway, p.EtcdWrites, p.EtcdProposalsWithoutWrite,
		p.CPU.MachineBusyCores, p.CPU.MachineCores, p.CPU.BenchProcess, p.CPU.Others)
}

// cpuSample is the machine's and this process's CPU time so far, in seconds.
type cpuSample struct {
	machineBusy, machineTotal, self float64
}

// sampleCPU reads /proc/stat and /proc/self/stat (USER_HZ is 100 on Linux).
func sampleCPU() (cpuSample, error) {
	const hz = 100.0
	var s cpuSample
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s, err
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return s, fmt.Errorf("/proc/stat: odd first line %q", line)
	}
	for i, v := range f[1:] {
		n, _ := strconv.ParseFloat(v, 64)
		s.machineTotal += n / hz
		if i != 3 && i != 4 { // idle, iowait
			s.machineBusy += n / hz
		}
	}
	data, err = os.ReadFile("/proc/self/stat")
	if err != nil {
		return s, err
	}
	st := string(data)
	f = strings.Fields(st[strings.LastIndexByte(st, ')')+1:])
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	s.self = (utime + stime) / hz
	return s, nil
}

// cpuUse is the CPU spent between two samples, in cores (CPU seconds per
// wall second).
type cpuUse struct {
	MachineBusyCores float64 `json:"machine_busy_cores"`
	MachineCores     float64 `json:"machine_cores"`
	BenchProcess     float64 `json:"bench_process_cores"`
	Others           float64 `json:"other_processes_cores"`
}

func cpuBetween(a, b cpuSample, wall time.Duration) cpuUse {
	w := wall.Seconds()
	u := cpuUse{
		MachineBusyCores: (b.machineBusy - a.machineBusy) / w,
		MachineCores:     (b.machineTotal - a.machineTotal) / w,
		BenchProcess:     (b.self - a.self) / w,
	}
	u.Others = u.MachineBusyCores - u.BenchProcess
	return u
}
