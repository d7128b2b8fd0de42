package none

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jobx/jobx/sandbox"

	"github.com/hashicorp/go-multierror"
	"github.com/jobx/jobx/processors/python"
)

// errNoWarm means the run should fall back to a cold start.
var errNoWarm = errors.New("no warm interpreter for this program")

// warmPool keeps Python zygotes: interpreters that fork a fresh child per
// handler run, so a run costs a fork (about 1 ms) instead of an
// interpreter start (about 10 ms). Zygotes start on first use and are
// restarted when they die.
type warmPool struct {
	opts Options

	mu      sync.Mutex // guards zygotes, runtime and closed
	zygotes []*python.Zygote
	runtime string // path of the installed Python runtime
	sockDir string // short directory for the zygotes' sockets
	next    atomic.Uint64
	closed  bool
}

func newWarmPool(opts Options) *warmPool {
	return &warmPool{opts: opts, zygotes: make([]*python.Zygote, opts.Zygotes)}
}

// get returns a live zygote, starting one if needed: the next in turn, or
// for a reuse key (with the handler's file) always the same one (the one
// that may keep a process for it).
func (p *warmPool) get(ctx context.Context, reuse string) (*python.Zygote, error) {
	var i int
	if reuse != "" {
		h := fnv.New32a()
		h.Write([]byte(reuse))
		i = int(h.Sum32() % uint32(len(p.zygotes)))
	} else {
		i = int(p.next.Add(1) % uint64(len(p.zygotes)))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errNoWarm
	}
	if z := p.zygotes[i]; z != nil {
		select {
		case <-z.Done():
			p.opts.Log.Warn("python zygote died; starting another", "zygote", i)
		default:
			return z, nil
		}
	}
	if p.runtime == "" {
		p.runtime = filepath.Join(p.opts.Dir, python.RuntimeFile)
		if err := os.WriteFile(p.runtime, python.Runtime, 0o644); err != nil {
			return nil, fmt.Errorf("install python runtime: %w", err)
		}
	}
	if p.sockDir == "" {
		// Unix socket paths are limited to 107 bytes: keep them short.
		dir, err := os.MkdirTemp("", "jobx-zyg-")
		if err != nil {
			return nil, err
		}
		p.sockDir = dir
	}
	sock := filepath.Join(p.sockDir, fmt.Sprintf("zygote-%d.sock", i))
	z, err := python.StartZygote(ctx, p.runtime, sock, p.opts.Log)
	if err != nil {
		return nil, fmt.Errorf("start python zygote: %w", err)
	}
	p.zygotes[i] = z
	return z, nil
}

func (p *warmPool) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	var errs error
	for i, z := range p.zygotes {
		if z != nil {
			if err := z.Close(); err != nil {
				errs = multierror.Append(errs, err)
			}
			p.zygotes[i] = nil
		}
	}
	if p.sockDir != "" {
		os.RemoveAll(p.sockDir)
	}
	return errs
}

// run forks the handler from a zygote, wiring its stdio through pipes.
// fsize, when positive, bounds each file the handler writes.
func (p *warmPool) run(ctx context.Context, spec *sandbox.RunSpec, env []string, scratch string, fsize int64) (*sandbox.Outcome, error) {
	if spec.Program.Warm.Kind != "python" {
		return nil, errNoWarm
	}
	// A zygote parks children by reuse key and handler file: hashing both
	// keeps each handler's runs of a key on the zygote that holds its
	// parked children, and spreads a request's handlers over the zygotes.
	pick := spec.Reuse
	if pick != "" {
		pick += "\x00" + spec.Program.Warm.HandlerPath
	}
	z, err := p.get(context.WithoutCancel(ctx), pick)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	pipes, err := sandbox.NewPipes()
	if err != nil {
		return nil, fmt.Errorf("pipes for handler %s: %w", spec.Handler, err)
	}
	defer pipes.Close()
	child, err := z.Spawn(ctx, python.SpawnRequest{
		HandlerPath: spec.Program.Warm.HandlerPath,
		HandlerType: spec.HandlerType,
		Env:         env,
		Dir:         scratch,
		Stdin:       pipes.Stdin, Stdout: pipes.Stdout, Stderr: pipes.Stderr,
		Rlimits: python.Rlimits{AS: spec.Limits.Memory, FSize: fsize},
		Reuse:   spec.Reuse,
	})
	pipes.CloseChildEnds()
	if err != nil {
		return nil, fmt.Errorf("fork handler %s from zygote: %w", spec.Handler, err)
	}
	var once sync.Once
	kill := func() { once.Do(func() { child.Kill() }) }
	st := sandbox.NewStreams(spec, kill)
	pipes.Pump(spec.Stdin, st)
	stop := context.AfterFunc(ctx, kill)
	status, werr := child.Wait()
	stop()
	if status.Parked {
		// The zygote kept the child for the next run of its reuse key; its
		// stdio is closed. Whatever it started and still holds the pipes
		// open is stopped with it.
		if !pipes.Finish(time.Second) {
			syscall.Kill(-child.Pid(), syscall.SIGKILL)
		}
	} else {
		// Processes the handler started would hold the pipes open: kill
		// its group.
		syscall.Kill(-child.Pid(), syscall.SIGKILL)
		pipes.Finish(time.Second)
	}
	if werr != nil {
		return nil, fmt.Errorf("wait for handler %s: %w", spec.Handler, werr)
	}
	out := &sandbox.Outcome{Duration: time.Since(start), Warm: true, OutputExceeded: st.Exceeded(), StderrTail: st.Tail()}
	out.ExitCode = status.Code
	if status.Signal != 0 {
		out.Signal = signalName(status.Signal)
		out.ExitCode = 128 + status.Signal
	}
	out.TimedOut = errors.Is(ctx.Err(), context.DeadlineExceeded)
	return out, nil
}
