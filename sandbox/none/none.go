package none

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

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
// limit and rlimits. Python handlers fork from warm zygotes. It is the
// embedded default when no containerd is reachable; it isolates handlers
// from each other's state, not from the host.
type Sandbox struct {
	opts    Options
	warm    *warmPool
	scratch *scratchDirs
}

var _ sandbox.Sandbox = (*Sandbox)(nil)

// New prepares the scratch directory. Zygotes start lazily.
func New(opts Options) (*Sandbox, error) {
	if opts.Dir == "" {
		return nil, errors.New("process sandbox: Dir is required")
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if err := os.MkdirAll(filepath.Join(opts.Dir, "scratch"), 0o755); err != nil {
		return nil, fmt.Errorf("process sandbox: %w", err)
	}
	scratch := &scratchDirs{parent: filepath.Join(opts.Dir, "scratch"), max: 64}
	return &Sandbox{opts: opts, warm: newWarmPool(opts), scratch: scratch}, nil
}

// Kind returns "none": handlers run unisolated.
func (s *Sandbox) Kind() string { return "none" }

// Close stops the zygotes and removes the kept scratch directories.
func (s *Sandbox) Close() error {
	s.scratch.close()
	return s.warm.close()
}

// Run runs one handler.
func (s *Sandbox) Run(ctx context.Context, spec *sandbox.RunSpec) (*sandbox.Outcome, error) {
	scratch, err := s.scratch.get()
	if err != nil {
		return nil, fmt.Errorf("scratch directory: %w", err)
	}
	defer s.scratch.put(scratch)
	env := append(append([]string{}, spec.Env...), "HOME="+scratch, "TMPDIR="+scratch, "JOBX_SCRATCH="+scratch)
	env = append(env, spec.Program.Env...)
	if spec.Limits.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, spec.Limits.Timeout)
		defer cancel()
	}
	if spec.Program.Warm != nil && s.opts.Zygotes > 0 {
		out, err := s.warm.run(ctx, spec, env, scratch)
		if !errors.Is(err, errNoWarm) {
			return out, err
		}
	}
	return s.runExec(ctx, spec, env, scratch)
}

func (s *Sandbox) runExec(ctx context.Context, spec *sandbox.RunSpec, env []string, scratch string) (*sandbox.Outcome, error) {
	if len(spec.Program.Argv) == 0 {
		return nil, fmt.Errorf("handler %s: no program to run", spec.Handler)
	}
	start := time.Now()
	cmd := exec.Command(spec.Program.Argv[0], spec.Program.Argv[1:]...)
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
	setRlimits(cmd.Process.Pid, spec.Limits)
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

// setRlimits applies memory and process limits to a started process. The
// window between start and prlimit is a few microseconds of runtime code.
func setRlimits(pid int, l sandbox.Limits) {
	if l.Memory > 0 {
		lim := &unix.Rlimit{Cur: uint64(l.Memory), Max: uint64(l.Memory)}
		unix.Prlimit(pid, unix.RLIMIT_AS, lim, nil)
	}
}

func signalName(sig int) string { return unix.SignalName(syscall.Signal(sig)) }
