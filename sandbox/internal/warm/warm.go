// Package warm is the run path the isolating sandboxes share. A Box is one
// warm sandbox, a namespace domain or a container, whose PID 1 is the jobx
// agent and which, for Python, runs a zygote beside it: it runs one
// invocation at a time, each a fresh process forked by the zygote (or a
// process the zygote kept for the run's reuse key, reached directly, a
// lane) or by the agent, and settles between two runs: every process the
// last run left is killed, and its scratch directory removed unless the run
// left it untouched.
//
// A backend starts its sandbox, fills in a Box and keeps the sandbox's
// life (its Dead channel, its destruction); the Box runs invocations in it.
//
//	b := &warm.Box{ID: id, Agent: pid, Zygote: zpid, ...}
//	b.Start(logger)                      // attaches the zygote's client
//	out, settle, err := b.Run(ctx, run)  // then pool.Settle(b, settle)
package warm

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/jobx/jobx/internal/spawn"
	"github.com/jobx/jobx/processors/python"
	"github.com/jobx/jobx/sandbox"
	"golang.org/x/sys/unix"
)

// ScratchRoot is where a box's scratch directories are, inside it.
const ScratchRoot = "/scratch"

// Box is one warm sandbox. The backend fills in its exported fields before
// Start; Run may then be called, by one caller at a time.
type Box struct {
	ID string
	// Agent is the host pid of the box's PID 1, the agent; Zygote the host
	// pid of the zygote, the agent's first child (0 for a box without one).
	Agent, Zygote int
	// AgentSocket and ZygoteSocket are the host paths of their sockets
	// ("" for a box without a zygote).
	AgentSocket, ZygoteSocket string
	// Dead is closed once the box has exited.
	Dead <-chan struct{}
	// Scratch is the box's scratch root (ScratchRoot inside), opened once:
	// a run's directory is reached through it, never through a path that
	// the box's processes could redirect. MakeScratch makes a run's
	// directory there, empty, mode 0700, owned by the sandbox user. Close
	// closes it.
	Scratch     *os.Root
	MakeScratch func(root *os.Root, name string) error
	// Procs lists the host pids of the box's processes; OOMKills counts
	// those its memory limit killed; LogTail returns the last lines of its
	// output.
	Procs    func() []int
	OOMKills func() int64
	LogTail  func() string
	// Kept are the files Procs and OOMKills read through kept
	// descriptors; Close closes them.
	Kept []*Kept

	zygote *python.Zygote
	// zygoteKids reads the zygote's children (made at the first read;
	// closed, and never opened again, once the box is closed).
	kidsMu     sync.Mutex
	zygoteKids *Kept
	closed     bool

	// scratch names the box's clean scratch directory, left by a run that
	// did not touch it, with the ctime it had when made ("" when none).
	// Only the box's current user touches them.
	scratch      string
	scratchCtime syscall.Timespec
}

// Start attaches the client of the box's zygote, if it has one.
func (b *Box) Start(log *slog.Logger) {
	if b.ZygoteSocket != "" {
		b.zygote = python.AttachZygote(b.ZygoteSocket, b.Dead, b.KillGroup, log.With("box", b.ID))
	}
}

// Close kills the runs and the kept processes of the box's zygote client,
// and closes its scratch root.
func (b *Box) Close() {
	if b.zygote != nil {
		b.zygote.Close()
	}
	if b.Scratch != nil {
		b.Scratch.Close()
	}
	for _, k := range b.Kept {
		k.Close()
	}
	b.kidsMu.Lock()
	b.closed = true
	if b.zygoteKids != nil {
		b.zygoteKids.Close()
	}
	b.kidsMu.Unlock()
}

// zygoteChildren returns the host pids of the zygote's children. The
// zygote is single-threaded by construction (a fork server that runs no
// handler code, out of reach of the handlers: not dumpable), so its one
// thread's children file lists them all, read through a kept descriptor
// bound to the zygote itself. Were it ever to start a thread, the children
// of that thread would be missing here and so killed by KillExtra: the
// box would fail loudly, never keep a process it should not.
func (b *Box) zygoteChildren() []int {
	b.kidsMu.Lock()
	if b.zygoteKids == nil {
		z := strconv.Itoa(b.Zygote)
		b.zygoteKids = NewKept("/proc/" + z + "/task/" + z + "/children")
		if b.closed {
			// A sweep after Close (a settle that outlived the box) opens
			// nothing: its read fails and the box is going anyway.
			b.zygoteKids.Close()
		}
	}
	k := b.zygoteKids
	b.kidsMu.Unlock()
	kids, _ := k.Pids()
	return kids
}

// Alive reports whether the box can still run invocations.
func (b *Box) Alive() bool {
	select {
	case <-b.Dead:
		return false
	default:
		return true
	}
}

// Score prefers a box whose zygote keeps a process for the run: handler is
// Handler(run) of the run, reuse its reuse key.
func (b *Box) Score(reuse, handler string) int {
	if reuse != "" && b.zygote != nil {
		path, typ, _ := cutNUL(handler)
		if b.zygote.Keeps(reuse, path, typ) {
			return 1
		}
	}
	return 0
}

// HoldsOtherKey is false: a run never costs a box the processes it keeps
// for other reuse keys (they wait undumpable, out of the run's reach).
func (b *Box) HoldsOtherKey(string) bool { return false }

// Handler names a run's handler as Score takes it: its program's path in
// the box and its type.
func Handler(path, handlerType string) string { return path + "\x00" + handlerType }

func cutNUL(s string) (before, after string, ok bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// KillGroup kills the process group of the zygote's child ns (a pid of the
// box's PID namespace): it finds the child among the zygote's on this
// host. A child already gone is no error.
func (b *Box) KillGroup(ns int) error {
	if b.Zygote == 0 {
		return nil
	}
	kids, _ := Children(b.Zygote)
	for _, k := range kids {
		if p, err := NsPid(k); err == nil && p == ns {
			if err := syscall.Kill(-k, syscall.SIGKILL); errors.Is(err, syscall.ESRCH) {
				syscall.Kill(k, syscall.SIGKILL)
			}
			return nil
		}
	}
	return nil
}

// KillExtra sends SIGKILL to every process of the box but the agent, the
// zygote and the zygote's children (its pre-forked child, the processes it
// keeps for reuse keys, and the child of the run just ended, which exits by
// itself). It returns how many it signalled. A run's processes cannot pass
// for the zygote's children: a process is the zygote's child only when the
// zygote forked it (the seccomp filter refuses CLONE_PARENT), and an orphan
// is re-parented to the box's PID 1.
func (b *Box) KillExtra() int {
	// The processes first, the zygote's children second: the zygote forks
	// its next pre-forked child while the box settles, and a child forked
	// between the two reads must be among those spared, not those killed.
	procs := b.Procs()
	keep := map[int]bool{b.Agent: true}
	if b.Zygote != 0 {
		keep[b.Zygote] = true
		for _, k := range b.zygoteChildren() {
			keep[k] = true
		}
	}
	n := 0
	for _, p := range procs {
		if !keep[p] {
			syscall.Kill(p, syscall.SIGKILL)
			n++
		}
	}
	return n
}

// Sweep kills what KillExtra kills and waits until it is gone, so that
// nothing an invocation started outlives it. It reports whether the box
// is clean.
func (b *Box) Sweep() bool {
	for round := 0; round < 200; round++ {
		if b.KillExtra() == 0 {
			return true
		}
		time.Sleep(500 * time.Microsecond)
	}
	return false
}

// takeScratch returns the name of an empty scratch directory for a run:
// the one the last run left untouched, or a new one.
func (b *Box) takeScratch() (string, error) {
	if name := b.scratch; name != "" {
		b.scratch = ""
		if b.untouched(name) {
			return name, nil
		}
		b.Scratch.RemoveAll(name)
	}
	name := "inv-" + RandomHex(8)
	if err := b.MakeScratch(b.Scratch, name); err != nil {
		return "", fmt.Errorf("scratch directory: %w", err)
	}
	fi, err := b.Scratch.Lstat(name)
	if err != nil {
		b.Scratch.Remove(name)
		return "", fmt.Errorf("scratch directory: %w", err)
	}
	b.scratchCtime = fi.Sys().(*syscall.Stat_t).Ctim
	return name, nil
}

// untouched says whether scratch directory name is as it was made: its
// ctime changes with any entry made or removed in it, and with any change
// of its mode or owner.
func (b *Box) untouched(name string) bool {
	fi, err := b.Scratch.Lstat(name)
	if err != nil {
		return false
	}
	st := fi.Sys().(*syscall.Stat_t)
	return st.Ctim == b.scratchCtime && st.Mode == unix.S_IFDIR|0o700
}

// putScratch keeps a run's scratch directory for the next run when the run
// left it untouched; otherwise it removes it. The run's processes must be
// gone.
func (b *Box) putScratch(name string) {
	if b.untouched(name) {
		b.scratch = name
		return
	}
	b.Scratch.RemoveAll(name)
}

// Run is one run's settings beyond its spec.
type Run struct {
	Spec *sandbox.RunSpec
	// Rewrite maps host paths in the spec (the handlers' directory, the
	// shared directory) to their paths in the box.
	Rewrite func(string) string
	// Env is added to the run's environment after the spec's.
	Env []string
	// Rlimits apply to the run's process (zero fields: none).
	Rlimits python.Rlimits
}

// ErrGone means the box died before or during the hand-over of a run.
var ErrGone = errors.New("sandbox went away")

// leftoverGrace is how long a run's output pipes may stay open after the
// handler's process ended before the processes it left are killed (its
// output is read to the end all the same).
const leftoverGrace = 20 * time.Millisecond

// Run runs one invocation in the box. It returns once the handler has
// ended and its output is read, with settle, which the caller must call
// (in the background) before the box runs anything else: it kills what
// the run left, removes its scratch directory and says whether the box may
// be reused. An error wrapping ErrGone means the box died before the
// handler started.
func (b *Box) Run(ctx context.Context, r Run) (*sandbox.Outcome, func() bool, error) {
	start := time.Now()
	spec := r.Spec
	inv, err := b.takeScratch()
	if err != nil {
		return nil, func() bool { return false }, err
	}
	drop := func() bool { b.Scratch.RemoveAll(inv); return false }
	scratch := ScratchRoot + "/" + inv
	env := make([]string, 0, len(spec.Env)+len(spec.Program.Env)+len(r.Env)+3)
	for _, kv := range spec.Env {
		env = append(env, r.Rewrite(kv))
	}
	env = append(env, "HOME="+scratch, "TMPDIR="+scratch, "JOBX_SCRATCH="+scratch)
	env = append(env, r.Env...)
	for _, kv := range spec.Program.Env {
		env = append(env, r.Rewrite(kv))
	}
	pipes, err := sandbox.NewPipes()
	if err != nil {
		return nil, func() bool { b.putScratch(inv); return true }, fmt.Errorf("pipes for handler %s: %w", spec.Handler, err)
	}
	defer pipes.Close()
	oomBefore := b.OOMKills()
	var (
		kill func()
		wait func() (code, signal int, err error)
	)
	if b.zygote != nil && spec.Program.Warm != nil {
		c, err := b.zygote.Spawn(ctx, python.SpawnRequest{
			HandlerPath: r.Rewrite(spec.Program.Warm.HandlerPath), HandlerType: spec.HandlerType,
			Env: env, Dir: scratch, Stdin: pipes.Stdin, Stdout: pipes.Stdout, Stderr: pipes.Stderr,
			Rlimits: r.Rlimits, Reuse: spec.Reuse,
		})
		pipes.CloseChildEnds()
		if err != nil {
			if errors.Is(err, python.ErrZygoteDead) || !b.Alive() {
				err = fmt.Errorf("%w: %w", ErrGone, err)
			}
			return nil, drop, fmt.Errorf("start handler %s in sandbox %s: %w: %s", spec.Handler, b.ID, err, b.LogTail())
		}
		kill = func() { c.Kill() }
		wait = func() (int, int, error) {
			st, err := c.Wait()
			return st.Code, st.Signal, err
		}
	} else {
		argv := make([]string, len(spec.Program.Argv))
		for i, a := range spec.Program.Argv {
			argv[i] = r.Rewrite(a)
		}
		req := spawn.Request{Argv: argv, Env: env, Dir: scratch,
			Rlimits: spawn.Rlimits{AS: r.Rlimits.AS, NProc: r.Rlimits.NProc, FSize: r.Rlimits.FSize}}
		c, err := spawn.Start(ctx, b.AgentSocket, req, pipes.Stdin, pipes.Stdout, pipes.Stderr)
		pipes.CloseChildEnds()
		if err != nil {
			if errors.Is(err, spawn.ErrServerGone) {
				err = fmt.Errorf("%w: %w", ErrGone, err)
			}
			return nil, drop, fmt.Errorf("start handler %s in sandbox %s: %w: %s", spec.Handler, b.ID, err, b.LogTail())
		}
		defer c.Close()
		kill = c.Kill
		wait = func() (int, int, error) {
			st, err := c.Wait()
			return st.Code, st.Signal, err
		}
	}
	st := sandbox.NewStreams(spec, kill)
	pipes.Pump(spec.Stdin, st)
	stop := context.AfterFunc(ctx, kill)
	code, signal, werr := wait()
	stop()
	if !pipes.Drained(leftoverGrace) {
		// Something the run started holds its output open.
		b.KillExtra()
	}
	pipes.Finish(time.Second)
	out := &sandbox.Outcome{Duration: time.Since(start), OutputExceeded: st.Exceeded(), StderrTail: st.Tail()}
	out.TimedOut = errors.Is(ctx.Err(), context.DeadlineExceeded)
	if werr != nil {
		// The box died under the invocation: the handler's doing (memory,
		// or killing its PID 1) unless proven otherwise.
		select {
		case <-b.Dead:
		case <-time.After(100 * time.Millisecond):
		}
		out.OOMKilled = b.OOMKills() > oomBefore
		out.ExitCode, out.Signal = 137, "SIGKILL"
		out.StderrTail += "\njobx: the sandbox died during the invocation"
		return out, drop, nil
	}
	out.ExitCode = code
	if signal != 0 {
		out.Signal = unix.SignalName(syscall.Signal(signal))
		if code < 128 {
			out.ExitCode = 128 + signal
		}
	}
	out.OOMKilled = b.OOMKills() > oomBefore
	settle := func() bool {
		if !b.Sweep() {
			return drop()
		}
		b.putScratch(inv)
		return b.Alive() && !out.OOMKilled
	}
	return out, settle, nil
}

// Children returns the host pids of process pid's children, those of every
// one of its threads.
func Children(pid int) ([]int, error) {
	tasks, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	if err != nil {
		return nil, err
	}
	var kids []int
	for _, t := range tasks {
		data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + t.Name() + "/children")
		if err != nil {
			continue // the thread exited
		}
		kids = appendPids(kids, data)
	}
	return kids, nil
}

// Tree returns root and every host pid descending from it.
func Tree(root int) []int {
	all := []int{root}
	for i := 0; i < len(all); i++ {
		kids, _ := Children(all[i])
		all = append(all, kids...)
	}
	return all
}

// NsPid returns host process pid's pid in its innermost PID namespace.
func NsPid(pid int) (int, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	const field = "\nNSpid:"
	for i := 0; i+len(field) <= len(data); i++ {
		if string(data[i:i+len(field)]) != field {
			continue
		}
		line := data[i+len(field):]
		end := 0
		for end < len(line) && line[end] != '\n' {
			end++
		}
		pids := appendPids(nil, line[:end])
		if len(pids) > 0 {
			return pids[len(pids)-1], nil
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no NSpid", pid)
}

// ZygoteOf returns the host pid of the Python zygote the agent (host pid
// agent) started, or 0 while there is none: the agent's child running
// jobx_runtime.py zygote. Call it before the box runs anything (until
// then, the command line of the agent's children is the agent's doing);
// until the agent has started, its pid may have other children (the
// sandbox's own set-up).
func ZygoteOf(agent int) int {
	kids, _ := Children(agent)
	for _, k := range kids {
		cmd, err := os.ReadFile("/proc/" + strconv.Itoa(k) + "/cmdline")
		if err == nil && bytes.Contains(cmd, []byte("jobx_runtime.py\x00zygote\x00")) {
			return k
		}
	}
	return 0
}

// ReadPids reads a file of pids separated by white space (cgroup.procs).
func ReadPids(path string) ([]int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return appendPids(nil, data), nil
}

func appendPids(pids []int, data []byte) []int {
	n, in := 0, false
	for _, c := range data {
		if c >= '0' && c <= '9' {
			n, in = n*10+int(c-'0'), true
			continue
		}
		if in {
			pids = append(pids, n)
		}
		n, in = 0, false
	}
	if in {
		pids = append(pids, n)
	}
	return pids
}

// RandomHex returns n random bytes in hex, for the names of boxes and
// scratch directories.
func RandomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
