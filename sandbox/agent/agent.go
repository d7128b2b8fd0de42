// Package agent is the init process of jobx's warm containers: a small
// fork/exec server (built as the static binary cmd/jobx-agent) that runs one
// handler process per request, with file descriptors passed over a unix
// socket. It is the Go server of the fork-server protocol of internal/spawn
// (spawn.Request in, spawn.Reply out), which the Python zygote speaks too; a
// client that hangs up before its child ends gets the child's process group
// killed.
//
// As PID 1 it also reaps orphans, and it may supervise a Python zygote
// (Options.Zygote): when the zygote dies, the agent exits, and so does the
// container.
package agent

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/jobx/jobx/internal/spawn"
	"golang.org/x/sys/unix"
)

// Options configure Serve.
type Options struct {
	// Socket is the unix socket path to listen on, or "fd:N": a unix socket
	// already bound and listening, inherited as file descriptor N (the
	// namespace sandbox's runner makes it outside the sandbox, so no path
	// to it exists inside).
	Socket string
	// Zygote, when set, is a command the agent starts and supervises (its
	// stdin is a pipe the agent keeps open; EOF asks it to exit).
	Zygote []string
	// ZygoteFD, when positive, is an inherited file descriptor the zygote
	// gets as its file descriptor 3 (its listening socket, named "fd:3" in
	// Zygote); the agent itself closes it once the zygote runs.
	ZygoteFD int
	// Log receives the agent's own messages (default stderr).
	Log io.Writer
}

// Serve runs the agent until SIGTERM, SIGINT or the zygote's death, then
// kills the processes it started. It returns the process exit status.
func Serve(opts Options) int {
	if opts.Log == nil {
		opts.Log = os.Stderr
	}
	a := &agent{opts: opts, waiters: map[int]chan syscall.WaitStatus{}}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGCHLD, syscall.SIGTERM, syscall.SIGINT)
	// Not dumpable: the handlers run as the agent's user, and must not
	// trace it or read its memory (and so reach later invocations).
	unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	ln, err := listen(opts.Socket)
	if err != nil {
		fmt.Fprintf(opts.Log, "jobx-agent: %v\n", err)
		return 2
	}
	zygoteDied := make(chan int, 1)
	if len(opts.Zygote) > 0 {
		if err := a.startZygote(zygoteDied); err != nil {
			fmt.Fprintf(opts.Log, "jobx-agent: start zygote: %v\n", err)
			return 2
		}
	}
	go func() {
		for {
			conn, err := ln.AcceptUnix()
			if err != nil {
				return
			}
			go a.serve(conn)
		}
	}()
	for {
		select {
		case code := <-zygoteDied:
			fmt.Fprintf(opts.Log, "jobx-agent: zygote exited (%d); stopping\n", code)
			a.killAll()
			return 1
		case sig := <-sigs:
			if sig == syscall.SIGCHLD {
				a.reap()
				continue
			}
			ln.Close()
			a.killAll()
			return 0
		}
	}
}

// listen returns the listener of Options.Socket.
func listen(socket string) (*net.UnixListener, error) {
	if v, ok := strings.CutPrefix(socket, "fd:"); ok {
		fd, err := strconv.Atoi(v)
		if err != nil || fd < 3 {
			return nil, fmt.Errorf("socket %q: want fd:N with N >= 3", socket)
		}
		f := os.NewFile(uintptr(fd), "listener")
		defer f.Close()
		l, err := net.FileListener(f)
		if err != nil {
			return nil, fmt.Errorf("socket %q: %w", socket, err)
		}
		ul, ok := l.(*net.UnixListener)
		if !ok {
			l.Close()
			return nil, fmt.Errorf("socket %q: not a unix socket", socket)
		}
		return ul, nil
	}
	os.Remove(socket)
	return net.ListenUnix("unix", &net.UnixAddr{Name: socket, Net: "unix"})
}

type agent struct {
	opts Options

	mu      sync.Mutex // guards waiters, children and zygote
	waiters map[int]chan syscall.WaitStatus
	started []int
	zygote  *os.File // the zygote's stdin
}

// reap collects every exited child, delivering the statuses of the ones a
// request or the zygote waits for; orphans are simply released.
func (a *agent) reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
		a.mu.Lock()
		ch := a.waiters[pid]
		delete(a.waiters, pid)
		a.mu.Unlock()
		if ch != nil {
			ch <- ws
		}
	}
}

// start runs argv with the reaper told to expect it. The lock is held over
// the fork so that the reaper cannot collect the child before its waiter
// is registered.
func (a *agent) start(argv0 string, argv, env []string, dir string, files []uintptr, setsid bool) (int, chan syscall.WaitStatus, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	pid, err := syscall.ForkExec(argv0, argv, &syscall.ProcAttr{
		Dir: dir, Env: env, Files: files,
		Sys: &syscall.SysProcAttr{Setsid: setsid},
	})
	if err != nil {
		return 0, nil, err
	}
	ch := make(chan syscall.WaitStatus, 1)
	a.waiters[pid] = ch
	a.started = append(a.started, pid)
	return pid, ch, nil
}

func (a *agent) startZygote(died chan<- int) error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	argv0, err := lookPath(a.opts.Zygote[0], os.Getenv("PATH"))
	if err != nil {
		return err
	}
	files := []uintptr{r.Fd(), 1, 2}
	if a.opts.ZygoteFD > 0 {
		files = append(files, uintptr(a.opts.ZygoteFD))
	}
	_, ch, err := a.start(argv0, a.opts.Zygote, os.Environ(), "", files, true)
	if a.opts.ZygoteFD > 0 {
		syscall.Close(a.opts.ZygoteFD)
	}
	if err != nil {
		w.Close()
		return err
	}
	a.zygote = w
	go func() {
		ws := <-ch
		died <- ws.ExitStatus()
	}()
	return nil
}

func (a *agent) killAll() {
	a.mu.Lock()
	pids := append([]int(nil), a.started...)
	if a.zygote != nil {
		a.zygote.Close()
	}
	a.mu.Unlock()
	for _, pid := range pids {
		syscall.Kill(-pid, syscall.SIGKILL)
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// serve handles one request connection.
func (a *agent) serve(conn *net.UnixConn) {
	defer conn.Close()
	var req spawn.Request
	files, err := spawn.ReadRequest(conn, &req)
	defer func() {
		for _, f := range files { // nil once the child has them
			f.Close()
		}
	}()
	if errors.Is(err, spawn.ErrBadRequest) {
		spawn.WriteReply(conn, spawn.Reply{Error: err.Error()})
	}
	if err != nil {
		return
	}
	if len(files) != 3 {
		spawn.WriteReply(conn, spawn.Reply{Error: fmt.Sprintf("bad request: want 3 file descriptors, got %d", len(files))})
		return
	}
	if len(req.Argv) == 0 {
		spawn.WriteReply(conn, spawn.Reply{Error: "bad request: no argv"})
		return
	}
	path := ""
	for _, kv := range req.Env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	argv0, err := lookPath(req.Argv[0], path)
	if err != nil {
		spawn.WriteReply(conn, spawn.Reply{Error: err.Error()})
		return
	}
	pid, ch, err := a.start(argv0, req.Argv, req.Env, req.Dir, []uintptr{files[0].Fd(), files[1].Fd(), files[2].Fd()}, true)
	for _, f := range files {
		f.Close()
	}
	files = nil
	if err != nil {
		spawn.WriteReply(conn, spawn.Reply{Error: fmt.Sprintf("start %s: %v", req.Argv[0], err)})
		return
	}
	setRlimits(pid, req.Rlimits)
	if err := spawn.WriteReply(conn, spawn.Reply{Pid: &pid}); err != nil {
		killGroup(pid)
	}
	// A hang-up (or any read) before the child ends kills its group.
	hungUp := make(chan struct{})
	go func() {
		io.Copy(io.Discard, bufio.NewReader(conn))
		close(hungUp)
	}()
	var ws syscall.WaitStatus
	select {
	case ws = <-ch:
	case <-hungUp:
		killGroup(pid)
		ws = <-ch
	}
	a.forget(pid)
	if ws.Signaled() {
		s := int(ws.Signal())
		spawn.WriteReply(conn, spawn.Reply{Signal: &s})
	} else {
		c := ws.ExitStatus()
		spawn.WriteReply(conn, spawn.Reply{ExitCode: &c})
	}
}

func (a *agent) forget(pid int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, p := range a.started {
		if p == pid {
			a.started = append(a.started[:i], a.started[i+1:]...)
			break
		}
	}
}

func killGroup(pid int) {
	if err := syscall.Kill(-pid, syscall.SIGKILL); errors.Is(err, syscall.ESRCH) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

func setRlimits(pid int, l spawn.Rlimits) {
	for _, r := range []struct {
		res int
		v   int64
	}{{unix.RLIMIT_AS, l.AS}, {unix.RLIMIT_CPU, l.CPU}, {unix.RLIMIT_NPROC, l.NProc}, {unix.RLIMIT_FSIZE, l.FSize}} {
		if r.v > 0 {
			unix.Prlimit(pid, r.res, &unix.Rlimit{Cur: uint64(r.v), Max: uint64(r.v)}, nil)
		}
	}
}

// lookPath finds file in path (colon-separated) unless it has a slash.
func lookPath(file, path string) (string, error) {
	if strings.Contains(file, "/") {
		return file, nil
	}
	if path == "" {
		path = "/usr/local/bin:/usr/bin:/bin"
	}
	for _, dir := range filepath.SplitList(path) {
		p := filepath.Join(dir, file)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: executable file not found in $PATH", file)
}
