package main

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The peer's Python: the tasks module (the word count as a Celery chord
// over the benchmark's own handlers) and the driver that times it.
var (
	//go:embed celery_tasks.py
	celeryTasks []byte
	//go:embed celery_client.py
	celeryClient []byte
)

// celeryConcurrency is the worker's pool size: the machine's 2 cores, one
// prefork process each.
const celeryConcurrency = 2

// celeryResult is what the peer measured.
type celeryResult struct {
	Version     string  `json:"celery_version"`
	Python      string  `json:"python"`
	Redis       string  `json:"redis_server"`
	Setup       string  `json:"setup"`
	WorkerStart float64 `json:"worker_start_s"` // from exec to the first ping answered; not in any wall time
	Runs        []celeryRun
}

// celeryRun is one timed chord.
type celeryRun struct {
	Docs  int     `json:"docs"`
	Tasks int     `json:"tasks"`
	WallS float64 `json:"wall_s"`
	// SubmitS is the part of WallS the chord call took (publishing the
	// tasks, subscribing to their results); ClientCPUS the CPU the
	// submitting process used during WallS.
	SubmitS    float64          `json:"submit_s"`
	ClientCPUS float64          `json:"client_cpu_s"`
	Counts     map[string]int64 `json:"-"`
}

// run returns the run over n documents, or nil.
func (c *celeryResult) run(n int) *celeryRun {
	if c == nil {
		return nil
	}
	for i := range c.Runs {
		if c.Runs[i].Docs == n {
			return &c.Runs[i]
		}
	}
	return nil
}

// celeryAvailable says why the peer cannot run here, or "".
func celeryAvailable(ctx context.Context, python string) string {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return "redis-server is not installed (make bench-deps)"
	}
	if out, err := exec.CommandContext(ctx, python, "-c", "import celery, redis").CombinedOutput(); err != nil {
		return fmt.Sprintf("%s cannot import celery and redis (make bench-deps): %s", python, strings.TrimSpace(string(out)))
	}
	return ""
}

// benchCelery runs the word count on Celery over the first n documents
// for each n in sizes, after a warm-up chord over warmDocs: a private
// redis-server (loopback, a free port, no persistence) as broker and result
// backend, one worker with a prefork pool of celeryConcurrency processes,
// running the baseline's handler code from bl's directory. Both are
// stopped before it returns.
func benchCelery(ctx context.Context, python string, bl *baseline, dir string, docs []document, sizes []int, warmDocs int) (*celeryResult, error) {
	if err := os.MkdirAll(filepath.Join(dir, "redis"), 0o755); err != nil {
		return nil, err
	}
	files := map[string][]byte{"celery_tasks.py": celeryTasks, "celery_client.py": celeryClient}
	spec, err := json.Marshal(bl.spec())
	if err != nil {
		return nil, err
	}
	files["celery_spec.json"] = spec
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(bl.dir, name), data, 0o644); err != nil {
			return nil, err
		}
	}

	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	redis, err := startDaemon("redis-server", filepath.Join(dir, "redis.log"), exec.CommandContext(ctx, "redis-server",
		"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--dir", filepath.Join(dir, "redis"),
		"--save", "", "--appendonly", "no", "--daemonize", "no"))
	if err != nil {
		return nil, err
	}
	defer redis.stop(5 * time.Second)
	var version string
	if err := waitFor(redis, 10*time.Second, func() (err error) { version, err = redisPing(addr); return err }); err != nil {
		return nil, err
	}

	env := append(os.Environ(), "JOBX_BENCH_BROKER=redis://"+addr+"/0", "JOBX_BENCH_SPEC="+filepath.Join(bl.dir, "celery_spec.json"), "PYTHONPATH="+bl.dir)
	args := []string{"-m", "celery", "-A", "celery_tasks", "worker", "--pool", "prefork", "--concurrency", strconv.Itoa(celeryConcurrency),
		"--loglevel", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat", "--hostname", "bench@localhost"}
	wcmd := exec.CommandContext(ctx, python, args...)
	wcmd.Dir, wcmd.Env = bl.dir, env
	started := time.Now()
	worker, err := startDaemon("celery worker", filepath.Join(dir, "celery-worker.log"), wcmd)
	if err != nil {
		return nil, err
	}
	defer worker.stop(15 * time.Second)

	pairs := make([][2]string, len(docs))
	for i, d := range docs {
		pairs[i] = [2]string{d.Name, d.Text}
	}
	in, err := json.Marshal(map[string]any{"docs": pairs, "sizes": sizes, "warmup_docs": warmDocs, "ready_timeout_s": 60, "timeout_s": 1800})
	if err != nil {
		return nil, err
	}
	ccmd := exec.CommandContext(ctx, python, filepath.Join(bl.dir, "celery_client.py"))
	ccmd.Dir, ccmd.Env, ccmd.Stdin = bl.dir, env, bytes.NewReader(in)
	var stdout, stderr bytes.Buffer
	ccmd.Stdout, ccmd.Stderr = &stdout, &stderr
	if err := ccmd.Run(); err != nil {
		return nil, worker.failed(fmt.Errorf("celery client: %w: %s", err, truncate(strings.TrimSpace(stderr.String()), 3000)))
	}
	var out struct {
		Version string  `json:"celery_version"`
		Ready   float64 `json:"ready_unix"`
		Runs    []struct {
			celeryRun
			Pairs []json.RawMessage `json:"result"`
		} `json:"runs"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		return nil, fmt.Errorf("celery client: bad output: %w", err)
	}
	pyVersion, _ := exec.CommandContext(ctx, python, "--version").CombinedOutput()
	r := &celeryResult{
		Version: out.Version, Python: strings.TrimSpace(string(pyVersion)), Redis: version,
		Setup: fmt.Sprintf("one worker, prefork pool of %d processes, default prefetch (4 per process) and acks; "+
			"gossip, mingle and heartbeat off; redis-server on loopback as broker and result backend, no persistence (--save '' --appendonly no); "+
			"JSON serialisation; chord(count.s(doc) per document)(sum_counts.s())", celeryConcurrency),
		WorkerStart: out.Ready - float64(started.UnixNano())/1e9,
	}
	for _, run := range out.Runs {
		counts, err := decodeCounts(run.Pairs)
		if err != nil {
			return nil, fmt.Errorf("celery word count over %d documents: %w", run.Docs, err)
		}
		run.Counts = counts
		r.Runs = append(r.Runs, run.celeryRun)
	}
	if len(r.Runs) != len(sizes) {
		return nil, fmt.Errorf("celery client: %d runs, want %d", len(r.Runs), len(sizes))
	}
	return r, nil
}

// redisPing sends PING and INFO server to a redis-server and returns its
// version.
func redisPing(addr string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte("PING\r\nINFO server\r\n")); err != nil {
		return "", err
	}
	rd := bufio.NewReader(conn)
	line, err := rd.ReadString('\n')
	if err != nil {
		return "", err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return "", fmt.Errorf("redis PING: %q", line)
	}
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			return "", err
		}
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			return v, nil
		}
	}
}
