package main

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jobx/jobx/internal/etcdmaint"
	"github.com/jobx/jobx/internal/testenv"
	"github.com/jobx/jobx/kvmodel"
	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// newCLIWithQuota is newCLI on an etcd with a quota of quota bytes.
func newCLIWithQuota(t *testing.T, quota int64) (*cli, *clientv3.Client) {
	t.Helper()
	ep, c := testenv.EtcdWithQuota(t, quota)
	return &cli{t: t, endpoint: ep, store: kvmodel.NewStore(c), env: map[string]string{"JOBX_ETCD": ep}}, c
}

// fillEtcd puts 256 KiB values under /test/fill/ until etcd answers
// NOSPACE, and returns how many it took.
func fillEtcd(t *testing.T, c *clientv3.Client) int {
	t.Helper()
	v := strings.Repeat("x", 256<<10)
	for i := range 1000 {
		_, err := c.Put(t.Context(), fmt.Sprintf("/test/fill/%04d", i), v)
		if etcdmaint.IsNoSpace(err) {
			return i
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Fatal("no NOSPACE after 1000 puts of 256 KiB")
	return 0
}

func TestEtcdStatusShowsEachMembersSpaceRevisionAndAlarms(t *testing.T) {
	c := newCLI(t)
	out := c.ok("etcd", "status")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("want a header and one member:\n%s", out)
	}
	for _, col := range []string{"NAME", "ID", "ENDPOINT", "LEADER", "DB SIZE", "IN USE", "FREE", "QUOTA", "REVISION", "RAFT INDEX", "ALARMS"} {
		mustContain(t, "the header", lines[0], col)
	}
	mustContain(t, "the member's line", lines[1], "jobx ", c.endpoint, " yes ", " 2 GiB ", " -")

	var members []map[string]any
	if err := json.Unmarshal([]byte(c.ok("etcd", "status", "-o", "json")), &members); err != nil {
		t.Fatal(err)
	}
	if len(members) != 1 {
		t.Fatalf("JSON: %v", members)
	}
	m := members[0]
	id, _ := m["id"].(string)
	if _, err := strconv.ParseUint(id, 16, 64); err != nil || m["leader"] != true || m["quota"] != float64(2<<30) ||
		m["db_size"].(float64) <= 0 || m["revision"].(float64) <= 0 || m["raft_index"].(float64) <= 0 {
		t.Errorf("JSON member: %v", m)
	}
	if alarms, ok := m["alarms"].([]any); !ok || len(alarms) != 0 {
		t.Errorf("alarms: %#v, want []", m["alarms"])
	}
	if _, ok := m["fragmentation"].(float64); !ok {
		t.Errorf("no fragmentation in %v", m)
	}
}

// The operator's recovery from NOSPACE, with the commands the gateway's
// storage_full answer names: status shows the alarm, disarming a still
// full etcd is warned about (and does not last), and compact, defrag,
// disarm after deleting data let writes through again.
func TestEtcdCommandsRecoverAFullEtcd(t *testing.T) {
	c, etcd := newCLIWithQuota(t, 4<<20)
	n := fillEtcd(t, etcd)
	t.Logf("a 4 MiB quota took %d puts of 256 KiB", n)

	r := c.run("", "etcd", "status")
	if r.code != 0 {
		t.Fatalf("status: exit %d: %s", r.code, r.stderr)
	}
	mustContain(t, "status", r.stdout, " 4 MiB ", "NOSPACE")
	mustContain(t, "status's stderr", r.stderr, "out of space", "jobx etcd compact", "jobx etcd defrag", "jobx etcd disarm")

	r = c.run("", "etcd", "disarm")
	if r.code != 0 {
		t.Fatalf("disarm: exit %d: %s", r.code, r.stderr)
	}
	mustContain(t, "disarm of a full etcd", r.stdout, "disarmed NOSPACE on member ")
	mustContain(t, "its warning", r.stderr, "warning: member jobx", "raises NOSPACE again", "compact and defragment first")
	if _, err := etcd.Put(t.Context(), "/test/more", strings.Repeat("x", 256<<10)); !etcdmaint.IsNoSpace(err) {
		t.Fatalf("a put after disarming a full etcd: %v, want NOSPACE again", err)
	}

	if _, err := etcd.Delete(t.Context(), "/test/fill/", clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	mustContain(t, "compact", c.ok("etcd", "compact"), "compacted etcd's history to revision ")
	out := c.ok("etcd", "defrag")
	if !regexp.MustCompile(`^defragmented jobx \([0-9a-f]+\) at http://\S+: [0-9.]+ MiB -> [0-9.]+ KiB in \S+\n$`).MatchString(out) {
		t.Errorf("defrag printed %q", out)
	}
	r = c.run("", "etcd", "disarm")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("disarm after compact and defrag: exit %d, stderr %q", r.code, r.stderr)
	}
	mustContain(t, "disarm", r.stdout, "disarmed NOSPACE on member ")
	if _, err := etcd.Put(t.Context(), "/test/after", "x"); err != nil {
		t.Fatalf("put after compact, defrag and disarm: %v", err)
	}
	r = c.run("", "etcd", "status")
	if strings.Contains(r.stdout, "NOSPACE") || r.stderr != "" {
		t.Errorf("status after the recovery:\n%s\n%s", r.stdout, r.stderr)
	}
	mustContain(t, "a second disarm", c.ok("etcd", "disarm"), "no NOSPACE alarm is raised")
	if got := c.ok("etcd", "disarm", "-o", "json"); strings.Join(strings.Fields(got), "") != `{"disarmed":[]}` {
		t.Errorf("disarm -o json with nothing raised: %s", got)
	}
}

func TestEtcdCompactTakesARevisionOrHowManyToKeep(t *testing.T) {
	c, etcd := newCLIWithQuota(t, 0)
	var last int64
	for i := range 10 {
		resp, err := etcd.Put(t.Context(), "/test/key", strconv.Itoa(i))
		if err != nil {
			t.Fatal(err)
		}
		last = resp.Header.Revision
	}
	mustContain(t, "compact --keep-revisions 3", c.ok("etcd", "compact", "--keep-revisions", "3"),
		fmt.Sprintf("to revision %d (current %d)", last-3, last))
	var got map[string]int64
	if err := json.Unmarshal([]byte(c.ok("etcd", "compact", "--revision", strconv.FormatInt(last-1, 10), "-o", "json")), &got); err != nil {
		t.Fatal(err)
	}
	if got["revision"] != last-1 || got["current_revision"] != last {
		t.Errorf("compact --revision %d -o json: %v", last-1, got)
	}
	if _, err := etcd.Get(t.Context(), "/test/key", clientv3.WithRev(last-2)); err == nil {
		t.Error("the revision before the compaction can still be read")
	}
	mustContain(t, "--keep-revisions past the start", c.ok("etcd", "compact", "--keep-revisions", "1000000"), "nothing to compact")
	mustContain(t, "a revision ahead", c.fails("etcd", "compact", "--revision", strconv.FormatInt(last+100, 10)), "ahead of etcd's current revision")
	mustContain(t, "both flags", c.fails("etcd", "compact", "--revision", "2", "--keep-revisions", "2"), "go alone")
}

func TestEtcdDefragNamesAnUnknownMember(t *testing.T) {
	c := newCLI(t)
	mustContain(t, "defrag --member nope", c.fails("etcd", "defrag", "--member", "nope"), "--member nope: no such member")
	var done []map[string]any
	if err := json.Unmarshal([]byte(c.ok("etcd", "defrag", "--member", "jobx", "-o", "json")), &done); err != nil {
		t.Fatal(err)
	}
	if len(done) != 1 || done[0]["name"] != "jobx" || done[0]["db_size_after"].(float64) <= 0 {
		t.Errorf("defrag -o json: %v", done)
	}
}

func TestFormatBytesUsesBinaryUnits(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1 KiB", 1536: "1.5 KiB", 16 << 20: "16 MiB", 2 << 30: "2 GiB", 3 << 40: "3 TiB"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestTheDefragFlagsSetTheRunnersLoop(t *testing.T) {
	for _, tc := range []struct {
		name       string
		args       []string
		threshold  float64
		minSize    int64
		autoDisarm bool
		err        string
	}{
		{"unset leaves the loop off", nil, 0, 64 << 20, true, ""},
		{"a threshold, a floor and no auto-disarm", []string{"--etcd-defrag-threshold", "0.5", "--etcd-defrag-min-size", "16Mi", "--etcd-auto-disarm=false"}, 0.5, 16 << 20, false, ""},
		{"a floor of 0", []string{"--etcd-defrag-min-size", "0"}, 0, 0, true, ""},
		{"a floor that is not a size", []string{"--etcd-defrag-min-size", "big"}, 0, 0, false, "--etcd-defrag-min-size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &app{env: loadEnv(func(string) string { return "" })}
			cmd := &cobra.Command{Use: "runner"}
			rf := a.addRunnerFlags(cmd, true)
			if err := cmd.ParseFlags(tc.args); err != nil {
				t.Fatal(err)
			}
			err := rf.validate()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("validate: %v, want an error naming %s", err, tc.err)
				}
				return
			}
			d := rf.opts.EtcdDefrag
			if err != nil || d.Threshold != tc.threshold || d.MinSize != tc.minSize || d.AutoDisarm != tc.autoDisarm {
				t.Fatalf("validate: %v; threshold %g, min size %d, auto-disarm %v", err, d.Threshold, d.MinSize, d.AutoDisarm)
			}
		})
	}
}

func TestUpEtcdQuotaSetsTheEmbeddedEtcdsQuota(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	codec := make(chan int, 1)
	go func() {
		codec <- run(ctx, []string{"up", "--data-dir", t.TempDir(), "--http", "127.0.0.1:0", "--etcd-listen", "127.0.0.1:0",
			"--nsqd-listen", "127.0.0.1:0", "--runners", "0", "--etcd-quota", "16Mi", "--log-level", "warn"},
			strings.NewReader(""), &stdout, &stderr, func(string) string { return "" })
	}()
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(stdout.String(), "jobx is up") {
		select {
		case code := <-codec:
			t.Fatalf("up exited %d early:\n%s\n%s", code, stdout.String(), stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("up did not come up:\n%s\n%s", stdout.String(), stderr.String())
		}
	}
	ep := regexp.MustCompile(`etcd: +(\S+)`).FindStringSubmatch(stdout.String())
	if ep == nil {
		t.Fatalf("no etcd address in:\n%s", stdout.String())
	}
	c := &cli{t: t, env: map[string]string{"JOBX_ETCD": ep[1]}}
	mustContain(t, "status of up's etcd", c.ok("etcd", "status"), " 16 MiB ")
	cancel()
	select {
	case code := <-codec:
		if code != 0 {
			t.Errorf("up exited %d after cancel:\n%s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("up did not stop within 30s of cancel")
	}

	bad := (&cli{t: t, env: map[string]string{}}).run("", "up", "--data-dir", t.TempDir(), "--etcd-quota", "lots")
	if bad.code == 0 || !strings.Contains(bad.stderr, "--etcd-quota") {
		t.Errorf("up --etcd-quota lots: exit %d, %s", bad.code, bad.stderr)
	}
}
