//go:build cluster

package compose

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jobx/jobx/internal/manifest"
	"github.com/jobx/jobx/kvmodel"
	_ "github.com/jobx/jobx/processors/all"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// The test's own project name and host ports, so that it neither touches
// nor collides with a cluster started by make cluster-up.
const (
	project     = "jobx-test-cluster"
	gatewayPort = "18180"
)

var etcdPorts = []string{"12479", "22479", "32479"}

// compose runs docker-compose on the repository's docker-compose.yml.
type compose struct {
	t    *testing.T
	cmd  []string // e.g. ["docker-compose"]
	root string
}

func (c *compose) env() []string {
	return append(os.Environ(), "JOBX_CLUSTER_HTTP="+gatewayPort,
		"JOBX_CLUSTER_ETCD1="+etcdPorts[0], "JOBX_CLUSTER_ETCD2="+etcdPorts[1], "JOBX_CLUSTER_ETCD3="+etcdPorts[2])
}

// run runs docker-compose with args and returns its output; it fails the
// test when the command fails.
func (c *compose) run(args ...string) string {
	c.t.Helper()
	out, err := c.try(args...)
	if err != nil {
		c.t.Fatalf("%s %s: %v\n%s", strings.Join(c.cmd, " "), strings.Join(args, " "), err, out)
	}
	return out
}

func (c *compose) try(args ...string) (string, error) {
	argv := append(append(append([]string(nil), c.cmd[1:]...), "-p", project, "-f", filepath.Join(c.root, "docker-compose.yml")), args...)
	cmd := exec.Command(c.cmd[0], argv...)
	cmd.Dir, cmd.Env = c.root, c.env()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// container returns the container id of a service.
func (c *compose) container(service string) string {
	c.t.Helper()
	id := strings.TrimSpace(c.run("ps", "-q", service))
	if id == "" {
		c.t.Fatalf("service %s has no container", service)
	}
	return id
}

// waitHealthy waits until every container of the project is healthy.
func (c *compose) waitHealthy(timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	var states string
	for time.Now().Before(deadline) {
		ids := strings.Fields(c.run("ps", "-q"))
		out, err := exec.Command("docker", append([]string{"inspect", "-f", "{{.Name}} {{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}"}, ids...)...).CombinedOutput()
		states = strings.TrimSpace(string(out))
		if err == nil && len(ids) == 9 && !regexp.MustCompile(`(?m) (starting|unhealthy|exited|created|restarting|dead)$`).MatchString(states) {
			return
		}
		time.Sleep(2 * time.Second)
	}
	c.t.Fatalf("the cluster is not healthy after %s:\n%s\n%s", timeout, states, c.logs())
}

func (c *compose) logs() string {
	out, _ := c.try("logs", "--no-color", "--tail=60")
	return out
}

// nsqdMessages returns the number of messages an nsqd service has taken,
// over all topics, from its /stats (read inside its container).
func (c *compose) nsqdMessages(service string) int {
	c.t.Helper()
	out, err := exec.Command("docker", "exec", c.container(service), "wget", "-q", "-O-", "http://127.0.0.1:4151/stats?format=json").Output()
	if err != nil {
		c.t.Fatalf("%s /stats: %v", service, err)
	}
	var stats struct {
		Topics []struct {
			MessageCount int `json:"message_count"`
		} `json:"topics"`
	}
	if err := json.Unmarshal(out, &stats); err != nil {
		c.t.Fatalf("%s /stats: %v: %s", service, err, out)
	}
	n := 0
	for _, tp := range stats.Topics {
		n += tp.MessageCount
	}
	return n
}

// job is one example job and the check of its result.
type job struct {
	wf, name string
	args     any
	check    func(pairs map[string]string) error
}

func exampleJobs(t *testing.T, root string) []job {
	texts := filepath.Join(root, "examples", "wordcount", "files", "texts")
	want := map[string]int{}
	files, _ := filepath.Glob(texts + "/*.txt")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range regexp.MustCompile(`[a-z']+`).FindAllString(strings.ToLower(string(b)), -1) {
			want[strings.Trim(w, "'")]++
		}
	}
	if len(want) < 20 {
		t.Fatalf("examples/wordcount/files/texts: %d words", len(want))
	}
	sums := func(total int, list bool) func(map[string]string) error {
		return func(got map[string]string) error {
			n := 0
			for k, v := range got {
				if i, err := strconv.Atoi(k); err != nil || i < 0 || i > 9 {
					return fmt.Errorf("key %s is not 0..9", k)
				}
				if list != strings.HasPrefix(v, "[") {
					return fmt.Errorf("key %s: value %s (want a list: %v)", k, v, list)
				}
				var x any
				if err := json.Unmarshal([]byte(v), &x); err != nil {
					return err
				}
				switch x := x.(type) {
				case float64:
					n += int(x)
				case []any:
					for _, e := range x {
						f, _ := e.(float64)
						n += int(f)
					}
				}
			}
			if n != total {
				return fmt.Errorf("the intervals add up to %d, not %d", n, total)
			}
			return nil
		}
	}
	exact := func(want map[string]string) func(map[string]string) error {
		return func(got map[string]string) error {
			if len(got) != len(want) {
				return fmt.Errorf("want %v, got %v", want, got)
			}
			for k, v := range want {
				if got[k] != v {
					return fmt.Errorf("key %s: want %s, got %s", k, v, got[k])
				}
			}
			return nil
		}
	}
	words := map[string]string{}
	for w, n := range want {
		words[strconv.Quote(w)] = strconv.Itoa(n)
	}
	return []job{
		{"dev", "job5", map[string]int{"arg1": 1000}, sums(1000, false)},
		{"dev", "job4", map[string]int{"arg1": 17413}, sums(17413, true)},
		// The runners see the shared filesystem's workflow root at /working/<workflow>.
		{"wordcount", "wordcount", map[string]string{"dir": "texts"}, exact(words)},
		{"languages", "letters", map[string]string{"text": "Hello, World"},
			exact(map[string]string{`"h"`: "1", `"e"`: "1", `"l"`: "3", `"o"`: "2", `"w"`: "1", `"r"`: "1", `"d"`: "1"})},
		{"languages", "squares", map[string]int{"a": 3, "b": 4}, exact(map[string]string{`"squares"`: "25"})},
	}
}

// submit runs j through the gateway (blocking) and checks its result.
func submit(j job) error {
	body, _ := json.Marshal(map[string]any{"arguments": j.args})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://127.0.0.1:"+gatewayPort+"/job/"+j.wf+"/"+j.name+"?blocking=true", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, raw)
	}
	var res struct {
		Result struct {
			Pairs [][2]json.RawMessage `json:"pairs"`
		} `json:"result"`
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		return fmt.Errorf("%w: %s", err, raw)
	}
	pairs := map[string]string{}
	for _, p := range res.Result.Pairs {
		pairs[string(p[0])] = string(p[1])
	}
	return j.check(pairs)
}

// phase is one fault: a service stopped while every example job runs.
type phase struct {
	fault   string
	service string // "" for none
}

type row struct {
	fault                string
	run, completed, fail int
	took                 time.Duration
}

func TestComposeCluster(t *testing.T) {
	start := time.Now()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "build", "cluster", "Dockerfile.runner")); err != nil {
		t.Fatalf("the build context is not staged (make cluster-stage): %v", err)
	}
	c := &compose{t: t, cmd: strings.Fields(os.Getenv("JOBX_COMPOSE")), root: root}
	if len(c.cmd) == 0 {
		c.cmd = []string{"docker-compose"}
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs of the cluster:\n%s", c.logs())
		}
		out, err := c.try("down", "-v", "--remove-orphans")
		t.Logf("%s down -v: %v\n%s", strings.Join(c.cmd, " "), err, out)
	})
	c.try("down", "-v", "--remove-orphans") // leftovers of an interrupted run
	step := func(what string) { fmt.Printf("=== %s (%s)\n", what, time.Since(start).Round(time.Second)) }

	step("build the images")
	c.run("build")
	step("start the cluster")
	c.run("up", "-d")
	c.waitHealthy(4 * time.Minute)

	step("load the examples")
	var eps []string
	for _, p := range etcdPorts {
		eps = append(eps, "http://127.0.0.1:"+p)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	dirs, _ := filepath.Glob(filepath.Join(root, "examples", "*", "workflow.yaml"))
	if len(dirs) < 3 {
		t.Fatalf("examples: %v", dirs)
	}
	for _, d := range dirs {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, err := manifest.Apply(ctx, kvmodel.NewStore(cli), filepath.Dir(d), slog.New(slog.DiscardHandler))
		cancel()
		if err != nil {
			t.Fatalf("apply %s: %v", d, err)
		}
	}
	// wordcount reads its texts from the runners' shared filesystem.
	runnerA := c.container("runner-a")
	if out, err := exec.Command("docker", "exec", runnerA, "mkdir", "-p", "/var/lib/jobx/fs/working/wordcount").CombinedOutput(); err != nil {
		t.Fatalf("mkdir in runner-a: %v: %s", err, out)
	}
	if out, err := exec.Command("docker", "cp", filepath.Join(root, "examples", "wordcount", "files", "texts"), runnerA+":/var/lib/jobx/fs/working/wordcount/").CombinedOutput(); err != nil {
		t.Fatalf("docker cp texts: %v: %s", err, out)
	}

	// Two runners with different capabilities, both with containerd sandboxes.
	st := kvmodel.NewStore(cli)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	runners, err := st.Runners(ctx)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	if len(runners) != 2 {
		t.Fatalf("%d runners announced, want 2: %+v", len(runners), runners)
	}
	for _, r := range runners {
		fmt.Printf("    runner %s: capabilities %s, sandbox %s\n", r.ID, strings.Join(r.Capabilities, ","), r.Sandbox)
		if r.Sandbox != "containerd" {
			t.Errorf("runner %s runs handlers in the %s sandbox, want containerd", r.ID, r.Sandbox)
		}
	}

	jobs := exampleJobs(t, root)
	var rows []row
	for _, p := range []phase{
		{"none (every service up)", ""},
		{"etcd member etcd1 stopped", "etcd1"},
		{"nsqd nsqd1 stopped", "nsqd1"},
		{"runner runner-a stopped", "runner-a"},
	} {
		if p.service != "" {
			step("stop " + p.service)
			c.run("stop", p.service)
		}
		step("run every example job; fault: " + p.fault)
		r := row{fault: p.fault}
		began := time.Now()
		for _, j := range jobs {
			t0 := time.Now()
			err := submit(j)
			r.run++
			if err != nil {
				r.fail++
				t.Errorf("fault %q: job %s/%s: %v", p.fault, j.wf, j.name, err)
				fmt.Printf("    %-10s %-10s FAILED after %s: %v\n", j.wf, j.name, time.Since(t0).Round(time.Millisecond), err)
				continue
			}
			r.completed++
			fmt.Printf("    %-10s %-10s ok in %s\n", j.wf, j.name, time.Since(t0).Round(time.Millisecond))
		}
		r.took = time.Since(began)
		rows = append(rows, r)
		if p.service == "" {
			// Publishers found both nsqd through nsqlookupd and spread over them.
			for _, n := range []string{"nsqd1", "nsqd2"} {
				count := c.nsqdMessages(n)
				fmt.Printf("    %s has taken %d messages\n", n, count)
				if count == 0 {
					t.Errorf("%s has taken no message: publishers do not spread over the nsqd nsqlookupd lists", n)
				}
			}
		}
		if p.service != "" {
			step("start " + p.service + " again")
			c.run("start", p.service)
			c.waitHealthy(3 * time.Minute)
		}
	}

	var b strings.Builder
	fmt.Fprintf(&b, "\n%-28s %5s %10s %7s %9s\n", "FAULT", "JOBS", "COMPLETED", "FAILED", "TIME")
	for _, r := range rows {
		fmt.Fprintf(&b, "%-28s %5d %10d %7d %9s\n", r.fault, r.run, r.completed, r.fail, r.took.Round(100*time.Millisecond))
	}
	fmt.Fprintf(&b, "total %s (build, start, faults; teardown follows)\n", time.Since(start).Round(time.Second))
	fmt.Print(b.String())
}
