package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// daemon is a server process the harness started in a process group of
// its own, its output going to a log file. stop ends the whole group, so
// no child of it (a Celery pool process, a Python zygote) outlives it.
type daemon struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error // the process's exit, valid once done is closed
}

// startDaemon starts cmd with its stdout and stderr appended to logPath.
func startDaemon(name, logPath string, cmd *exec.Cmd) (*daemon, error) {
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	d := &daemon{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		d.err = cmd.Wait()
		log.Close()
		close(d.done)
	}()
	return d, nil
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

// exited reports whether the process has ended.
func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits up to grace for the process to exit, then
// kills its process group. It is safe to call more than once.
func (d *daemon) stop(grace time.Duration) {
	if !d.exited() {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(grace):
		}
	}
	// The group may hold children that outlived their parent.
	_ = syscall.Kill(-d.pid(), syscall.SIGKILL)
	<-d.done
}

// logTail is the end of the daemon's log, for error messages.
func (d *daemon) logTail() string {
	data, _ := os.ReadFile(d.logPath)
	s := strings.TrimSpace(string(data))
	if len(s) > 3000 {
		s = "..." + s[len(s)-3000:]
	}
	return s
}

// failed wraps err with the daemon's log tail.
func (d *daemon) failed(err error) error {
	state := "running"
	if d.exited() {
		state = fmt.Sprintf("exited: %v", d.err)
	}
	return fmt.Errorf("%w (%s %s; its log:\n%s)", err, d.name, state, d.logTail())
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitFor calls ready every 50 ms until it returns nil, d exits, or within
// passes.
func waitFor(d *daemon, within time.Duration, ready func() error) error {
	deadline := time.Now().Add(within)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		if d.exited() {
			return d.failed(errors.New("exited before it was ready"))
		}
		if time.Now().After(deadline) {
			return d.failed(fmt.Errorf("not ready after %s: %w", within, err))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// rssSampler measures the peak RSS of process trees the way the bench
// measures its own processes, by VmHWM (/proc/<pid>/status): every interval
// it reads the VmHWM of each root and of every process descending from one,
// and keeps each process's last value (a VmHWM only grows), so a sample's
// total is the sum of the peaks of every process seen so far, the ones
// that already exited included (as of their last sample, at most one
// interval before they exited). close stops it; it must be called once.
type rssSampler struct {
	interval time.Duration
	stopc    chan struct{}
	done     chan struct{}

	mu      sync.Mutex // guards what follows
	roots   []int
	last    map[int]int64
	samples []rssSample
}

// rssSample is the summed VmHWM of every process seen up to at.
type rssSample struct {
	at    time.Time
	bytes int64
	procs int
}

func sampleRSS(interval time.Duration, roots ...int) *rssSampler {
	s := &rssSampler{interval: interval, stopc: make(chan struct{}), done: make(chan struct{}), roots: roots, last: map[int]int64{}}
	go func() {
		defer close(s.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			s.sample()
			select {
			case <-s.stopc:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// add makes pid one more root.
func (s *rssSampler) add(pid int) {
	s.mu.Lock()
	s.roots = append(s.roots, pid)
	s.mu.Unlock()
	s.sample()
}

func (s *rssSampler) sample() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, pid := range descendants(s.roots) {
		if v, err := peakRSS(pid); err == nil {
			s.last[pid] = max(s.last[pid], v)
		}
	}
	s.record()
}

// record appends the current total; s.mu is held.
func (s *rssSampler) record() {
	var sum int64
	for _, v := range s.last {
		sum += v
	}
	s.samples = append(s.samples, rssSample{at: time.Now(), bytes: sum, procs: len(s.last)})
}

// close stops the sampling after a last sample.
func (s *rssSampler) close() {
	close(s.stopc)
	<-s.done
	s.sample()
}

// peak is the total of the last sample: the summed peaks over the whole
// sampling.
func (s *rssSampler) peak() rssSample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.samples[len(s.samples)-1]
}

// peakUntil is the total of the first sample taken at or after t: the
// summed peaks up to t, and up to one interval more.
func (s *rssSampler) peakUntil(t time.Time) rssSample {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, x := range s.samples {
		if !x.at.Before(t) {
			return x
		}
	}
	return s.samples[len(s.samples)-1]
}

// descendants returns the roots and every live process descending from
// one of them, each once.
func descendants(roots []int) []int {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			ppid := parentOf(pid)
			children[ppid] = append(children[ppid], pid)
		}
	}
	seen := map[int]bool{}
	var out []int
	queue := slices.Clone(roots)
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		if seen[pid] {
			continue
		}
		seen[pid] = true
		out = append(out, pid)
		queue = append(queue, children[pid]...)
	}
	return out
}
