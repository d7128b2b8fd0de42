package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
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
