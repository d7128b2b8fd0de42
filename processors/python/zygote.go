package python

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jobx/jobx/internal/spawn"
)

// ErrZygoteDead is returned (wrapped) by Spawn and Child.Wait when the zygote
// process has exited.
var ErrZygoteDead = errors.New("python zygote is dead")

// Zygote is a warm python3 process that forks one child per invocation (the
// runtime's "zygote" mode). A fork costs about a millisecond where starting
// python3 costs ten.
//
// Spawn is safe for concurrent use. The caller of StartZygote must call
// Close, which also kills children still running. Children are isolated:
// each is a fresh fork of the zygote, with a fresh handler scope, its own
// session and process group, and only the three descriptors it was given.
type Zygote struct {
	sock   string
	logger *slog.Logger
	cmd    *exec.Cmd
	stdinW *os.File // closing it asks the zygote to exit

	dead    <-chan struct{} // closed when the process has exited
	waitErr error           // set before dead is closed (StartZygote's only)
	// killGroup kills the process group of a child, by the pid the zygote
	// reports (see AttachZygote).
	killGroup func(pid int) error
	pumps     sync.WaitGroup

	mu       sync.Mutex // guards tail, children, lanes, sweep and closed
	tail     []string   // the last lines of the zygote's stderr
	children map[*Child]struct{}
	// lanes are kept children whose control sockets the zygote handed
	// over (see lane), by reuse key, oldest first.
	lanes  map[laneKey][]*lane
	sweep  *time.Timer // retires idle lanes; nil when none is kept
	closed bool
	// parkFor is how long a lane may wait for its next run.
	parkFor time.Duration

	closeOnce sync.Once
	closeErr  error
}

// Rlimits are resource limits applied to a child; zero fields are left as
// inherited.
type Rlimits = spawn.Rlimits

// SpawnRequest describes one invocation run on the zygote.
type SpawnRequest struct {
	HandlerPath string // an installed handler (Program.Warm.HandlerPath)
	HandlerType string // mapper, combiner or reducer
	// Env is the child's whole environment, "KEY=value" (later entries win).
	Env []string
	// Dir is the child's working directory; empty keeps the zygote's.
	Dir string
	// Stdin, Stdout and Stderr become the child's fds 0, 1 and 2; nil means
	// /dev/null. Spawn does not close them: the caller closes its copies
	// once Spawn returns.
	Stdin, Stdout, Stderr *os.File
	Rlimits               Rlimits
	// Reuse, when set, lets the run go to a child that ran the same handler
	// under the same Reuse key and was kept (parked) after exiting 0, and
	// lets this run's child be kept in turn (see ExitStatus.Parked). Only
	// handlers that opt in (header `reuse: request`) set it, to their
	// request id: parked children keep their module state and leftover
	// processes, so reuse never crosses requests or handlers.
	Reuse string
}

// ExitStatus is how a child ended: Signal is the terminating signal (and
// Code is -1), or Signal is 0 and Code is the exit status.
type ExitStatus struct {
	Code   int
	Signal int
	// Parked reports that the child finished (Code 0) but was kept for
	// another run of its Reuse key: its process group lives on, and its
	// stdio now points at /dev/null.
	Parked bool
}

// Success reports whether the child exited with status 0.
func (s ExitStatus) Success() bool { return s.Signal == 0 && s.Code == 0 }

func (s ExitStatus) String() string {
	if s.Signal != 0 {
		return "signal: " + syscall.Signal(s.Signal).String()
	}
	return fmt.Sprintf("exit status %d", s.Code)
}

// StartZygote starts `python3 runtimePath zygote socketPath` and returns
// once the socket accepts connections, or fails when ctx ends first (with a
// 10 s limit when ctx has no deadline). runtimePath is usually the runtime
// installed by Processor.Install (<dir>/python/jobx_runtime.py). The
// zygote's stderr goes to logger (nil discards it). socketPath must be
// shorter than 108 bytes.
func StartZygote(ctx context.Context, runtimePath, socketPath string, logger *slog.Logger) (*Zygote, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if len(socketPath) >= 108 {
		return nil, fmt.Errorf("start python zygote: socket path %q is too long for a unix socket", socketPath)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	os.Remove(socketPath)
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start python zygote: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		stdinR.Close()
		stdinW.Close()
		return nil, fmt.Errorf("start python zygote: %w", err)
	}
	exited := make(chan struct{})
	z := newZygote(socketPath, exited, killHostGroup, logger)
	z.stdinW = stdinW
	z.cmd = exec.Command(Interpreter, runtimePath, "zygote", socketPath)
	z.cmd.Stdin = stdinR
	z.cmd.Stdout = outW
	z.cmd.Stderr = outW
	z.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = z.cmd.Start()
	stdinR.Close()
	outW.Close()
	if err != nil {
		stdinW.Close()
		outR.Close()
		return nil, fmt.Errorf("start python zygote: %w", err)
	}
	z.pumps.Add(1)
	go z.pump(outR)
	go func() {
		z.waitErr = z.cmd.Wait()
		close(exited)
		z.retireLanes() // nobody reaps them any more
	}()

	for {
		conn, err := net.Dial("unix", socketPath)
		if err == nil {
			conn.Close()
			logger.Debug("python zygote ready", "pid", z.cmd.Process.Pid, "socket", socketPath)
			return z, nil
		}
		select {
		case <-z.dead:
			z.pumps.Wait()
			stdinW.Close()
			return nil, fmt.Errorf("start python zygote: %w: %v: %s", ErrZygoteDead, z.waitErr, z.stderrTail())
		case <-ctx.Done():
			z.Close()
			return nil, fmt.Errorf("start python zygote: not ready: %w", ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// AttachZygote returns a client of a zygote that another party started and
// owns, such as a namespace sandbox's domain. sock is the zygote's socket on
// this host; done is closed once the zygote has exited; killGroup kills the
// process group of one of the zygote's children, given the pid the zygote
// reports, which is a pid of the zygote's own PID namespace (not
// necessarily this host's). Close kills the children still running and the
// kept ones, but leaves the zygote itself to its owner; Pid returns 0.
func AttachZygote(sock string, done <-chan struct{}, killGroup func(pid int) error, logger *slog.Logger) *Zygote {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	z := newZygote(sock, done, killGroup, logger)
	go func() {
		<-done
		z.retireLanes() // nobody reaps them any more
	}()
	return z
}

func newZygote(sock string, dead <-chan struct{}, killGroup func(int) error, logger *slog.Logger) *Zygote {
	return &Zygote{
		sock:      sock,
		logger:    logger,
		dead:      dead,
		killGroup: killGroup,
		children:  map[*Child]struct{}{},
		lanes:     map[laneKey][]*lane{},
		parkFor:   parkFor(),
	}
}

// killHostGroup kills the process group led by pid, a pid of this host
// (or the pid alone, when it does not lead a group yet).
func killHostGroup(pid int) error {
	err := syscall.Kill(-pid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		// Not yet a group leader (between fork and setsid).
		err = syscall.Kill(pid, syscall.SIGKILL)
	}
	if err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill pid %d: %w", pid, err)
	}
	return nil
}

// KillGroup kills the process group of the zygote's child pid (as the
// zygote reports it).
func (z *Zygote) KillGroup(pid int) error { return z.killGroup(pid) }

// pump logs the zygote's output and keeps its tail for error messages.
func (z *Zygote) pump(r *os.File) {
	defer z.pumps.Done()
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		z.logger.Warn("python zygote", "line", line)
		z.mu.Lock()
		z.tail = append(z.tail, line)
		if len(z.tail) > 20 {
			z.tail = z.tail[1:]
		}
		z.mu.Unlock()
	}
}

func (z *Zygote) stderrTail() string {
	z.mu.Lock()
	defer z.mu.Unlock()
	return strings.Join(z.tail, "\n")
}

// Pid returns the zygote's process id; 0 for an attached zygote.
func (z *Zygote) Pid() int {
	if z.cmd == nil {
		return 0
	}
	return z.cmd.Process.Pid
}

// Done is closed when the zygote process has exited.
func (z *Zygote) Done() <-chan struct{} { return z.dead }

func (z *Zygote) deadErr() error {
	select {
	case <-z.dead:
		return fmt.Errorf("%w (%v)", ErrZygoteDead, z.waitErr)
	default:
		return nil
	}
}

// Spawn forks a child of the zygote running req's handler. ctx bounds the
// hand-over only; bound the run with Child.Kill. It is safe for concurrent
// use.
func (z *Zygote) Spawn(ctx context.Context, req SpawnRequest) (*Child, error) {
	z.mu.Lock()
	closed := z.closed
	z.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("spawn %s: %w (closed)", req.HandlerPath, ErrZygoteDead)
	}
	if err := z.deadErr(); err != nil {
		return nil, fmt.Errorf("spawn %s: %w", req.HandlerPath, err)
	}
	msg := spawn.ZygoteRequest{HandlerPath: req.HandlerPath, HandlerType: req.HandlerType,
		Env: map[string]string{}, Dir: req.Dir, Rlimits: req.Rlimits, Reuse: req.Reuse, Lane: req.Reuse != ""}
	for _, kv := range req.Env {
		k, v, _ := strings.Cut(kv, "=")
		msg.Env[k] = v
	}

	files := []*os.File{req.Stdin, req.Stdout, req.Stderr}
	for i, f := range files {
		if f == nil {
			devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
			if err != nil {
				return nil, fmt.Errorf("spawn %s: %w", req.HandlerPath, err)
			}
			defer devnull.Close()
			files[i] = devnull
		}
	}

	key := laneKey{reuse: req.Reuse, path: req.HandlerPath, typ: req.HandlerType}
	if req.Reuse != "" {
		if c := z.spawnOnLane(ctx, key, msg, files); c != nil {
			return c, nil
		}
	}

	sc, err := spawn.Start(ctx, z.sock, msg, files[0], files[1], files[2])
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) {
			select {
			case <-z.dead:
			case <-time.After(100 * time.Millisecond):
			}
		}
		if errors.Is(err, spawn.ErrServerGone) || ctx.Err() != nil {
			if derr := z.deadErr(); derr != nil {
				err = derr
				if ctx.Err() != nil {
					err = fmt.Errorf("%w: %w", ctx.Err(), err)
				}
			}
		}
		return nil, fmt.Errorf("spawn %s: %w", req.HandlerPath, err)
	}
	c := &Child{pid: sc.Pid, z: z, sc: sc, key: key}
	z.mu.Lock()
	if z.closed {
		z.mu.Unlock()
		c.Kill()
		sc.Close()
		return nil, fmt.Errorf("spawn %s: %w (closed)", req.HandlerPath, ErrZygoteDead)
	}
	z.children[c] = struct{}{}
	z.mu.Unlock()
	return c, nil
}

// Child is an invocation forked by a Zygote. Wait must be called (once or
// more) to release its connection; Kill may be called concurrently with
// Wait.
type Child struct {
	pid int
	z   *Zygote
	sc  *spawn.Child // on the zygote's connection, or on lane
	// lane is the kept child's own socket when the run went straight to
	// it; nil when the run went through the zygote.
	lane *net.UnixConn
	key  laneKey // its reuse key, when it has one

	waitOnce sync.Once
	status   ExitStatus
	err      error

	mu     sync.Mutex // guards exited
	exited bool
}

// Pid returns the child's process id, which is also its process group id.
func (c *Child) Pid() int { return c.pid }

// Wait blocks until the child ends and returns how it ended. When the zygote
// dies first, Wait kills the orphaned child and returns an error wrapping
// ErrZygoteDead. Later calls return the same result.
func (c *Child) Wait() (ExitStatus, error) {
	c.waitOnce.Do(c.wait)
	return c.status, c.err
}

func (c *Child) wait() {
	st, err := c.sc.Wait()
	switch {
	case errors.Is(err, spawn.ErrServerGone) && c.lane != nil:
		// It ended without a status (killed, or crashed), or sent
		// garbage: the zygote reaps it and says how it ended.
		c.Kill()
		c.status, c.err = c.z.statusOf(c.pid)
	case errors.Is(err, spawn.ErrServerGone):
		c.Kill()
		c.err = fmt.Errorf("wait for pid %d: %w: %v", c.pid, ErrZygoteDead, err)
	case err != nil:
		c.err = fmt.Errorf("wait for pid %d: %w", c.pid, err)
	case st.Signal != 0:
		c.status = ExitStatus{Code: -1, Signal: st.Signal}
	default:
		c.status = ExitStatus{Code: st.Code, Parked: st.Parked}
	}
	fds := c.sc.TakeFDs()
	var kept *lane
	switch {
	case !c.status.Parked:
	case c.lane != nil:
		kept = &lane{pid: c.pid, conn: c.lane}
	case st.Lane:
		if len(fds) == 1 {
			kept = laneFrom(c.pid, fds[0])
			fds = nil
		}
		if kept == nil {
			// Kept for us, but its socket did not arrive: end it.
			c.z.killGroup(c.pid)
			c.status.Parked = false
		}
	}
	for _, fd := range fds {
		syscall.Close(fd)
	}
	c.mu.Lock()
	c.exited = true
	c.mu.Unlock()
	if kept == nil || c.lane == nil {
		c.sc.Close()
	}
	c.z.mu.Lock()
	delete(c.z.children, c)
	c.z.mu.Unlock()
	if kept != nil {
		c.z.park(c.key, kept)
	}
}

// Kill sends SIGKILL to the child's process group (so to the processes it
// started too). It does nothing once Wait has returned.
func (c *Child) Kill() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.exited {
		return nil
	}
	return c.z.killGroup(c.pid)
}

// Close kills the children still running, stops the zygote (asking first,
// then SIGKILL after 2 s), waits for it and removes the socket. It is
// idempotent and returns the first call's error.
func (z *Zygote) Close() error {
	z.closeOnce.Do(func() {
		z.mu.Lock()
		z.closed = true
		children := make([]*Child, 0, len(z.children))
		for c := range z.children {
			children = append(children, c)
		}
		z.mu.Unlock()
		for _, c := range children {
			c.Kill()
		}
		z.retireLanes()
		if z.cmd == nil {
			return // attached: the owner stops the zygote
		}
		z.stdinW.Close()
		select {
		case <-z.dead:
		case <-time.After(2 * time.Second):
			z.cmd.Process.Kill()
			<-z.dead
		}
		z.pumps.Wait()
		if err := os.Remove(z.sock); err != nil && !errors.Is(err, os.ErrNotExist) {
			z.closeErr = fmt.Errorf("close python zygote: %w", err)
		}
	})
	return z.closeErr
}
