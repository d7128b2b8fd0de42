package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// jobxBinary builds cmd/jobx once per test binary.
var jobxBinary = func() func(t *testing.T) string {
	var path string
	var err error
	built := false
	return func(t *testing.T) string {
		t.Helper()
		if !built {
			built = true
			dir, _ := os.MkdirTemp("", "jobx-bin-")
			path = filepath.Join(dir, "jobx")
			out, e := exec.Command("go", "build", "-o", path, "../cmd/jobx").CombinedOutput()
			if e != nil {
				err = fmt.Errorf("go build: %v: %s", e, out)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		return path
	}
}()

// TestKilledRunnerLosesNoWork kills -9 a runner process in the middle of a
// two-level job, several times at different points; another runner takes
// over the redelivered messages and every request ends with the right
// result, exactly once.
func TestKilledRunnerLosesNoWork(t *testing.T) {
	bin := jobxBinary(t)
	c := startCluster(t)
	endpoint := c.etcd
	c.workflow("wf")
	c.handler("wf", "map_fan", "map/fan.py", `"""
Branch n children.

**
handler_type: mapper
"""
yield MrConfigureToMap('slow')
for i in range(arguments[0][1]):
    yield (i, i)
`)
	c.handler("wf", "map_slow", "map/slow.py", `"""
Take a while, then return the square.

**
handler_type: mapper
"""
import time
time.sleep(0.15)
k, v = arguments[0]
yield MrConfigureToReturn()
yield ('sum', v * v)
`)
	c.handler("wf", "reduce_sum", "reduce/sum.py", sumPy)
	c.step("wf", "slow", "map_slow", "", "reduce_sum")
	c.step("wf", "fan", "map_fan", "", "reduce_sum")
	c.job("wf", "fan", "fan")
	const n = 12
	want := 0
	for i := 0; i < n; i++ {
		want += i * i
	}
	kills := 0
	for round, delay := range []time.Duration{300 * time.Millisecond, 700 * time.Millisecond, 1100 * time.Millisecond} {
		cmd := exec.Command(bin, "runner", "--etcd", endpoint, "--nsqd", c.nsqd, "--id", fmt.Sprintf("victim%d", round),
			"--dir", t.TempDir(), "--concurrency", "4", "--log-level", "warn", "--msg-timeout", "2s")
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the victim runner to announce itself", 10*time.Second, func() bool {
			return strings.Contains(c.do("GET", "/healthz", "", "").raw, "ok") && runnerAnnounced(t, c, fmt.Sprintf("victim%d", round))
		})
		r := c.post("wf", "fan", fmt.Sprintf(`{"arguments":{"n":%d}}`, n), "blocking=false&keep=true")
		time.Sleep(delay)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		kills++
		_, stop := c.addRunner()
		var got response
		waitFor(t, "the request to finish on the other runner", 60*time.Second, func() bool {
			got = c.do("GET", r.header.Get("Location"), "", "")
			return got.body["is_done"] == true
		})
		assertPairs(t, got.pairs(t), map[string]string{`"sum"`: fmt.Sprint(want)})
		stop()
	}
	t.Logf("faults injected: %d kill -9; requests completed: %d; lost: 0; duplicated results: 0", kills, kills)
}

func runnerAnnounced(t *testing.T, c *cluster, id string) bool {
	for _, kv := range mustList(t, c, "/jobx/runners/") {
		if strings.HasSuffix(kv[0], "/"+id) {
			return true
		}
	}
	return false
}
