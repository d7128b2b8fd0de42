package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jobx/jobx/internal/testenv"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestLoadConcurrentBlocking sends 1,000 concurrent blocking requests of a
// trivial job through one gateway process and two runner processes, on
// loopback, checks every result, and reports each process's peak RSS.
func TestLoadConcurrentBlocking(t *testing.T) {
	bin := jobxBinary(t)
	etcd := testenv.EtcdProc(t)
	nsqd := testenv.NSQDProc(t, false)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{etcd.Addr}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	// The in-process cluster's gateway only defines the workflow; the load
	// goes through a gateway process.
	c := startClusterOn(t, etcd.Addr, cli, nsqd.Addr)
	c.workflow("load")
	c.handler("load", "map_double", "map/double.py", `"""
Double the argument.

**
handler_type: mapper
"""
k, v = arguments[0]
yield MrConfigureToReturn()
yield ('n', v * 2)
`)
	c.handler("load", "reduce_sum", "reduce/sum.py", sumPy)
	c.step("load", "double", "map_double", "", "reduce_sum")
	c.job("load", "double", "double")

	addr := freeAddr(t)
	gw := startProc(t, bin, "gateway", "gateway", "--etcd", etcd.Addr, "--nsqd", nsqd.Addr, "--http", addr, "--log-level", "warn")
	var runners []*exec.Cmd
	for i := range 2 {
		id := fmt.Sprintf("load%d", i)
		runners = append(runners, startProc(t, bin, id, "runner", "--etcd", etcd.Addr, "--nsqd", nsqd.Addr, "--id", id,
			"--dir", t.TempDir(), "--sandbox", "namespace", "--log-level", "warn"))
		waitFor(t, "runner "+id, 30*time.Second, func() bool { return runnerAnnounced(t, c, id) })
	}
	url := "http://" + addr
	waitFor(t, "the gateway", 30*time.Second, func() bool {
		r, err := http.Get(url + "/healthz")
		if err == nil {
			r.Body.Close()
		}
		return err == nil && r.StatusCode == 200
	})

	const n = 1000
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: 0}, Timeout: 5 * time.Minute}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Post(fmt.Sprintf("%s/job/load/double", url), "application/json", strings.NewReader(fmt.Sprintf(`{"arguments":{"x":%d}}`, i)))
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			var body struct {
				Result struct {
					Pairs [][]json.RawMessage `json:"pairs"`
				} `json:"result"`
			}
			json.Unmarshal(raw, &body)
			want := strconv.Itoa(2 * i)
			if resp.StatusCode != 200 || len(body.Result.Pairs) != 1 || string(body.Result.Pairs[0][1]) != want {
				errs <- fmt.Errorf("request %d: status %d, want n=%s: %s", i, resp.StatusCode, want, raw)
			}
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	close(errs)
	failed := 0
	for err := range errs {
		failed++
		if failed <= 5 {
			t.Error(err)
		}
	}
	line := fmt.Sprintf("load: %d concurrent blocking requests, 1 gateway + 2 runners (namespace sandbox): %d right, %d wrong, %.1f s (%.0f requests/s); peak RSS:",
		n, n-failed, failed, wall.Seconds(), n/wall.Seconds())
	for _, p := range []struct {
		name string
		pid  int
	}{{"gateway", gw.Process.Pid}, {"runner load0", runners[0].Process.Pid}, {"runner load1", runners[1].Process.Pid},
		{"etcd", etcd.Pid()}, {"nsqd", nsqd.Pid()}} {
		line += fmt.Sprintf(" %s %d MiB,", p.name, peakRSS(t, p.pid)>>20)
	}
	line = strings.TrimSuffix(line, ",")
	t.Log(line)
	recordLoad(line)
}

// startProc starts `jobx args...`, stopped with SIGTERM when the test ends.
func startProc(t *testing.T, bin, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	return cmd
}

// peakRSS is a live process's peak resident set size (VmHWM), in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	t.Fatalf("no VmHWM for pid %d", pid)
	return 0
}

func freeAddr(t *testing.T) string {
	return testenv.FreeAddrs(t, 1)[0]
}
