package main

import (
	"bufio"
	"context"
	_ "embed"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The Celery peer's Python: the tasks module (the word count as a Celery
// chord over the benchmark's own handlers) and the driver that times it.
var (
	//go:embed celery_tasks.py
	celeryTasks []byte
	//go:embed celery_client.py
	celeryClient []byte
)

// celeryConcurrency is the worker's pool size: the machine's 2 cores, one
// prefork process each.
const celeryConcurrency = 2

// celeryAvailable says why the Celery peer cannot run here, or "".
func celeryAvailable(ctx context.Context, python string) string {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return "redis-server is not installed (make bench-deps)"
	}
	return cannotImport(ctx, python, "celery, redis", "celery and redis")
}

// benchCelery runs w on Celery: a private redis-server (loopback, a free
// port, no persistence) as broker and result backend, one worker with a
// prefork pool of celeryConcurrency processes, running the baseline's
// handler code from bl's directory. Both are stopped before it returns.
// The word counts are not yet compared with anything.
func benchCelery(ctx context.Context, python string, bl *baseline, dir string, w peerWork) (*peerResult, error) {
	if err := os.MkdirAll(filepath.Join(dir, "redis"), 0o755); err != nil {
		return nil, err
	}
	env, err := writePeerFiles(bl, map[string][]byte{"celery_tasks.py": celeryTasks, "celery_client.py": celeryClient})
	if err != nil {
		return nil, err
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

	env = append(env, "JOBX_BENCH_BROKER=redis://"+addr+"/0")
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
	rss := sampleRSS(100*time.Millisecond, redis.pid(), worker.pid())
	r, end, err := runPeerDriver(ctx, python, filepath.Join(bl.dir, "celery_client.py"), bl.dir, env, started, w, nil, rss)
	rss.close()
	if err != nil {
		return nil, worker.failed(err)
	}
	r.Name, r.Server = "Celery", version
	r.Setup = fmt.Sprintf("one worker, prefork pool of %d processes, default prefetch (4 per process) and acks; "+
		"gossip, mingle and heartbeat off; redis-server on loopback as broker and result backend, no persistence (--save '' --appendonly no); "+
		"JSON serialisation; chord(count.s(doc) per document)(sum_counts.s()), waited for with get(follow_parents=False); "+
		"trivial request echo.delay('x', 1).get(), the clients threads sharing one app", celeryConcurrency)
	r.finish(ctx, python, rss, end)
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
