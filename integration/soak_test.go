package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/jobx/jobx/internal/testenv"
	"github.com/jobx/jobx/internal/testenv/testbox"
	"github.com/jobx/jobx/kvmodel"
	"github.com/jobx/jobx/sandbox/namespace"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// TestSoak runs a mixed load for a bounded time (JOBX_SOAK, default 2m;
// make test-soak: 10m) on jobx as separate processes:
//
//   - `jobx up --runners 0 --etcd-quota 64MiB`: the embedded etcd an
//     operator's jobx up runs, at a quota the load would overrun without
//     compaction, and nsqd;
//   - `jobx gateway`, which the load goes through;
//   - a `jobx runner` per sandbox: namespace (the default where no
//     containerd answers) and, as root or under CI, containerd (a private
//     one), each serving a copy of integration/testdata/soak of its own,
//     compacting etcd to 30 s of history and expiring requests after 20 s.
//
// The gateway and the runners are processes of their own, as in a
// deployment, so that each one's memory, goroutines and descriptors are
// its own (in one jobx up process etcd's memory would hide theirs).
//
// The load, on each sandbox: clients of trivial jobs, of 200-document word
// counts (300 KB of arguments), of a job whose handler fails, and of
// non-blocking word counts never fetched (they expire), and a handler
// update every 20 s (jobx handler sync of a changed file). After it, a
// burst of trivial requests from 16 clients on each sandbox, hundreds a
// second, whose requests must be gone from etcd soon after it (burst). Every 10 s a
// line of the report gives the requests done, failed and lost, etcd's
// database size and space in use, each process's RSS, goroutines and
// descriptors, and each sandbox's processes, containers and scratch
// directories; check says what is asserted, and why.
func TestSoak(t *testing.T) {
	d := soakDefault
	if v := os.Getenv("JOBX_SOAK"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil || d < time.Minute {
			t.Fatalf("JOBX_SOAK=%q: want a duration of at least 1m", v)
		}
	}
	s := startSoak(t, jobxBinary(t))
	s.warmUp()
	s.awaitIdle("the warm-up's sandboxes to idle out")
	base := s.sample(0)
	s.log(fmt.Sprintf("soak for %s (make test-soak: 10m): %s", d, s.setup()))
	s.log("  " + soakLegend)
	s.log("  idle " + base.line())
	s.run(d)
	s.burst()
	s.drain()
	s.awaitIdle("the load's sandboxes to idle out")
	end := s.sample(time.Since(s.start))
	s.log("  idle " + end.line())
	s.check(d, base, end)
}

// The soak's settings.
const (
	soakDefault    = 2 * time.Minute
	sampleEvery    = 10 * time.Second
	etcdQuota      = 64 << 20
	compactKeep    = 30 * time.Second // --etcd-compact-retention
	defragAt       = 0.3              // --etcd-defrag-threshold
	defragMin      = etcdQuota / 2    // --etcd-defrag-min-size
	retention      = 20 * time.Second // --retention: non-blocking requests expire
	poolIdle       = 10 * time.Second // --pool-idle-timeout
	blockingWait   = time.Minute      // the gateway's --blocking-timeout
	lostAfter      = 2 * blockingWait // an accepted request not ended by then is lost
	updateEvery    = 20 * time.Second // a handler sync on every workflow
	trivialClients = 2
	trivialPause   = 100 * time.Millisecond
	wordcountDocs  = 200
	wordcountPause = 15 * time.Second
	failPause      = time.Second
	nbDocs         = 20
	nbPause        = 5 * time.Second
	burstClients   = 16   // after the load, on each sandbox at once, ...
	burstRequests  = 1500 // ... trivial requests in all
)

// The bounds check asserts (its comment says why these).
const (
	dbGrowth        = 1.5      // etcd's space in use, last third over first third, ...
	dbSlack         = 8 << 20  // ... plus this
	dbMargin        = 0.75     // etcd's db size stays below this share of the quota
	rssGrowth       = 1.25     // RSS, last third over first third, ...
	rssSlack        = 16 << 20 // ... plus this
	etcdSettles     = 5 * time.Minute
	goroutineGrowth = 1.25 // goroutines under load, last third over first third, ...
	goroutineSlack  = 40   // ... plus this
	idleGoroutines  = 10   // goroutines back at idle, over the idle baseline
	idleFDs         = 6    // descriptors back at idle, over the idle baseline

	burstCleaned = 10 * time.Second // the burst's trivial requests are gone from etcd within this of its end
)

// soak is the system under test and what the test has seen of it.
type soak struct {
	t      *testing.T
	bin    string
	etcd   string // client endpoint
	nsqd   string
	url    string // the gateway's
	up, gw *soakProc
	cli    *clientv3.Client
	store  *kvmodel.Store
	boxes  []*soakBox
	http   *http.Client
	led    *ledger

	docs, nbDocs docSet
	start        time.Time // of the load
	samples      []soakSample
}

// soakBox is one sandbox's runner and the workflow only it serves.
type soakBox struct {
	kind, wf, id string
	proc         *soakProc
	ctrd         *containerd.Client // containerd only
	handlers     string             // the workflow copy's handler directory
	gen          atomic.Int64       // the echo mapper's generation synced last
	seenGen      atomic.Int64       // the highest generation a result showed
}

func startSoak(t *testing.T, bin string) *soak {
	// Idle connections enough for the burst's clients, as a client that
	// sends that many requests at once would keep.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 2 * burstClients
	s := &soak{t: t, bin: bin, http: &http.Client{Timeout: lostAfter + time.Minute, Transport: tr}, led: newLedger()}
	s.docs, s.nbDocs = newDocSet(wordcountDocs, 1), newDocSet(nbDocs, 2)
	kinds := []string{"namespace"}
	if err := namespace.Check(context.Background(), "", 65534, 65534); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the namespace sandbox cannot run here, and CI must run it: %v", err)
		}
		t.Logf("the namespace sandbox cannot run here; the soak's default sandbox is none: %v", err)
		kinds[0] = "none"
	}
	if testbox.SkipContainerd() == "" {
		kinds = append(kinds, "containerd")
	}
	dir := t.TempDir()
	var loads []string
	for _, k := range kinds {
		b := &soakBox{kind: k, wf: "soak_" + k, id: "soak-" + k}
		wfDir := filepath.Join(dir, b.wf)
		copyWorkflow(t, "testdata/soak", wfDir, b.wf)
		b.handlers = filepath.Join(wfDir, "handlers")
		loads = append(loads, "--load", wfDir)
		s.boxes = append(s.boxes, b)
	}
	s.startUp(filepath.Join(dir, "up"), loads)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{s.etcd}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	s.cli, s.store = cli, kvmodel.NewStore(cli)
	s.startGateway(filepath.Join(dir, "gateway.log"))
	for _, b := range s.boxes {
		s.startRunner(b, filepath.Join(dir, b.id))
	}
	return s
}

// setup describes the system and the load, for the report.
func (s *soak) setup() string {
	var kinds []string
	for _, b := range s.boxes {
		kinds = append(kinds, b.kind)
	}
	return fmt.Sprintf("jobx up --runners 0 --etcd-quota %dMiB (etcd, nsqd), jobx gateway, a jobx runner per sandbox (%s) with "+
		"--etcd-compact-retention %s --retention %s --pool-idle-timeout %s; on each sandbox %d clients of trivial jobs, "+
		"one of %d-document word counts, one of failing jobs, one of non-blocking %d-document word counts never fetched, a handler sync every %s",
		etcdQuota>>20, strings.Join(kinds, ", "), compactKeep, retention, poolIdle, trivialClients, wordcountDocs, nbDocs, updateEvery)
}

// startUp starts `jobx up` with the workflow directories to load and waits
// until it says it is up. Its gateway serves only its /metrics.
func (s *soak) startUp(dir string, loads []string) {
	t := s.t
	for attempt := 1; ; attempt++ {
		addrs := testenv.FreeAddrs(t, 3)
		args := append([]string{"up", "--runners", "0", "--data-dir", dir, "--http", addrs[0], "--etcd-listen", addrs[1],
			"--nsqd-listen", addrs[2], "--etcd-quota", strconv.Itoa(etcdQuota), "--log-level", "warn"}, loads...)
		p := startSoakProc(t, s.bin, "jobx up", dir+".log", args...)
		err := p.await(time.Minute, func() bool {
			out, _ := os.ReadFile(p.log)
			return bytes.Contains(out, []byte("jobx is up"))
		})
		if err == nil {
			s.up, s.etcd, s.nsqd = p, "http://"+addrs[1], addrs[2]
			p.metrics = "http://" + addrs[0]
			return
		}
		if attempt == 3 || !strings.Contains(p.tail(), "address already in use") {
			t.Fatal(err)
		}
	}
}

// startGateway starts the `jobx gateway` the load goes through.
func (s *soak) startGateway(log string) {
	addr := testenv.FreeAddrs(s.t, 1)[0]
	s.url = "http://" + addr
	s.gw = startSoakProc(s.t, s.bin, "jobx gateway", log, "gateway", "--etcd", s.etcd, "--nsqd", s.nsqd, "--http", addr,
		"--blocking-timeout", blockingWait.String(), "--log-level", "warn")
	s.gw.metrics = s.url
	if err := s.gw.await(time.Minute, func() bool {
		r, err := http.Get(s.url + "/healthz")
		if err == nil {
			r.Body.Close()
		}
		return err == nil && r.StatusCode == http.StatusOK
	}); err != nil {
		s.t.Fatal(err)
	}
}

// startRunner starts b's `jobx runner`, serving only b's workflow.
func (s *soak) startRunner(b *soakBox, dir string) {
	t := s.t
	metrics := testenv.FreeAddrs(t, 1)[0]
	args := []string{"runner", "--etcd", s.etcd, "--nsqd", s.nsqd, "--id", b.id, "--dir", dir, "--workflows", b.wf,
		"--metrics-addr", metrics, "--etcd-compact-retention", compactKeep.String(),
		"--etcd-defrag-threshold", strconv.FormatFloat(defragAt, 'g', -1, 64), "--etcd-defrag-min-size", strconv.Itoa(defragMin),
		"--retention", retention.String(),
		"--pool-idle-timeout", poolIdle.String(), "--grace", "5s", "--log-level", "warn", "--sandbox", b.kind}
	if b.kind == "containerd" {
		sock := testbox.Containerd(t)
		args = append(args, "--containerd", sock, "--images-dir", testbox.Images(t).Dir())
		cli, err := containerd.New(sock)
		if err != nil {
			t.Fatal(err)
		}
		b.ctrd = cli
		t.Cleanup(func() { cli.Close() })
		// Runs after the runner stopped (cleanups run last first).
		t.Cleanup(func() {
			if n := len(b.containers()); n > 0 {
				t.Errorf("%d containers outlived runner %s", n, b.id)
				removeRunnerContainers(t, sock, b.id)
			}
		})
	}
	b.proc = startSoakProc(t, s.bin, "runner "+b.id, dir+".log", args...)
	b.proc.metrics = "http://" + metrics
	if err := b.proc.await(2*time.Minute, func() bool { return metricValue(b.proc.metrics, "go_goroutines") > 0 }); err != nil {
		t.Fatal(err)
	}
}

// warmUp runs each job once on every sandbox, the first once the runner
// has taken its topics.
func (s *soak) warmUp() {
	for _, b := range s.boxes {
		if err := b.proc.await(2*time.Minute, func() bool {
			st, _, _, err := s.post(b.wf, "trivial", []byte(`{"arguments":{"x":0}}`), "")
			return err == nil && st == http.StatusOK
		}); err != nil {
			s.t.Fatal(err)
		}
		s.wordcount(b, s.docs, false)
		s.fail(b)
		if e := s.led.errs(); len(e) > 0 {
			s.t.Fatalf("the warm-up: %s", strings.Join(e, "; "))
		}
	}
	s.led = newLedger()
}

// run is the load, sampled every sampleEvery, for d.
func (s *soak) run(d time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	s.start = time.Now()
	var wg sync.WaitGroup
	loop := func(pause time.Duration, f func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				f()
				select {
				case <-ctx.Done():
				case <-time.After(pause):
				}
			}
		}()
	}
	for _, b := range s.boxes {
		var n atomic.Int64
		for range trivialClients {
			loop(trivialPause, func() { s.trivial(b, int(n.Add(1))) })
		}
		loop(wordcountPause, func() { s.wordcount(b, s.docs, false) })
		loop(failPause, func() { s.fail(b) })
		loop(nbPause, func() { s.wordcount(b, s.nbDocs, true) })
	}
	// The last update comes at least updateEvery before the end, so that
	// results still show its generation.
	loop(updateEvery, func() {
		if time.Since(s.start) < updateEvery || time.Until(s.start.Add(d)) < updateEvery {
			return
		}
		for _, b := range s.boxes {
			s.updateHandler(b)
		}
	})
	tick := time.NewTicker(sampleEvery)
	defer tick.Stop()
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-tick.C:
			s.sweep()
			s.log("  " + s.sample(time.Since(s.start)).line())
		}
	}
	wg.Wait()
}

// updateHandler rewrites the echo mapper's generation and syncs b's
// handler directory with jobx handler sync, as an operator would; the
// runner installs the new version for the next request.
func (s *soak) updateHandler(b *soakBox) {
	path := filepath.Join(b.handlers, "map", "echo.py")
	src, err := os.ReadFile(path)
	if err != nil {
		s.t.Error(err)
		return
	}
	gen := b.gen.Load() + 1
	src = regexp.MustCompile(`(?m)^GEN = \d+$`).ReplaceAll(src, fmt.Appendf(nil, "GEN = %d", gen))
	if err := os.WriteFile(path, src, 0o644); err != nil {
		s.t.Error(err)
		return
	}
	b.gen.Store(gen)
	if out, err := exec.Command(s.bin, "--etcd", s.etcd, "handler", "sync", b.wf, b.handlers).CombinedOutput(); err != nil {
		s.t.Errorf("jobx handler sync %s: %v: %s", b.wf, err, out)
	}
}

// burst sends burstRequests trivial requests to each sandbox from
// burstClients clients, at once on every sandbox, hundreds a second (the
// load sends a few dozen), and checks that their requests, each deleted
// once its result is delivered, are gone from etcd within burstCleaned of
// the burst's end: the cleanup keeps pace with the requests. (Until issue
// 17 a runner cleaned 100 a second, and etcd filled up under any faster
// stream.)
func (s *soak) burst() {
	start := time.Now()
	var wg sync.WaitGroup
	for _, b := range s.boxes {
		var n atomic.Int64
		for range burstClients {
			wg.Go(func() {
				for x := n.Add(1); x <= burstRequests; x = n.Add(1) {
					s.trivial(b, int(x))
				}
			})
		}
	}
	wg.Wait()
	took := time.Since(start)
	left := func() int {
		n := 0
		for _, b := range s.boxes {
			rs, err := kvmodel.List[kvmodel.Request](context.Background(), s.store, b.wf)
			if err != nil {
				s.t.Fatal(err)
			}
			for _, r := range rs {
				if r.JobName == "trivial" {
					n++
				}
			}
		}
		return n
	}
	atEnd := left()
	for n := atEnd; n > 0; n = left() {
		if time.Since(start) > took+burstCleaned {
			s.t.Errorf("%d of the burst's trivial requests are still in etcd %s after it ended (%d at its end): the cleanup falls behind", n, burstCleaned, atEnd)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	s.log(fmt.Sprintf("  burst: %d trivial requests on each sandbox from %d clients in %s (%.0f/s in all); %d still in etcd at its end, none %s later",
		burstRequests, burstClients, took.Round(time.Millisecond), float64(burstRequests*len(s.boxes))/took.Seconds(), atEnd, (time.Since(start) - took).Round(100*time.Millisecond)))
}

// drain waits until every accepted request has ended and expired, and no
// request is left in etcd.
func (s *soak) drain() {
	deadline := time.Now().Add(retention + lostAfter)
	for {
		s.sweep()
		left := 0
		for _, b := range s.boxes {
			rs, err := kvmodel.List[kvmodel.Request](context.Background(), s.store, b.wf)
			if err != nil {
				s.t.Fatal(err)
			}
			left += len(rs)
		}
		if s.led.openCount() == 0 && left == 0 {
			return
		}
		if time.Now().After(deadline) {
			s.t.Errorf("after the load, %d accepted requests have not expired and %d requests are still in etcd", s.led.openCount(), left)
			return
		}
		time.Sleep(time.Second)
	}
}

// awaitIdle waits until no sandbox process, container or scratch directory
// is left: the pools stop the sandboxes idle for --pool-idle-timeout.
func (s *soak) awaitIdle(what string) {
	s.http.CloseIdleConnections()
	deadline := time.Now().Add(poolIdle + time.Minute)
	for {
		left := ""
		for _, b := range s.boxes {
			if bs := b.sample(); bs.procs+bs.containers+bs.scratch > 0 {
				left += fmt.Sprintf(" %s: %d processes, %d containers, %d scratch directories;", b.kind, bs.procs, bs.containers, bs.scratch)
			}
		}
		if left == "" {
			return
		}
		if time.Now().After(deadline) {
			s.t.Errorf("timed out waiting for %s; leaked:%s", what, left)
			return
		}
		time.Sleep(time.Second)
	}
}

// check asserts what the soak must show, and logs the figures.
//
// Nothing lost and no wrong answer; every non-blocking request expired and
// nothing left in etcd (drain); every handler update ran; etcd raised no
// alarm.
//
// etcd levels off: the most space in use in the last third is at most
// dbGrowth times that of the settled window plus dbSlack. With compaction,
// the space in use follows the history kept (30 s, and the compactor's
// lag): it fills during the first compactKeep of load, then stays, so the
// settled window runs from compactKeep+sampleEvery to half the run (40 to
// 60 s in the 2-minute run); it swings by a couple of word counts' writes
// (about 3 MiB each) between samples, hence dbSlack. Without compaction it
// grows with every write: from 60 s of writes at the end of the settled
// window to 120 s at the end of the last third (and past the quota) in the
// 2-minute run. etcd's db file stays below dbMargin of the quota.
//
// The gateway and the runners level off: the highest RSS of the last third
// is at most rssGrowth times that of the first plus rssSlack (Go's heap
// target moves them by about 10 MiB under this load; a leak of one word
// count's 300 KB body per request is some 10 MiB a minute, out of bounds
// within the 10-minute run), and goroutines at most goroutineGrowth times
// plus goroutineSlack (in-flight requests move them by a few dozen; a
// goroutine leaked per request adds hundreds a minute). jobx up's RSS is
// bounded alike from etcdSettles on: in shorter runs etcd's memory is
// still filling (its raft log, up to its snapshot count of entries).
//
// Back at idle, once the pools stopped every sandbox (awaitIdle), the
// goroutines and descriptors of every process are within idleGoroutines
// and idleFDs of the idle baseline taken before the load, after the
// warm-up's sandboxes had idled out: one leaked per handler update, or per
// word count, exceeds them.
func (s *soak) check(d time.Duration, base, end soakSample) {
	t := s.t
	var first, settled, last []soakSample
	for _, sm := range s.samples {
		if sm.at > 0 && sm.at >= compactKeep+sampleEvery && sm.at <= d/2 {
			settled = append(settled, sm)
		}
		switch {
		case sm.at <= 0:
		case sm.at <= d/3:
			first = append(first, sm)
		case sm.at > 2*d/3 && sm.at <= d+sampleEvery/2:
			last = append(last, sm)
		}
	}
	if len(first) == 0 || len(settled) == 0 || len(last) == 0 {
		t.Fatalf("too few samples: %d in the first third, %d in the settled window, %d in the last third", len(first), len(settled), len(last))
	}
	peak := func(ss []soakSample, f func(soakSample) int64) int64 {
		var m int64
		for _, sm := range ss {
			m = max(m, f(sm))
		}
		return m
	}
	const mib = 1 << 20
	var levels []string
	bound := func(what string, from []soakSample, f func(soakSample) int64, growth float64, slack, unit int64, assert bool) {
		a, b := peak(from, f), peak(last, f)
		limit := int64(growth*float64(a)) + slack
		verdict := "ok"
		switch {
		case !assert:
			verdict = "reported"
		case b > limit:
			verdict = "EXCEEDED"
			t.Errorf("%s: %d in the last third, over %d (%.2fx the earlier window's %d, plus %d)", what, b/unit, limit/unit, growth, a/unit, slack/unit)
		}
		levels = append(levels, fmt.Sprintf("%s %d -> %d (bound %d, %s)", what, a/unit, b/unit, limit/unit, verdict))
	}
	bound("etcd in use MiB", settled, func(sm soakSample) int64 { return sm.dbInUse }, dbGrowth, dbSlack, mib, true)
	bound("etcd db MiB", settled, func(sm soakSample) int64 { return sm.dbSize }, dbGrowth, dbSlack, mib, true)
	procs := []struct {
		name   string
		of     func(soakSample) procSample
		assert bool
	}{
		{"gateway", func(sm soakSample) procSample { return sm.gw }, true},
		{"jobx up", func(sm soakSample) procSample { return sm.up }, d >= etcdSettles},
	}
	for i, b := range s.boxes {
		procs = append(procs, struct {
			name   string
			of     func(soakSample) procSample
			assert bool
		}{b.kind + " runner", func(sm soakSample) procSample { return sm.boxes[i].procSample }, true})
	}
	for _, p := range procs {
		bound(p.name+" RSS MiB", first, func(sm soakSample) int64 { return p.of(sm).rss }, rssGrowth, rssSlack, mib, p.assert)
		bound(p.name+" goroutines", first, func(sm soakSample) int64 { return int64(p.of(sm).goroutines) }, goroutineGrowth, goroutineSlack, 1, true)
	}
	s.log("  levels, first third (etcd: settled window) -> last third: " + strings.Join(levels, "; "))

	maxDB := peak(s.samples, func(sm soakSample) int64 { return sm.dbSize })
	if maxDB > int64(dbMargin*etcdQuota) {
		t.Errorf("etcd's db reached %d MiB, over %.0f%% of the %d MiB quota", maxDB/mib, 100*dbMargin, etcdQuota/mib)
	}
	if alarms, err := s.cli.AlarmList(context.Background()); err != nil || len(alarms.Alarms) > 0 {
		t.Errorf("etcd alarms: %v %v", alarms, err)
	}
	sent := metricValue(s.etcd, "etcd_network_client_grpc_received_bytes_total")
	s.log(fmt.Sprintf("  etcd: clients sent it %.0f MiB (its quota: %d MiB); %d compactions; its db at most %.1f MiB (bound %.0f)",
		sent/mib, etcdQuota/mib, end.compactions, float64(maxDB)/mib, dbMargin*etcdQuota/mib))

	var idle []string
	idleBound := func(what string, a, b, slack int) {
		verdict := "ok"
		if b > a+slack {
			verdict = "LEAKED"
			t.Errorf("%s at idle: %d after the load, %d before it (at most %d more allowed)", what, b, a, slack)
		}
		idle = append(idle, fmt.Sprintf("%s %d -> %d (%s)", what, a, b, verdict))
	}
	for _, p := range procs {
		idleBound(p.name+" goroutines", p.of(base).goroutines, p.of(end).goroutines, idleGoroutines)
		idleBound(p.name+" fds", p.of(base).fds, p.of(end).fds, idleFDs)
	}
	s.log("  idle, before -> after the load (sandbox processes, containers, scratch directories: 0 -> 0): " + strings.Join(idle, "; "))

	for _, b := range s.boxes {
		if g, seen := b.gen.Load(), b.seenGen.Load(); seen != g {
			t.Errorf("%s: handler generation %d synced, but results show at most %d", b.kind, g, seen)
		}
	}
	l := s.led
	l.mu.Lock()
	defer l.mu.Unlock()
	lost := l.lost(time.Time{})
	s.log(fmt.Sprintf("  total: %d done, %d failed (kind handler_failed, as the failing job must), %d lost, %d wrong; blocking: %d trivial, %d word counts, %d failing; non-blocking: %d accepted, %d expired; %d handler updates per sandbox",
		l.done, l.failed, lost, len(l.errors), l.jobs["trivial"], l.jobs["wordcount"], l.jobs["fail"], l.nb, l.expired, s.boxes[0].gen.Load()))
	if lost > 0 {
		t.Errorf("%d requests lost", lost)
	}
	for i, e := range l.errors {
		if i == 10 {
			t.Errorf("... %d more wrong answers", len(l.errors)-10)
			break
		}
		t.Error(e)
	}
}

// log prints a line of the soak's report, in the test's log and in the
// report make test prints (JOBX_FAULT_REPORT).
func (s *soak) log(line string) {
	s.t.Log(line)
	recordSoak(line)
}

// post submits a job; the answer's request id comes from its header.
func (s *soak) post(wf, job string, body []byte, query string) (status int, id string, ans soakAnswer, err error) {
	u := s.url + "/job/" + wf + "/" + job
	if query != "" {
		u += "?" + query
	}
	resp, err := s.http.Post(u, "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, "", ans, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, "", ans, err
	}
	if err := json.Unmarshal(raw, &ans); err != nil && resp.StatusCode < 300 {
		return resp.StatusCode, "", ans, fmt.Errorf("%s: %w", raw, err)
	}
	ans.raw = string(raw)
	return resp.StatusCode, resp.Header.Get("X-MR-REQUEST-ID"), ans, nil
}

// soakAnswer is a gateway's answer: a POST's, or a GET /request's.
type soakAnswer struct {
	IsDone bool   `json:"is_done"`
	State  string `json:"state"`
	Result struct {
		Pairs [][2]json.RawMessage `json:"pairs"`
	} `json:"result"`
	Error struct {
		Kind string `json:"kind"`
	} `json:"error"`
	raw string
}

// blocking submits a blocking request and files its end: when wantFail, it
// must fail with kind handler_failed; otherwise its result must pass
// check. A request past --blocking-timeout (504) is polled until it ends,
// or stays open, lost.
func (s *soak) blocking(b *soakBox, job string, body []byte, wantFail bool, check func([][2]json.RawMessage) error) {
	start := time.Now()
	status, id, ans, err := s.post(b.wf, job, body, "")
	what := b.wf + "/" + job
	switch {
	case err != nil:
		s.led.wrong(fmt.Sprintf("%s: %v", what, err))
		return
	case status == http.StatusGatewayTimeout && id != "":
		s.led.accept(id, b.wf, false)
		ans = soakAnswer{}
		for !ans.IsDone && time.Since(start) < lostAfter {
			time.Sleep(time.Second)
			if r, err := s.http.Get(s.url + "/request/" + b.wf + "/" + id); err == nil {
				json.NewDecoder(r.Body).Decode(&ans)
				r.Body.Close()
			}
		}
		if !ans.IsDone {
			return
		}
		s.led.close(id)
	case status != http.StatusOK && status != http.StatusInternalServerError:
		s.led.wrong(fmt.Sprintf("%s: status %d: %.300s", what, status, ans.raw))
		return
	}
	switch {
	case wantFail && ans.State == kvmodel.StateFailed && ans.Error.Kind == "handler_failed":
		s.led.end(job, false)
	case wantFail:
		s.led.wrong(fmt.Sprintf("%s: want a handler_failed failure, got %s: %.300s", what, ans.State, ans.raw))
	case ans.State != kvmodel.StateDone:
		s.led.wrong(fmt.Sprintf("%s: %s: %.300s", what, ans.State, ans.raw))
	default:
		if err := check(ans.Result.Pairs); err != nil {
			s.led.wrong(fmt.Sprintf("%s: wrong result: %v", what, err))
			return
		}
		s.led.end(job, true)
	}
}

// trivial runs the echo job: its result is x and the generation of the
// mapper that ran it.
func (s *soak) trivial(b *soakBox, x int) {
	s.blocking(b, "trivial", fmt.Appendf(nil, `{"arguments":{"x":%d}}`, x), false, func(pairs [][2]json.RawMessage) error {
		got := map[string]int64{}
		for _, p := range pairs {
			var k string
			var v int64
			if json.Unmarshal(p[0], &k) != nil || json.Unmarshal(p[1], &v) != nil {
				return fmt.Errorf("pair %s", p)
			}
			got[k] = v
		}
		gen, ok := got["gen"]
		if len(got) != 2 || got["x"] != int64(x) || !ok || gen > b.gen.Load() {
			return fmt.Errorf("want x=%d and a generation up to %d, got %v", x, b.gen.Load(), got)
		}
		for seen := b.seenGen.Load(); gen > seen; seen = b.seenGen.Load() {
			if b.seenGen.CompareAndSwap(seen, gen) {
				break
			}
		}
		return nil
	})
}

// wordcount submits a word count over docs: blocking, its result checked
// word for word, or non-blocking, never fetched.
func (s *soak) wordcount(b *soakBox, docs docSet, nonBlocking bool) {
	if !nonBlocking {
		s.blocking(b, "wordcount", docs.body, false, docs.check)
		return
	}
	status, id, ans, err := s.post(b.wf, "wordcount", docs.body, "blocking=false")
	if err != nil || status != http.StatusAccepted || id == "" {
		s.led.wrong(fmt.Sprintf("%s/wordcount, non-blocking: status %d, %v: %.300s", b.wf, status, err, ans.raw))
		return
	}
	s.led.accept(id, b.wf, true)
}

func (s *soak) fail(b *soakBox) {
	s.blocking(b, "fail", []byte(`{"arguments":{}}`), true, nil)
}

// docSet is a word count's documents as a request body, and their counts.
type docSet struct {
	body  []byte
	count map[string]int64
}

// newDocSet makes n documents of 1 to 2 KB over a 300-word vocabulary,
// the same for the same seed.
func newDocSet(n int, seed uint64) docSet {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	vocab := make([]string, 300)
	for i := range vocab {
		vocab[i] = fmt.Sprintf("w%x%c", i, 'a'+rng.IntN(26))
	}
	args := map[string]string{}
	ds := docSet{count: map[string]int64{}}
	for i := range n {
		var b strings.Builder
		for size := 1024 + rng.IntN(1024); b.Len() < size; {
			w := vocab[rng.IntN(len(vocab))]
			b.WriteString(w + " ")
			ds.count[w]++
		}
		args[fmt.Sprintf("doc%03d", i)] = b.String()
	}
	ds.body, _ = json.Marshal(map[string]any{"arguments": args})
	return ds
}

func (ds docSet) check(pairs [][2]json.RawMessage) error {
	if len(pairs) != len(ds.count) {
		return fmt.Errorf("%d words, want %d", len(pairs), len(ds.count))
	}
	for _, p := range pairs {
		var w string
		var n int64
		if json.Unmarshal(p[0], &w) != nil || json.Unmarshal(p[1], &n) != nil || ds.count[w] != n {
			return fmt.Errorf("pair %s, want %d", p, ds.count[w])
		}
	}
	return nil
}

// ledger counts the requests' ends. A request is open from its acceptance
// until it ends (blocking) or expires (non-blocking); the mutex guards
// every field.
type ledger struct {
	mu                        sync.Mutex
	done, failed, nb, expired int
	jobs                      map[string]int // blocking requests ended, by job
	errors                    []string       // wrong answers
	open                      map[string]*openReq
}

type openReq struct {
	wf          string
	nonBlocking bool
	accepted    time.Time
	ended       bool
}

func newLedger() *ledger {
	return &ledger{jobs: map[string]int{}, open: map[string]*openReq{}}
}

func (l *ledger) end(job string, done bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.jobs[job]++
	if done {
		l.done++
	} else {
		l.failed++
	}
}

func (l *ledger) wrong(e string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errors = append(l.errors, e)
}

func (l *ledger) errs() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.errors)
}

func (l *ledger) accept(id, wf string, nonBlocking bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open[id] = &openReq{wf: wf, nonBlocking: nonBlocking, accepted: time.Now()}
	if nonBlocking {
		l.nb++
	}
}

func (l *ledger) close(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.open, id)
}

func (l *ledger) openCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.open)
}

// lost counts the open requests, accepted more than lostAfter before now,
// that have not ended; a zero now counts every one. l.mu must be held.
func (l *ledger) lost(now time.Time) int {
	n := 0
	for _, o := range l.open {
		if !o.ended && (now.IsZero() || now.Sub(o.accepted) > lostAfter) {
			n++
		}
	}
	return n
}

// sweep looks the open non-blocking requests up in etcd (never through the
// gateway: nobody fetches them). One that is gone has ended and expired.
func (s *soak) sweep() {
	l := s.led
	l.mu.Lock()
	var ids []string
	for id, o := range l.open {
		if o.nonBlocking {
			ids = append(ids, id)
		}
	}
	l.mu.Unlock()
	for _, id := range ids {
		l.mu.Lock()
		o := l.open[id]
		l.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		req := &kvmodel.Request{WorkflowName: o.wf, ID: id}
		err := s.store.Get(ctx, req)
		cancel()
		l.mu.Lock()
		switch {
		case errors.Is(err, kvmodel.ErrNotFound):
			delete(l.open, id)
			l.expired++
		case err == nil && req.IsDone && !o.ended:
			o.ended = true
			if req.State != kvmodel.StateDone {
				l.errors = append(l.errors, fmt.Sprintf("%s/wordcount %s, non-blocking: %s", o.wf, id, req.State))
			}
		}
		l.mu.Unlock()
	}
}
