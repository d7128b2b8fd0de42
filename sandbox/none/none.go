package none

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/jobx/jobx/internal/tmpfs"
	"github.com/jobx/jobx/sandbox"

	"golang.org/x/sys/unix"
)

// Options configure a Sandbox.
type Options struct {
	// Dir holds per-invocation scratch directories and zygote sockets.
	Dir string
	// Zygotes is the number of warm Python interpreters kept to fork
	// handlers from; 0 disables them (every run starts an interpreter).
	Zygotes int
	Log     *slog.Logger
}

// Sandbox runs each handler as a plain subprocess in its own process
// group with a private scratch directory, a wall-clock timeout, an output
// limit and rlimits. Python handlers fork from warm zygotes. It isolates
// handlers from each other's state, not from the host. As root, each run's
// scratch directory is a tmpfs of its Limits.Scratch (a write past it fails
// with ENOSPC); otherwise each file a run writes is bounded to it
// (RLIMIT_FSIZE), not their total.
type Sandbox struct {
	opts    Options
	warm    *warmPool
	scratch *scratchDirs
	// closing is done once Close is called: it ends the runs in progress.
	closing context.Context
	stop    context.CancelFunc
	// prlimit is util-linux's prlimit, through which a run not forked from
	// a zygote starts when each file it writes is bounded (no tmpfs): a
	// limit set after the start would miss what the handler forks first.
	// "" while runs get a tmpfs, or where prlimit is not installed (the
	// limit is then set just after the start).
	prlimit string
}

var _ sandbox.Sandbox = (*Sandbox)(nil)

// New prepares the scratch directory, removing what a previous sandbox on
// opts.Dir left there (a runner killed with SIGKILL leaves its scratch
// mounts), and finds out whether it may mount a tmpfs per run (as root) or
// must bound each file instead. Zygotes start lazily.
func New(opts Options) (*Sandbox, error) {
	if opts.Dir == "" {
		return nil, errors.New("none sandbox: Dir is required")
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	parent := filepath.Join(opts.Dir, "scratch")
	if err := tmpfs.UnmountUnder(parent); err != nil {
		return nil, fmt.Errorf("none sandbox: scratch mounts left by an earlier run: %w", err)
	}
	if err := os.RemoveAll(parent); err != nil {
		return nil, fmt.Errorf("none sandbox: %w", err)
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("none sandbox: %w", err)
	}
	scratch := &scratchDirs{parent: parent, max: 64, mount: true}
	s := &Sandbox{opts: opts, warm: newWarmPool(opts), scratch: scratch}
	s.closing, s.stop = context.WithCancel(context.Background())
	// The first directory tells whether this process may mount; it is
	// kept for the first run.
	d, err := scratch.make(scratchProbe)
	if err != nil {
		s.boundFilesOnly()
		opts.Log.Warn("none sandbox: cannot mount a tmpfs per run (not root?): the total a run writes under its scratch directory is not bounded here, only each file (RLIMIT_FSIZE, to the scratch quota)", "err", err, "prlimit", s.prlimit)
	} else {
		scratch.put(d)
	}
	return s, nil
}

// boundFilesOnly makes the sandbox bound each file a run writes instead
// of mounting a tmpfs per run.
func (s *Sandbox) boundFilesOnly() {
	s.scratch.mount = false
	s.prlimit, _ = exec.LookPath("prlimit")
}

// scratchProbe is the size of the tmpfs New mounts to find out whether it
// may; the first run resizes it.
const scratchProbe = 1 << 20

// Kind returns "none": handlers run unisolated.
func (s *Sandbox) Kind() string { return "none" }

// Close stops the zygotes and removes the kept scratch directories (with
// their mounts); those of runs still going are removed when they end.
func (s *Sandbox) Close() error {
	s.stop()
	s.scratch.close()
	return s.warm.close()
}

// Run runs one handler. Close kills the runs in progress.
func (s *Sandbox) Run(ctx context.Context, spec *sandbox.RunSpec) (*sandbox.Outcome, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.closing, cancel)()
	dir, err := s.scratch.get(spec.Limits.Scratch)
	if err != nil {
		return nil, fmt.Errorf("scratch directory: %w", err)
	}
	defer s.scratch.put(dir)
	scratch := dir.path
	// Without a tmpfs, each file is bounded instead of the total.
	var fsize int64
	if !s.scratch.mount {
		fsize = spec.Limits.Scratch
	}
	env := append(append([]string{}, spec.Env...), "HOME="+scratch, "TMPDIR="+scratch, "JOBX_SCRATCH="+scratch)
	env = append(env, spec.Program.Env...)
	if spec.Limits.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, spec.Limits.Timeout)
		defer cancel()
	}
	if spec.Program.Warm != nil && s.opts.Zygotes > 0 {
		out, err := s.warm.run(ctx, spec, env, scratch, fsize)
		if !errors.Is(err, errNoWarm) {
			return out, err
		}
	}
	return s.runExec(ctx, spec, env, scratch, fsize)
}

func (s *Sandbox) runExec(ctx context.Context, spec *sandbox.RunSpec, env []string, scratch string, fsize int64) (*sandbox.Outcome, error) {
	if len(spec.Program.Argv) == 0 {
		return nil, fmt.Errorf("handler %s: no program to run", spec.Handler)
	}
	argv := spec.Program.Argv
	if fsize > 0 && s.prlimit != "" {
		path, err := exec.LookPath(argv[0])
		if err != nil {
			return nil, fmt.Errorf("start handler %s: %w", spec.Handler, err)
		}
		n := strconv.FormatInt(fsize, 10)
		argv = append([]string{s.prlimit, "--fsize=" + n + ":" + n, "--", path}, argv[1:]...)
	}
	start := time.Now()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Dir = scratch
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = time.Second
	var once sync.Once
	killGroup := func() {
		once.Do(func() {
			if cmd.Process != nil {
				syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			}
		})
	}
	st := sandbox.NewStreams(spec, killGroup)
	cmd.Stdin = spec.Stdin
	cmd.Stdout = st.Stdout
	cmd.Stderr = st.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start handler %s: %w", spec.Handler, err)
	}
	setRlimits(cmd.Process.Pid, spec.Limits.Memory, fsize)
	stop := context.AfterFunc(ctx, killGroup)
	err := cmd.Wait()
	stop()
	// Reap anything the handler left running in its group.
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	out := &sandbox.Outcome{Duration: time.Since(start), OutputExceeded: st.Exceeded()}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		out.ExitCode = exitErr.ExitCode()
		if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			out.Signal = signalName(int(ws.Signal()))
			out.ExitCode = 128 + int(ws.Signal())
		}
	case errors.Is(err, exec.ErrWaitDelay):
	default:
		return nil, fmt.Errorf("wait for handler %s: %w", spec.Handler, err)
	}
	out.TimedOut = errors.Is(ctx.Err(), context.DeadlineExceeded)
	out.StderrTail = st.Tail()
	return out, nil
}

// setRlimits applies the address-space limit (memory) and the largest
// file it may write (fsize) to a started process; 0 leaves one as it is.
// The window between start and prlimit is a few microseconds of runtime
// code.
func setRlimits(pid int, memory, fsize int64) {
	if memory > 0 {
		unix.Prlimit(pid, unix.RLIMIT_AS, &unix.Rlimit{Cur: uint64(memory), Max: uint64(memory)}, nil)
	}
	if fsize > 0 {
		unix.Prlimit(pid, unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: uint64(fsize), Max: uint64(fsize)}, nil)
	}
}

func signalName(sig int) string { return unix.SignalName(syscall.Signal(sig)) }
