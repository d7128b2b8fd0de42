package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/jobx/jobx/gateway"
	"github.com/jobx/jobx/internal/queue"
	"github.com/jobx/jobx/internal/testenv"
	"github.com/jobx/jobx/internal/testenv/testbox"
	"github.com/jobx/jobx/kvmodel"
	"github.com/jobx/jobx/runner"
	ctrd "github.com/jobx/jobx/sandbox/containerd"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The fault matrix: each test injects one kind of fault while requests of
// a three-level job run, and checks that every request ends (with the right
// result, or where the test allows it a clear error) and that no leaf's
// result is lost or counted twice. The counts go to the fault report
// (main_test.go).

// treeJob defines workflow wf's job "tree": the root branches to `b` mid
// invocations, each branches to `l` leaves, each leaf sleeps `ms` and
// returns its own id; every reduction concatenates its children's ids. The
// result is one pair ("ids", [every leaf id]): a lost leaf is a missing id,
// a leaf counted twice a repeated one.
func treeJob(c *cluster, wf string) {
	c.workflow(wf)
	for _, h := range treeHandlers {
		c.handler(wf, h.name, h.file, h.src)
	}
	c.step(wf, "leaf", "map_leaf", "", "collect")
	c.step(wf, "mid", "map_mid", "", "collect")
	c.step(wf, "root", "map_root", "", "collect")
	c.job(wf, "tree", "root")
}

// treeHandlers are the tree job's handlers: name, file, source.
var treeHandlers = []struct{ name, file, src string }{
	{"map_root", "map/root.py", `"""
Branch to one mid invocation per b.

**
handler_type: mapper
"""
b, l, ms = arguments[0][1]
yield MrConfigureToMap('mid')
for i in range(b):
    yield (i, [i, l, ms])
`},
	{"map_mid", "map/mid.py", `"""
Branch to l leaves.

**
handler_type: mapper
"""
k, (i, l, ms) = arguments[0]
yield MrConfigureToMap('leaf')
for j in range(l):
    yield (i * l + j, ms)
`},
	{"map_leaf", "map/leaf.py", `"""
Sleep, then return the leaf's id.

**
handler_type: mapper
"""
import time
k, ms = arguments[0]
time.sleep(ms / 1000.0)
yield MrConfigureToReturn()
yield ('ids', [k])
`},
	{"collect", "reduce/collect.py", `"""
Concatenate the id lists of each key.

**
handler_type: reducer
"""
out = {}
for k, vs in results:
    out.setdefault(k, [])
    for v in vs:
        out[k].extend(v)
return out.items()
`},
}

// treeShape is a tree job's arguments.
type treeShape struct{ b, l, ms int }

func (s treeShape) body() string {
	return fmt.Sprintf(`{"arguments":{"shape":[%d,%d,%d]}}`, s.b, s.l, s.ms)
}

// outcome classifies an ended request's answer (GET /request/...).
type outcome struct {
	done, failed bool
	lost, dup    int
	err          string
}

// judge reads a finished tree request's status body.
func judge(body map[string]any, s treeShape) outcome {
	if body["is_done"] != true {
		return outcome{lost: s.b * s.l, err: "never ended"}
	}
	if body["state"] == "failed" {
		e, _ := json.Marshal(body["error"])
		return outcome{failed: true, err: string(e)}
	}
	res, _ := body["result"].(map[string]any)
	pairs, _ := res["pairs"].([]any)
	seen := map[int]int{}
	for _, p := range pairs {
		kv, _ := p.([]any)
		if len(kv) != 2 || kv[0] != "ids" {
			return outcome{done: true, lost: s.b * s.l, err: fmt.Sprintf("unexpected pair %v", p)}
		}
		ids, _ := kv[1].([]any)
		for _, id := range ids {
			f, _ := id.(float64)
			seen[int(f)]++
		}
	}
	o := outcome{done: true}
	for i := 0; i < s.b*s.l; i++ {
		switch n := seen[i]; {
		case n == 0:
			o.lost++
		case n > 1:
			o.dup += n - 1
		}
	}
	return o
}

// awaitAll polls the requests' status URLs until each has ended or d has
// passed, and tallies them into row. allowFailed says whether a clear error
// counts as a correct end (etcd lost mid-job) or as a failure of the test.
func awaitAll(t *testing.T, c *cluster, locs []string, s treeShape, d time.Duration, row *faultRow, allowFailed bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for _, loc := range locs {
		var body map[string]any
		for {
			r := c.get(loc)
			body = r.body
			if body["is_done"] == true || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		o := judge(body, s)
		row.Requests++
		row.Lost += o.lost
		row.Dup += o.dup
		switch {
		case o.failed && allowFailed && o.err != "":
			row.Failed++
			t.Logf("%s failed clearly: %s", loc, o.err)
		case o.failed:
			t.Errorf("%s failed: %s", loc, o.err)
		case o.done && o.lost == 0 && o.dup == 0:
			row.Completed++
		default:
			t.Errorf("%s: %s (lost %d, duplicated %d)", loc, o.err, o.lost, o.dup)
		}
	}
}

// get is do("GET") that tolerates a gateway that is not up (status 0).
func (c *cluster) get(path string) response {
	resp, err := http.Get(c.url + path)
	if err != nil {
		return response{}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := response{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	json.Unmarshal(raw, &r.body)
	return r
}

// submitTrees submits n non-blocking tree requests and returns their status URLs.
func submitTrees(t *testing.T, c *cluster, wf string, s treeShape, n int) []string {
	t.Helper()
	var locs []string
	for range n {
		r := c.post(wf, "tree", s.body(), "blocking=false&keep=true")
		if r.status != http.StatusAccepted {
			t.Fatalf("submit: %d %s", r.status, r.raw)
		}
		locs = append(locs, r.header.Get("Location"))
	}
	return locs
}

// faultRunner makes in-process runners quick to notice and recover faults.
func faultRunner(o *runner.Options) {
	o.MsgTimeout = 2 * time.Second
	o.StallAfter = 3 * time.Second
	o.LeaseTTL = 3 * time.Second
	o.RequeueDelay = 250 * time.Millisecond
	o.MaxAttempts = 8
	o.Concurrency = 6
}

// treeCluster loads the tree job on c and starts two runners quick to
// recover; it returns the shape of the requests a restart test submits and
// how many restarts it injects (more in make test-faults).
func treeCluster(c *cluster) (treeShape, int) {
	treeJob(c, "wf")
	c.addRunner(faultRunner)
	c.addRunner(faultRunner)
	if fullFaults() {
		return treeShape{b: 3, l: 4, ms: 40}, 3
	}
	return treeShape{b: 3, l: 4, ms: 40}, 1
}

// runnerProc is a `jobx runner` process, killed with SIGKILL by the tests.
// removeRunnerContainers removes the containers of runners ids on the
// containerd at addr.
func removeRunnerContainers(t *testing.T, addr string, ids ...string) {
	cli, err := containerd.New(addr)
	if err != nil {
		t.Errorf("containerd: %v", err)
		return
	}
	defer cli.Close()
	for _, id := range ids {
		ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ctrd.NamespaceFor(id)), 30*time.Second)
		if _, err := ctrd.RemoveContainers(ctx, cli); err != nil {
			t.Errorf("remove the containers of runner %s: %v", id, err)
		}
		cancel()
	}
}

type runnerProc struct {
	id     string
	cmd    *exec.Cmd
	exited chan struct{}
}

// startRunnerProc starts `jobx runner` with id on c's etcd and nsqd, with
// containerd sandboxes when ctrd (a socket) is set, else the namespace
// sandbox (the default without containerd).
func startRunnerProc(t *testing.T, c *cluster, bin, id, ctrd, images string) *runnerProc {
	t.Helper()
	args := []string{"runner", "--etcd", c.etcd, "--nsqd", c.nsqd, "--id", id, "--dir", t.TempDir(),
		"--concurrency", "4", "--log-level", "warn", "--msg-timeout", "2s"}
	if ctrd != "" {
		args = append(args, "--sandbox", "containerd", "--containerd", ctrd, "--images-dir", images, "--pool-max-idle", "2")
	} else {
		args = append(args, "--sandbox", "namespace")
	}
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &runnerProc{id: id, cmd: cmd, exited: make(chan struct{})}
	go func() { cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() { p.stop(syscall.SIGTERM) })
	waitFor(t, "runner "+id+" to announce itself", 60*time.Second, func() bool {
		select {
		case <-p.exited:
			t.Fatalf("runner %s exited", id)
		default:
		}
		return runnerAnnounced(t, c, id)
	})
	return p
}

func (p *runnerProc) stop(sig syscall.Signal) {
	select {
	case <-p.exited:
		return
	default:
	}
	p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(40 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
}

// TestFaultRunnerKilled kills -9 one of two runner processes at a random
// point of running tree jobs, again and again, each time starting it anew
// under the same id (which removes the sandboxes the dead one left);
// nsqd redelivers the dead runner's messages after --msg-timeout.
func TestFaultRunnerKilled(t *testing.T) {
	bin := jobxBinary(t)
	ctrd, images := "", ""
	if testbox.SkipContainerd() == "" {
		// Runs last: a shim of a task whose creation a killed runner
		// abandoned has no container to remove, and outlived the tests.
		t.Cleanup(func() {
			if left := shimsServing(ctrd); len(left) > 0 {
				t.Errorf("shims of the test's containerd still run after it stopped: %v", left)
			}
		})
		ctrd = testbox.Containerd(t)
		images = testbox.Images(t).Dir()
		// Runs after the runners stop: a runner restarted in the last round
		// and stopped before it was up never removed what its killed
		// predecessor left (its next start would), so the test does.
		t.Cleanup(func() { removeRunnerContainers(t, ctrd, "k0", "k1") })
	}
	c := startCluster(t)
	treeJob(c, "wf")
	rounds := 3
	if fullFaults() {
		rounds = 30
	}
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	t.Logf("seed %d, %d rounds, containerd %v", seed, rounds, ctrd != "")
	procs := []*runnerProc{
		startRunnerProc(t, c, bin, "k0", ctrd, images),
		startRunnerProc(t, c, bin, "k1", ctrd, images),
	}
	s := treeShape{b: 3, l: 4, ms: 40}
	row := faultRow{Fault: "kill -9 a runner at a random point"}
	if ctrd != "" {
		row.Fault += " (containerd)"
	}
	for round := range rounds {
		locs := submitTrees(t, c, "wf", s, 2)
		time.Sleep(time.Duration(rng.IntN(1200)) * time.Millisecond)
		i := rng.IntN(len(procs))
		procs[i].stop(syscall.SIGKILL)
		row.Injected++
		start := time.Now()
		procs[i] = startRunnerProc(t, c, bin, procs[i].id, ctrd, images)
		restarted := time.Since(start)
		awaitAll(t, c, locs, s, 60*time.Second, &row, false)
		t.Logf("round %d: killed %s; restarted in %s; requests done %s after the kill", round, procs[i].id, restarted.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
		if t.Failed() {
			t.Fatalf("round %d failed", round)
		}
	}
	recordFault(row)
	if row.Lost+row.Dup > 0 {
		t.Fatalf("lost %d, duplicated %d", row.Lost, row.Dup)
	}
}

// TestFaultNSQDRestarted restarts the only nsqd (disk-backed: no message in
// memory) mid-job: cleanly (it writes the messages it holds, in flight
// included, to disk) and with SIGKILL (the messages it had in flight are
// gone; the runners' recovery publishes the stalled requests' pending
// invocations again after --stall-after).
func TestFaultNSQDRestarted(t *testing.T) {
	nsqd := testenv.NSQDProc(t, true)
	c := startClusterWithNSQD(t, nsqd.Addr)
	s, rounds := treeCluster(c)
	for _, kill := range []bool{false, true} {
		row := faultRow{Fault: "nsqd restarted mid-job (SIGTERM)"}
		if kill {
			row.Fault = "nsqd killed -9 mid-job, restarted"
		}
		for range rounds {
			locs := submitTrees(t, c, "wf", s, 3)
			time.Sleep(300 * time.Millisecond)
			if kill {
				nsqd.Kill()
			} else {
				nsqd.Stop()
			}
			row.Injected++
			time.Sleep(500 * time.Millisecond)
			nsqd.Start()
			awaitAll(t, c, locs, s, 60*time.Second, &row, false)
		}
		recordFault(row)
	}
}

// TestFaultNSQDLost kills -9 one of two nsqd while requests run and does
// not start it again. Gateway and runners publish to both (round robin) and
// consume from both; what the dead one queued is gone. The recovery runner,
// watching both nsqd's /stats, notices the loss and publishes the lost work
// again once it is nowhere (no runner holds it, the live nsqd queues
// nothing of its topic): every request completes within a minute, long
// before --stall-after (10 minutes here), and none twice.
func TestFaultNSQDLost(t *testing.T) {
	n1, n2 := testenv.NSQDProc(t, false), testenv.NSQDProc(t, false)
	both, bothHTTP := []string{n1.Addr, n2.Addr}, []string{n1.HTTPAddr, n2.HTTPAddr}
	c := startClusterWithNSQD(t, n1.Addr, func(o *gateway.Options) { o.NSQDs = both })
	treeJob(c, "wf")
	for range 2 {
		c.addRunner(faultRunner, func(o *runner.Options) {
			o.NSQDs, o.NSQDHTTP, o.StallAfter = both, bothHTTP, 10*time.Minute
		})
	}
	s := treeShape{b: 3, l: 4, ms: 300}
	row := faultRow{Fault: "nsqd killed -9 mid-job, not restarted (of two)"}
	locs := submitTrees(t, c, "wf", s, 8)
	// Kill it while it queues leaves that no runner has taken yet.
	var queued int64
	waitFor(t, "nsqd to queue leaves", 30*time.Second, func() bool {
		queued = nsqQueued(t, n1.HTTPAddr)
		return queued > 0
	})
	n1.Kill()
	row.Injected++
	start := time.Now()
	awaitAll(t, c, locs, s, time.Minute, &row, false)
	t.Logf("killed an nsqd that queued %d messages; every request done %s after the kill", queued, time.Since(start).Round(time.Millisecond))
	recordFault(row)
}

// nsqQueued sums the messages nsqd's /stats show queued, on topics and
// channels.
func nsqQueued(t *testing.T, httpAddr string) int64 {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/stats?format=json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Topics []struct {
			Depth    int64 `json:"depth"`
			Channels []struct {
				Depth int64 `json:"depth"`
			} `json:"channels"`
		} `json:"topics"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, tp := range st.Topics {
		n += tp.Depth
		for _, ch := range tp.Channels {
			n += ch.Depth
		}
	}
	return n
}

// A message delivered again while its invocation runs (published again by
// the recovery, or by a runner re-driving follow-ups) does not run the
// handler a second time: the runner that holds the invocation drops it.
func TestDuplicateOfARunningInvocationDoesNotRunItAgain(t *testing.T) {
	c := startCluster(t)
	shared := sharedFS(t)
	c.addRunner(shared.runner)
	shared.slowJob(c, "wf", 2)
	r := c.post("wf", "slow", `{"arguments":{}}`, "blocking=false&keep=true")
	waitFor(t, "the mapper to run", 30*time.Second, func() bool { return shared.runs("wf") > 0 })
	req := &kvmodel.Request{WorkflowName: "wf", ID: r.header.Get("X-MR-REQUEST-ID")}
	if err := c.store.Get(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	pub, err := queue.NewPublisher([]string{c.nsqd}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	msg := queue.Message{JobClass: kvmodel.DirectionMap, WorkflowName: "wf", RequestID: req.ID, InvocationID: req.InvocationID, StepName: "slow"}
	if err := pub.Publish(kvmodel.MapTopic("wf", "general"), msg.Encode(), msg.Encode()); err != nil {
		t.Fatal(err)
	}
	var got response
	waitFor(t, "the request to end", 30*time.Second, func() bool {
		got = c.get(r.header.Get("Location"))
		return got.body["is_done"] == true
	})
	if got.body["state"] != "done" {
		t.Fatalf("request: %s", got.raw)
	}
	// A duplicate still queued once the first run ended would find the
	// invocation done: give one a moment to be delivered.
	time.Sleep(500 * time.Millisecond)
	if n := shared.runs("wf"); n != 1 {
		t.Fatalf("the mapper ran %d times", n)
	}
}

// When the recovery role changes hands, the new recovery runner looks for
// lost work (nobody watched the queues meanwhile), but an invocation that a
// live runner holds is not published again, however long it runs.
func TestRecoveryLeavesWorkInProgressAlone(t *testing.T) {
	tcp, httpAddr := testenv.NSQDWithHTTP(t)
	c := startClusterWithNSQD(t, tcp)
	shared := sharedFS(t)
	quick := func(o *runner.Options) {
		faultRunner(o)
		o.NSQDHTTP, o.StallAfter = []string{httpAddr}, 10*time.Minute
	}
	// The first runner takes the recovery role and serves nothing here.
	_, stopLeader := c.addRunner(quick, func(o *runner.Options) { o.Workflows = []string{"elsewhere"} })
	c.addRunner(quick, shared.runner)
	shared.slowJob(c, "wf", 12)
	r := c.post("wf", "slow", `{"arguments":{}}`, "blocking=false&keep=true")
	waitFor(t, "the mapper to run", 30*time.Second, func() bool { return shared.runs("wf") > 0 })
	// A third runner, which would take the invocation if it were published
	// again; then the recovery runner goes.
	c.addRunner(quick, shared.runner)
	stopLeader()
	var got response
	waitFor(t, "the request to end", time.Minute, func() bool {
		got = c.get(r.header.Get("Location"))
		return got.body["is_done"] == true
	})
	if got.body["state"] != "done" {
		t.Fatalf("request: %s", got.raw)
	}
	if n := shared.runs("wf"); n != 1 {
		t.Fatalf("the mapper ran %d times", n)
	}
}

// TestFaultEtcdRestarted kills -9 the only etcd mid-job and starts it again
// on the same data. Runners retry what they could not record (with growing
// delays) and their requests complete; a request whose retries ran out
// fails with kind infrastructure. None hangs.
func TestFaultEtcdRestarted(t *testing.T) {
	etcd := testenv.EtcdProc(t)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{etcd.Addr}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	c := startClusterOn(t, etcd.Addr, cli, testenv.NSQD(t))
	s, rounds := treeCluster(c)
	row := faultRow{Fault: "etcd killed -9 mid-job, restarted"}
	for range rounds {
		locs := submitTrees(t, c, "wf", s, 3)
		time.Sleep(300 * time.Millisecond)
		etcd.Kill()
		row.Injected++
		time.Sleep(time.Second)
		etcd.Start()
		awaitAll(t, c, locs, s, 90*time.Second, &row, true)
	}
	recordFault(row)
}

// TestFaultGatewayRestarted stops the gateway while non-blocking requests
// (and one blocking request) run and starts another on the same address:
// the jobs go on, and every result is fetchable from the new gateway.
func TestFaultGatewayRestarted(t *testing.T) {
	c := startCluster(t)
	treeJob(c, "wf")
	c.addRunner(faultRunner)
	s := treeShape{b: 2, l: 4, ms: 100}
	row := faultRow{Fault: "gateway restarted mid-job"}
	locs := submitTrees(t, c, "wf", s, 3)
	blocking := make(chan error, 1)
	go func() {
		resp, err := http.Post(c.url+"/job/wf/tree", "application/json", strings.NewReader(s.body()))
		if err == nil {
			resp.Body.Close()
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		blocking <- err
	}()
	time.Sleep(200 * time.Millisecond)
	addr := strings.TrimPrefix(c.url, "http://")
	c.stopGateway()
	row.Injected++
	t.Logf("blocking client when its gateway stopped: %v", <-blocking)
	c.startGateway(addr)
	awaitAll(t, c, locs, s, 60*time.Second, &row, false)
	recordFault(row)
}

// TestFaultRunnerPartitioned cuts one runner off from etcd (its etcd
// traffic goes through a TCP relay the test closes): once its registry
// lease ends it stops taking messages (nsqd's /stats show it ready for
// none and delivering it nothing), the other runner does the work, and
// after the cut heals it takes work again.
func TestFaultRunnerPartitioned(t *testing.T) {
	tcp, httpAddr := testenv.NSQDWithHTTP(t)
	c := startClusterWithNSQD(t, tcp)
	treeJob(c, "wf")
	relay := testenv.NewRelay(t, strings.TrimPrefix(c.etcd, "http://"))
	cutCli, err := clientv3.New(clientv3.Config{Endpoints: []string{"http://" + relay.Addr()}, DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cutCli.Close() })
	victim, _ := c.addRunner(faultRunner, func(o *runner.Options) { o.ID, o.Etcd = "cut-off", cutCli })
	_ = victim
	c.addRunner(faultRunner)
	s := treeShape{b: 2, l: 3, ms: 20}
	row := faultRow{Fault: "runner partitioned from etcd"}

	relay.Cut()
	row.Injected++
	waitFor(t, "the cut-off runner's registry entry to expire", 20*time.Second, func() bool { return !runnerAnnounced(t, c, "cut-off") })
	waitFor(t, "the cut-off runner to stop taking messages", 10*time.Second, func() bool {
		ready, _ := nsqClient(t, httpAddr, "cut-off")
		return ready == 0
	})
	_, before := nsqClient(t, httpAddr, "cut-off")
	locs := submitTrees(t, c, "wf", s, 4)
	awaitAll(t, c, locs, s, 60*time.Second, &row, false)
	if _, after := nsqClient(t, httpAddr, "cut-off"); after != before {
		t.Errorf("nsqd delivered %d messages to the cut-off runner", after-before)
	}

	relay.Heal()
	waitFor(t, "the runner to announce itself again after the cut heals", 30*time.Second, func() bool { return runnerAnnounced(t, c, "cut-off") })
	waitFor(t, "the runner to take messages again", 10*time.Second, func() bool {
		ready, _ := nsqClient(t, httpAddr, "cut-off")
		return ready > 0
	})
	recordFault(row)
}

// nsqClient sums, over the topics and channels of nsqd's /stats, the ready
// count and the messages delivered of the connections of client id.
func nsqClient(t *testing.T, httpAddr, id string) (ready, delivered int64) {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/stats?format=json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Topics []struct {
			Channels []struct {
				Clients []struct {
					ClientID     string `json:"client_id"`
					ReadyCount   int64  `json:"ready_count"`
					MessageCount int64  `json:"message_count"`
				} `json:"clients"`
			} `json:"channels"`
		} `json:"topics"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	for _, tp := range st.Topics {
		for _, ch := range tp.Channels {
			for _, cl := range ch.Clients {
				if cl.ClientID == id {
					ready += cl.ReadyCount
					delivered += cl.MessageCount
				}
			}
		}
	}
	return ready, delivered
}

// TestFaultRecoveryAndDeadline covers the two ends of recovery without a
// crash: a request whose root message was never queued (as when a gateway
// dies between recording a request and publishing it) is found stalled and
// queued; a request that cannot finish fails at its deadline.
func TestFaultRecoveryAndDeadline(t *testing.T) {
	c := startCluster(t)
	treeJob(c, "wf")
	c.addRunner(faultRunner, func(o *runner.Options) { o.RequestDeadline = 20 * time.Second })
	s := treeShape{b: 2, l: 2, ms: 10}
	row := faultRow{Fault: "request recorded but never queued"}

	loc := recordUnqueued(t, c, "wf", "tree", s)
	row.Injected++
	awaitAll(t, c, []string{loc}, s, 30*time.Second, &row, false)
	recordFault(row)

	c.handler("wf", "map_hang", "map/hang.py", `"""
Never finish.

**
handler_type: mapper
timeout: 1h
"""
import time
time.sleep(3600)
yield ('never', 1)
`)
	c.step("wf", "hang", "map_hang", "", "collect")
	c.job("wf", "hang", "hang")
	r := c.post("wf", "hang", `{"arguments":{"x":1}}`, "blocking=false&keep=true")
	var got response
	waitFor(t, "the hung request to fail at its deadline", 60*time.Second, func() bool {
		got = c.get(r.header.Get("Location"))
		return got.body["is_done"] == true
	})
	if !strings.Contains(got.raw, `"kind":"deadline"`) || !strings.Contains(got.raw, "did not finish within 20s") {
		t.Fatalf("want a deadline failure, got %s", got.raw)
	}
}

// recordUnqueued writes a request and its root invocation the way the
// gateway does, but publishes nothing (as when a gateway dies between the
// two), and returns its status URL.
func recordUnqueued(t *testing.T, c *cluster, wf, job string, s treeShape) string {
	t.Helper()
	j := &kvmodel.Job{WorkflowName: wf, Name: job}
	if err := c.store.Get(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	reqID := kvmodel.NewID()
	root := &kvmodel.Invocation{ID: kvmodel.NewID(), WorkflowName: wf, RequestID: reqID, StepName: j.InitialStepName,
		Direction: kvmodel.DirectionMap, State: kvmodel.StatePending, CreatedTimestamp: kvmodel.Now()}
	req := &kvmodel.Request{ID: reqID, WorkflowName: wf, JobName: job, InvocationID: root.ID,
		State: kvmodel.StatePending, CreatedTimestamp: kvmodel.Now(), Keep: true}
	args := kvmodel.AppendPairItem(nil, kvmodel.Pair{Key: json.RawMessage(`"shape"`), Value: json.RawMessage(fmt.Sprintf("[%d,%d,%d]", s.b, s.l, s.ms))})
	if _, err := c.store.Commit(context.Background(), nil, kvmodel.DatasetOps(wf, root.ID, kvmodel.Arguments, args),
		[]kvmodel.Op{kvmodel.PutOp(root), kvmodel.PutOp(req)}); err != nil {
		t.Fatal(err)
	}
	return "/request/" + wf + "/" + reqID
}
