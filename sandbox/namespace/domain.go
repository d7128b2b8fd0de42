package namespace

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/jobx/jobx/processors/python"
	"github.com/jobx/jobx/sandbox/internal/seccomp"
	"golang.org/x/sys/unix"
)

// key identifies interchangeable domains: same workflow, processor,
// network and limits.
type key struct {
	workflow, processor, network string
	memory, pids, scratch        int64
	cpu                          float64
}

func (k key) String() string {
	return fmt.Sprintf("%s/%s(net=%s, mem=%d, cpu=%g, pids=%d, scratch=%d)", k.workflow, k.processor, k.network, k.memory, k.cpu, k.pids, k.scratch)
}

// domain is one warm isolation domain: a bubblewrap sandbox whose PID 1 is
// the jobx agent, with a Python zygote beside it for the python processor.
// A domain runs one invocation at a time; between two, every process the
// first left is killed (settle).
type domain struct {
	s       *Sandbox
	id      string
	key     key
	dir     string // host directory: sockets, log
	cmd     *exec.Cmd
	agent   int           // host pid of the agent, the domain's PID 1
	dead    chan struct{} // closed once bubblewrap has exited
	cg      *cgroups      // nil: limits are rlimits
	zygote  *python.Zygote
	zygPid  int // host pid of the zygote (python domains)
	logPath string

	// scratch names the domain's clean scratch directory, left by a run
	// that did not touch it, with the ctime it had when made ("" when
	// none). Only the domain's current user touches them.
	scratch      string
	scratchCtime unix.Timespec

	destroyOnce sync.Once
}

// Key, Alive, Score and HoldsOtherKey make a domain a pool.Box.
func (d *domain) Key() key { return d.key }

func (d *domain) Alive() bool {
	select {
	case <-d.dead:
		return false
	default:
		return true
	}
}

// Score prefers a domain whose zygote keeps a process for the run (handler
// is the program's path in the domain and its type, NUL-separated).
func (d *domain) Score(reuse, handler string) int {
	if reuse != "" && d.zygote != nil {
		path, typ, _ := cutNUL(handler)
		if d.zygote.Keeps(reuse, path, typ) {
			return 1
		}
	}
	return 0
}

// HoldsOtherKey is false: a run never costs a domain the processes it keeps
// for other reuse keys (they wait undumpable, out of the run's reach).
func (d *domain) HoldsOtherKey(string) bool { return false }

func (d *domain) agentSocket() string  { return filepath.Join(d.dir, "agent.sock") }
func (d *domain) zygoteSocket() string { return filepath.Join(d.dir, "zygote.sock") }

// inside returns the host path of path inside the domain.
func (d *domain) inside(path string) string {
	return "/proc/" + strconv.Itoa(d.agent) + "/root" + path
}

// create starts a domain for k. It returns once bubblewrap has made the
// namespaces and the domain's cgroups hold it; the agent and zygote then
// start, and the first run's request waits in their sockets' backlog.
func (s *Sandbox) create(ctx context.Context, k key) (_ *domain, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Ready)
	defer cancel()
	d := &domain{s: s, id: "ns-" + randomHex(6), key: k, dead: make(chan struct{})}
	d.dir = filepath.Join(s.opts.Dir, "d", d.id)
	d.logPath = filepath.Join(d.dir, "log")
	if err := os.MkdirAll(d.dir, 0o700); err != nil {
		return nil, err
	}
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
		if err != nil {
			d.destroy()
		}
	}()
	sp, err := s.domainSpec(k)
	if err != nil {
		return nil, err
	}
	filter, err := seccomp.Default()
	if err != nil {
		return nil, fmt.Errorf("seccomp filter: %w", err)
	}
	files := make([]*os.File, 5)
	if files[fdAgent-3], err = listenFile(d.agentSocket()); err != nil {
		return nil, err
	}
	if sp.python {
		if files[fdZygote-3], err = listenFile(d.zygoteSocket()); err != nil {
			return nil, err
		}
	}
	secR, secW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	infoR, infoW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	blockR, blockW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	files[fdSeccomp-3], files[fdInfo-3], files[fdBlock-3] = secR, infoW, blockR
	for _, f := range files {
		if f != nil {
			closers = append(closers, f)
		}
	}
	closers = append(closers, secW, infoR, blockW)
	// The program is a few kilobytes: the pipe holds it whole.
	if _, err := secW.Write(filter.Bytes()); err != nil {
		return nil, fmt.Errorf("seccomp filter: %w", err)
	}
	secW.Close()

	logf, err := os.Create(d.logPath)
	if err != nil {
		return nil, err
	}
	closers = append(closers, logf)
	args := bwrapArgs(sp)
	d.cmd = exec.Command(s.opts.Bwrap, args...)
	d.cmd.Env = domainEnv
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.ExtraFiles = files
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	if os.Geteuid() == 0 {
		d.cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(s.opts.UID), Gid: uint32(s.opts.GID), Groups: []uint32{}}
	}
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start bubblewrap: %w", err)
	}
	go func() {
		d.cmd.Wait()
		close(d.dead)
	}()
	for _, f := range files {
		if f != nil {
			f.Close() // bubblewrap and the agent hold them now
		}
	}
	infoW.Close()
	if d.agent, err = readChildPid(ctx, infoR, d.dead); err != nil {
		return nil, fmt.Errorf("domain %s: %w: %s", d.id, err, d.logTail())
	}
	if s.cgroups {
		if d.cg, err = newCgroups(s.cgParent, d.id, k.memory, k.pids+pidsOverhead, k.cpu); err != nil {
			return nil, fmt.Errorf("domain %s: cgroups: %w", d.id, err)
		}
		if err := d.cg.add(d.agent); err != nil {
			return nil, fmt.Errorf("domain %s: %w: %s", d.id, err, d.logTail())
		}
	}
	// bubblewrap runs the agent once it reads this byte.
	if _, err := blockW.Write([]byte{1}); err != nil {
		return nil, fmt.Errorf("domain %s: %w: %s", d.id, err, d.logTail())
	}
	// The domain's root is in place once its scratch tmpfs is.
	for {
		if _, err := os.Stat(d.inside(boxScratch)); err == nil {
			break
		}
		select {
		case <-d.dead:
			return nil, fmt.Errorf("domain %s exited while starting: %s", d.id, d.logTail())
		case <-ctx.Done():
			return nil, fmt.Errorf("domain %s not ready: %w: %s", d.id, ctx.Err(), d.logTail())
		case <-time.After(200 * time.Microsecond):
		}
	}
	if sp.python {
		// The zygote is the agent's first child, started before any run;
		// it is known by its pid from then on (a later child of the agent
		// is an orphan, whatever it calls itself).
		for {
			if kids, _ := children(d.agent); len(kids) > 0 {
				d.zygPid = kids[0]
				break
			}
			select {
			case <-d.dead:
				return nil, fmt.Errorf("domain %s exited while starting: %s", d.id, d.logTail())
			case <-ctx.Done():
				return nil, fmt.Errorf("domain %s: no zygote: %w: %s", d.id, ctx.Err(), d.logTail())
			case <-time.After(200 * time.Microsecond):
			}
		}
		d.zygote = python.AttachZygote(d.zygoteSocket(), d.dead, d.killGroup, s.log.With("domain", d.id))
	}
	s.log.Debug("domain started", "domain", d.id, "key", k.String(), "agent", d.agent, "command", describe(args))
	return d, nil
}

// pidsOverhead is added to a domain's pids limit for the agent (a Go
// program, with its threads), the zygote and its pre-forked child.
const pidsOverhead = 16

// listenFile makes a listening unix socket at path and returns it as a
// file to hand to the domain; the socket stays when the listener here
// closes.
func listenFile(path string) (*os.File, error) {
	os.Remove(path)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	l.SetUnlinkOnClose(false)
	defer l.Close()
	return l.File()
}

// readChildPid reads bubblewrap's info ({"child-pid": N}).
func readChildPid(ctx context.Context, r *os.File, dead <-chan struct{}) (int, error) {
	type result struct {
		pid int
		err error
	}
	ch := make(chan result, 1)
	go func() {
		var info struct {
			ChildPid int `json:"child-pid"`
		}
		err := json.NewDecoder(r).Decode(&info)
		if err == nil && info.ChildPid <= 0 {
			err = errors.New("bubblewrap named no child pid")
		}
		ch <- result{info.ChildPid, err}
	}()
	select {
	case res := <-ch:
		if res.err != nil {
			return 0, fmt.Errorf("bubblewrap: %w", res.err)
		}
		return res.pid, nil
	case <-dead:
		return 0, errors.New("bubblewrap exited while making the domain")
	case <-ctx.Done():
		r.Close()
		return 0, fmt.Errorf("bubblewrap not ready: %w", ctx.Err())
	}
}

// logTail returns the last lines of the domain's output (bubblewrap's, the
// agent's and the zygote's).
func (d *domain) logTail() string {
	data, _ := os.ReadFile(d.logPath)
	if len(data) > 2048 {
		data = data[len(data)-2048:]
	}
	return string(bytes.TrimSpace(data))
}

// killGroup kills the process group of the zygote's child ns (a pid of the
// domain's PID namespace): it finds the child among the zygote's on this
// host. A child already gone is no error.
func (d *domain) killGroup(ns int) error {
	if d.zygPid == 0 {
		return nil
	}
	kids, _ := children(d.zygPid)
	for _, k := range kids {
		if p, err := nsPid(k); err == nil && p == ns {
			if err := syscall.Kill(-k, syscall.SIGKILL); errors.Is(err, syscall.ESRCH) {
				syscall.Kill(k, syscall.SIGKILL)
			}
			return nil
		}
	}
	return nil
}

// procs returns the host pids of the domain's processes.
func (d *domain) procs() []int {
	if d.cg != nil {
		if pids, err := d.cg.pids(); err == nil {
			return pids
		}
	}
	return tree(d.agent)
}

// killExtra sends SIGKILL to every process of the domain but the agent,
// the zygote and the zygote's children (its pre-forked child, the
// processes it keeps for reuse keys, and the child of the run just ended,
// which exits by itself). It returns how many it signalled.
func (d *domain) killExtra() int {
	keep := map[int]bool{d.agent: true}
	if d.zygote != nil {
		keep[d.zygPid] = true
		kids, _ := children(d.zygPid)
		for _, k := range kids {
			keep[k] = true
		}
	}
	n := 0
	for _, p := range d.procs() {
		if !keep[p] {
			syscall.Kill(p, syscall.SIGKILL)
			n++
		}
	}
	return n
}

// sweep kills what killExtra kills and waits until it is gone, so that
// nothing an invocation started outlives it. It reports whether the
// domain is clean.
func (d *domain) sweep() bool {
	for round := 0; round < 200; round++ {
		if d.killExtra() == 0 {
			return true
		}
		time.Sleep(500 * time.Microsecond)
	}
	return false
}

// takeScratch returns the name of an empty scratch directory for a run
// (under boxScratch), owned by the sandbox user with mode 0700: the one the
// last run left untouched, or a new one.
func (d *domain) takeScratch() (string, error) {
	if name := d.scratch; name != "" {
		d.scratch = ""
		var st unix.Stat_t
		dir := d.inside(boxScratch + "/" + name)
		if err := unix.Lstat(dir, &st); err == nil && st.Ctim == d.scratchCtime && st.Mode == unix.S_IFDIR|0o700 {
			return name, nil
		}
		os.RemoveAll(dir)
	}
	name := "inv-" + randomHex(8)
	dir := d.inside(boxScratch + "/" + name)
	if err := d.s.mkdirAsSandbox(dir); err != nil {
		return "", fmt.Errorf("scratch directory: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		os.Remove(dir)
		return "", fmt.Errorf("scratch directory: %w", err)
	}
	d.scratchCtime = st.Ctim
	return name, nil
}

// putScratch keeps a run's scratch directory for the next run when the run
// left it as it was made (its ctime changes with any entry made or removed
// in it, and with any change of its mode or owner); otherwise it removes
// it. The run's processes must be gone.
func (d *domain) putScratch(name string) {
	dir := d.inside(boxScratch + "/" + name)
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err == nil && st.Ctim == d.scratchCtime && st.Mode == unix.S_IFDIR|0o700 {
		d.scratch = name
		return
	}
	os.RemoveAll(dir)
}

// destroy kills the domain (bubblewrap's death takes its PID 1, and so
// the whole PID namespace, with it), removes its cgroups and its
// directory. It is idempotent.
func (d *domain) destroy() {
	d.destroyOnce.Do(func() {
		if d.zygote != nil {
			d.zygote.Close()
		}
		if d.cmd != nil && d.cmd.Process != nil {
			if d.agent > 0 {
				syscall.Kill(d.agent, syscall.SIGKILL)
			}
			d.cmd.Process.Kill()
			select {
			case <-d.dead:
			case <-time.After(5 * time.Second):
				d.s.log.Warn("domain did not exit", "domain", d.id)
			}
		}
		if d.cg != nil {
			if err := d.cg.remove(); err != nil {
				d.s.log.Warn("remove a domain's cgroups", "domain", d.id, "err", err)
			}
		}
		os.RemoveAll(d.dir)
	})
}

func cutNUL(s string) (before, after string, ok bool) {
	if i := bytes.IndexByte([]byte(s), 0); i >= 0 {
		return s[:i], s[i+1:], true
	}
	return s, "", false
}

// mkdirAsSandbox makes directory dir (mode 0700) owned by the sandbox user.
// The domain's tmpfs belongs to its user namespace, where only the sandbox
// user is mapped: a root runner makes the directory as that user (its file
// system uid, on a locked thread), since root is not mapped there.
func (s *Sandbox) mkdirAsSandbox(dir string) error {
	if os.Geteuid() != 0 {
		return os.Mkdir(dir, 0o700)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	unix.Setfsgid(s.opts.GID)
	unix.Setfsuid(s.opts.UID)
	err := os.Mkdir(dir, 0o700)
	unix.Setfsuid(0)
	unix.Setfsgid(0)
	return err
}
