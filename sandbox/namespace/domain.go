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

	"github.com/jobx/jobx/sandbox/internal/seccomp"
	"github.com/jobx/jobx/sandbox/internal/warm"
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
// Its warm.Box runs the invocations.
type domain struct {
	*warm.Box
	s       *Sandbox
	key     key
	dir     string // host directory: sockets, log
	cmd     *exec.Cmd
	dead    chan struct{} // closed once bubblewrap has exited
	cg      *cgroups      // nil: limits are rlimits
	logPath string

	destroyOnce sync.Once
}

// Key makes a domain a pool.Box, with warm.Box's methods.
func (d *domain) Key() key { return d.key }

// inside returns the host path of path inside the domain.
func (d *domain) inside(path string) string {
	return "/proc/" + strconv.Itoa(d.Agent) + "/root" + path
}

// create starts a domain for k. It returns once bubblewrap has made the
// namespaces and the domain's cgroups hold it; the agent and zygote then
// start, and the first run's request waits in their sockets' backlog.
func (s *Sandbox) create(ctx context.Context, k key) (_ *domain, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Ready)
	defer cancel()
	d := &domain{Box: &warm.Box{ID: "ns-" + warm.RandomHex(6)}, s: s, key: k, dead: make(chan struct{})}
	d.Dead = d.dead
	d.dir = filepath.Join(s.opts.Dir, "d", d.ID)
	d.AgentSocket = filepath.Join(d.dir, "agent.sock")
	if k.processor == "python" {
		d.ZygoteSocket = filepath.Join(d.dir, "zygote.sock")
	}
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
	// What bubblewrap inherits (files, at fd 3 on) and this process's ends
	// of its pipes; every one is closed when create returns.
	files := make([]*os.File, 5)
	pipe := func() (r, w *os.File, err error) {
		if r, w, err = os.Pipe(); err == nil {
			closers = append(closers, r, w)
		}
		return r, w, err
	}
	listen := func(i int, path string) (err error) {
		if files[i-3], err = listenFile(path); err == nil {
			closers = append(closers, files[i-3])
		}
		return err
	}
	if err := listen(fdAgent, d.AgentSocket); err != nil {
		return nil, err
	}
	if sp.python {
		if err := listen(fdZygote, d.ZygoteSocket); err != nil {
			return nil, err
		}
	}
	secR, secW, err := pipe()
	if err != nil {
		return nil, err
	}
	infoR, infoW, err := pipe()
	if err != nil {
		return nil, err
	}
	blockR, blockW, err := pipe()
	if err != nil {
		return nil, err
	}
	files[fdSeccomp-3], files[fdInfo-3], files[fdBlock-3] = secR, infoW, blockR
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
	if d.Agent, err = readChildPid(ctx, infoR, d.dead); err != nil {
		return nil, fmt.Errorf("domain %s: %w: %s", d.ID, err, d.logTail())
	}
	if s.cgroups {
		if d.cg, err = newCgroups(s.cgParent, d.ID, k.memory, k.pids+pidsOverhead, k.cpu); err != nil {
			return nil, fmt.Errorf("domain %s: cgroups: %w", d.ID, err)
		}
		if err := d.cg.add(d.Agent); err != nil {
			return nil, fmt.Errorf("domain %s: %w: %s", d.ID, err, d.logTail())
		}
	}
	// bubblewrap runs the agent once it reads this byte.
	if _, err := blockW.Write([]byte{1}); err != nil {
		return nil, fmt.Errorf("domain %s: %w: %s", d.ID, err, d.logTail())
	}
	// The domain's root is in place once its scratch tmpfs is.
	if err := d.await(ctx, "its root", func() bool { _, err := os.Stat(d.inside(boxScratch)); return err == nil }); err != nil {
		return nil, err
	}
	if sp.python {
		// The zygote is the agent's child, started before any run; it is
		// known by its pid from then on (a later child of the agent is an
		// orphan, whatever it calls itself).
		if err := d.await(ctx, "its zygote", func() bool { d.Zygote = warm.ZygoteOf(d.Agent); return d.Zygote != 0 }); err != nil {
			return nil, err
		}
	}
	if d.Scratch, err = os.OpenRoot(d.inside(boxScratch)); err != nil {
		return nil, fmt.Errorf("domain %s: scratch: %w", d.ID, err)
	}
	d.MakeScratch = s.mkdirAsSandbox
	d.LogTail = d.logTail
	d.Procs = func() []int {
		if d.cg != nil {
			if pids, err := d.cg.pids(); err == nil {
				return pids
			}
		}
		return warm.Tree(d.Agent)
	}
	d.OOMKills = func() int64 {
		if d.cg == nil {
			return 0
		}
		return d.cg.oomKills()
	}
	d.Start(s.log)
	s.log.Debug("domain started", "domain", d.ID, "key", k.String(), "agent", d.Agent, "command", describe(args))
	return d, nil
}

// await polls ready until it holds, the domain exits or ctx ends.
func (d *domain) await(ctx context.Context, what string, ready func() bool) error {
	for !ready() {
		select {
		case <-d.dead:
			return fmt.Errorf("domain %s exited while starting: %s", d.ID, d.logTail())
		case <-ctx.Done():
			return fmt.Errorf("domain %s: waiting for %s: %w: %s", d.ID, what, ctx.Err(), d.logTail())
		case <-time.After(200 * time.Microsecond):
		}
	}
	return nil
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

// destroy kills the domain (bubblewrap's death takes its PID 1, and so
// the whole PID namespace, with it), removes its cgroups and its
// directory. It is idempotent.
func (d *domain) destroy() {
	d.destroyOnce.Do(func() {
		d.Close()
		if d.cmd != nil && d.cmd.Process != nil {
			if d.Agent > 0 {
				syscall.Kill(d.Agent, syscall.SIGKILL)
			}
			d.cmd.Process.Kill()
			select {
			case <-d.dead:
			case <-time.After(5 * time.Second):
				d.s.log.Warn("domain did not exit", "domain", d.ID)
			}
		}
		if d.cg != nil {
			if err := d.cg.remove(); err != nil {
				d.s.log.Warn("remove a domain's cgroups", "domain", d.ID, "err", err)
			}
		}
		os.RemoveAll(d.dir)
	})
}

// mkdirAsSandbox makes directory name (mode 0700) in root, owned by the
// sandbox user. A domain's tmpfs belongs to its user namespace, where only
// the sandbox user is mapped: a root runner makes the directory as that
// user (its file system uid, on a locked thread), since root is not mapped
// there.
func (s *Sandbox) mkdirAsSandbox(root *os.Root, name string) error {
	if os.Geteuid() != 0 {
		return root.Mkdir(name, 0o700)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	unix.Setfsgid(s.opts.GID)
	unix.Setfsuid(s.opts.UID)
	err := root.Mkdir(name, 0o700)
	unix.Setfsuid(0)
	unix.Setfsgid(0)
	return err
}
