package containerd

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	jobxseccomp "github.com/jobx/jobx/sandbox/internal/seccomp"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	client "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/contrib/seccomp"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	"github.com/jobx/jobx/images"
	"github.com/jobx/jobx/internal/tmpfs"
	"github.com/jobx/jobx/sandbox/agent"
	"github.com/jobx/jobx/sandbox/internal/warm"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Labels on every container a Sandbox creates.
const (
	LabelRunner    = "jobx.runner"
	LabelWorkflow  = "jobx.workflow"
	LabelProcessor = "jobx.processor"
	LabelHandler   = "jobx.handler"
	LabelImage     = "jobx.image"
)

// Paths inside a sandbox.
const (
	ctrRun      = "/jobx/run"      // the agent's and zygote's sockets (host dir, rw)
	ctrLib      = warm.LibDir      // jobx-agent and the Python runtime (host dir, ro)
	ctrHandlers = warm.HandlersDir // the workflow's installed handlers (host dir, ro)
	ctrScratch  = warm.ScratchRoot // per-invocation scratch directories (host dir)
	ctrWorking  = warm.WorkingDir  // /working/<workflow>: the shared filesystem
)

// key identifies interchangeable warm sandboxes: same workflow (and
// handler, with Options.PerHandler), image, network and limits, the
// scratch quota (the size of the box's scratch tmpfs) among them.
type key struct {
	workflow, handler, processor, image, network string
	memory, pids, scratch                        int64
	cpu                                          float64
}

func (k key) String() string {
	return fmt.Sprintf("%s/%s/%s(%s, net=%s, mem=%d, cpu=%g, pids=%d, scratch=%d)", k.workflow, k.handler, k.processor, k.image, k.network, k.memory, k.cpu, k.pids, k.scratch)
}

// box is one warm container: its init is the agent, with a Python zygote
// beside it for the python processor. Its warm.Box runs the invocations,
// one at a time, so the container's cgroup limits are the invocation's.
type box struct {
	*warm.Box
	id      string
	key     key
	hostDir string
	ctr     client.Container
	task    client.Task
	exited  <-chan client.ExitStatus
	dead    chan struct{} // closed when the task has exited
	cgroups cgroupPaths
	oom     atomic.Int64 // /tasks/oom events seen

	destroyOnce sync.Once
}

// Key makes a box a pool.Box, with warm.Box's methods.
func (b *box) Key() key { return b.key }

func (b *box) socket() string {
	if b.key.processor == "python" {
		return filepath.Join(b.hostDir, "run", "zygote.sock")
	}
	return filepath.Join(b.hostDir, "run", "agent.sock")
}

// imageTimeout bounds finding and unpacking a sandbox's image.
const imageTimeout = 5 * time.Minute

// create starts a warm container for k and waits until its agent (and
// zygote) accept connections.
func (s *Sandbox) create(ctx context.Context, k key) (_ *box, err error) {
	// The image under a bound of its own: its first unpack, on a busy
	// machine, takes longer than Ready gives a start.
	ictx, icancel := context.WithTimeout(s.nsCtx(ctx), imageTimeout)
	img, err := s.image(ictx, k.image)
	icancel()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(s.nsCtx(ctx), s.opts.Ready)
	defer cancel()
	b := &box{id: "jx-" + warm.RandomHex(6), key: k, dead: make(chan struct{})}
	b.hostDir = filepath.Join(s.opts.Dir, "c", b.id)
	for _, d := range []string{"run", "scratch"} {
		if err := os.MkdirAll(filepath.Join(b.hostDir, d), 0o711); err != nil {
			return nil, err
		}
	}
	if err := os.Chown(filepath.Join(b.hostDir, "run"), s.opts.UID, s.opts.GID); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			s.destroy(b)
		}
	}()
	// The runs' scratch directories live on a tmpfs of the quota, mounted
	// before the container starts so that its bind mount holds it: a
	// handler that fills it gets ENOSPC, and the host's disk loses
	// nothing. Its pages count against the container's memory limit.
	if err := tmpfs.Mount(filepath.Join(b.hostDir, "scratch"), k.scratch, 0o711); err != nil {
		return nil, fmt.Errorf("sandbox %s: scratch: %w", b.id, err)
	}
	handlers := filepath.Join(s.opts.HandlersDir, k.workflow)
	if err := os.MkdirAll(handlers, 0o755); err != nil {
		return nil, err
	}
	mounts := []specs.Mount{
		bind(filepath.Join(b.hostDir, "run"), ctrRun, false),
		bind(s.libDir, ctrLib, true),
		bind(handlers, ctrHandlers, true),
		bind(filepath.Join(b.hostDir, "scratch"), ctrScratch, false),
	}
	// The zygote keeps one pre-forked child: the fork happens between
	// invocations, and the child reports its status before it exits. The
	// sweep after a run spares it (the zygote names its idle children in
	// its final reply). No warm-up run in it: on two cores its CPU (about
	// 1 ms a fork in BenchmarkWarmRun) costs more than it saves.
	env := []string{"PYTHONDONTWRITEBYTECODE=1", "HOME=" + ctrScratch, "TMPDIR=" + ctrScratch, "JOBX_ZYGOTE_PREFORK=1", "JOBX_ZYGOTE_WARMUP=0"}
	if shared := s.host.SharedDir(k.workflow); shared != "" {
		// The sandbox user writes the workflow's files.
		if err := os.Chown(shared, s.opts.UID, s.opts.GID); err != nil {
			return nil, fmt.Errorf("shared directory of %s: %w", k.workflow, err)
		}
		mounts = append(mounts, bind(shared, ctrWorking+"/"+k.workflow, false))
	}
	if services := s.host.ServicesDir(); services != "" {
		// The runner's services endpoint (sessions, files, notifications).
		mounts = append(mounts, bind(services, services, false))
	}
	specOpts := []oci.SpecOpts{
		oci.WithImageConfig(img),
		oci.WithProcessCwd("/"),
		oci.WithUIDGID(uint32(s.opts.UID), uint32(s.opts.GID)),
		oci.WithRootFSReadonly(),
		oci.WithNoNewPrivileges,
		oci.WithCapabilities(nil),
		seccomp.WithDefaultProfile(), // Docker's default profile, narrowed to the (no) capabilities
		withoutCloneParent,           // a run's processes cannot pass for the zygote's children
		oci.WithHostname("jobx"),
		oci.WithMounts(mounts),
		oci.WithEnv(env),
		oci.WithMemoryLimit(uint64(k.memory)),
		oci.WithPidsLimit(int64(k.pids) + pidsOverhead),
	}
	if k.cpu > 0 {
		specOpts = append(specOpts, oci.WithCPUCFS(int64(k.cpu*100000), 100000))
	}
	if k.network == "host" {
		specOpts = append(specOpts, oci.WithHostNamespace(specs.NetworkNamespace), oci.WithMounts([]specs.Mount{
			bind("/etc/resolv.conf", "/etc/resolv.conf", true), bind("/etc/hosts", "/etc/hosts", true),
		}))
	}
	args := []string{ctrLib + "/" + agent.Name, ctrRun + "/agent.sock"}
	if k.processor == "python" {
		args = append(args, "python3", ctrLib+"/jobx_runtime.py", "zygote", ctrRun+"/zygote.sock")
	}
	specOpts = append(specOpts, oci.WithProcessArgs(args...))
	labels := map[string]string{
		LabelRunner: s.opts.RunnerID, LabelWorkflow: k.workflow, LabelProcessor: k.processor, LabelImage: k.image,
	}
	if k.handler != "" {
		labels[LabelHandler] = k.handler
	}
	b.ctr, err = s.cli.NewContainer(ctx, b.id,
		client.WithImage(img),
		client.WithSnapshotter(images.Snapshotter),
		client.WithNewSnapshot(b.id, img),
		client.WithRuntime("io.containerd.runc.v2", &runcoptions.Options{BinaryName: "runc"}),
		client.WithContainerLabels(labels),
		client.WithNewSpec(specOpts...),
	)
	if err != nil {
		return nil, fmt.Errorf("create container: %w", err)
	}
	b.task, err = b.ctr.NewTask(ctx, cio.LogFile(filepath.Join(b.hostDir, "log")))
	if err != nil {
		return nil, fmt.Errorf("create task: %w", err)
	}
	b.exited, err = b.task.Wait(s.nsCtx(context.Background()))
	if err != nil {
		return nil, fmt.Errorf("wait task: %w", err)
	}
	go func() {
		<-b.exited
		close(b.dead)
	}()
	s.register(b)
	if err := b.task.Start(ctx); err != nil {
		return nil, fmt.Errorf("start task: %w", err)
	}
	if err := b.waitReady(ctx); err != nil {
		return nil, err
	}
	if err := b.lockSockets(s.opts.UID); err != nil {
		return nil, err
	}
	agent := int(b.task.Pid())
	if b.cgroups, err = cgroupsOf(agent); err != nil {
		return nil, err
	}
	// The agent's one child is the zygote; the zygote's own children (its
	// pre-forked child, the processes it keeps) are its children.
	zygote := 0
	if k.processor == "python" {
		zygote = warm.ZygoteOf(agent)
	}
	if k.processor == "python" && zygote == 0 {
		return nil, fmt.Errorf("sandbox %s: no zygote among its processes", b.id)
	}
	scratch, err := os.OpenRoot(filepath.Join(b.hostDir, "scratch"))
	if err != nil {
		return nil, err
	}
	// The cgroup files every run reads, through kept descriptors.
	procs := warm.CgroupProcs(b.cgroups.pids, b.cgroups.v2)
	oom := warm.OOMEvents(b.cgroups.memory, b.cgroups.v2)
	b.Box = &warm.Box{
		ID: b.id, Agent: agent, Zygote: zygote, AgentSocket: filepath.Join(b.hostDir, "run", "agent.sock"),
		Dead: b.dead, Scratch: scratch,
		MakeScratch: func(root *os.Root, name string) error {
			if err := root.Mkdir(name, 0o700); err != nil {
				return err
			}
			return root.Lchown(name, s.opts.UID, s.opts.GID)
		},
		Procs: func() []int {
			pids, _ := procs.Pids()
			return pids
		},
		OOMKills: func() int64 { return oom.OOMKills() + b.oom.Load() },
		LogTail:  b.logTail,
		Kept:     []*warm.Kept{procs, oom},
	}
	if zygote != 0 {
		b.ZygoteSocket = filepath.Join(b.hostDir, "run", "zygote.sock")
	}
	b.Start(s.log)
	return b, nil
}

// lockSockets gives the box's run directory and sockets to root once the
// agent and zygote listen: only the runner (outside the box) can then ask
// them for processes, and no handler can replace or remove a socket.
func (b *box) lockSockets(uid int) error {
	run := filepath.Join(b.hostDir, "run")
	names, err := os.ReadDir(run)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := os.Lchown(filepath.Join(run, n.Name()), 0, 0); err != nil {
			return err
		}
		if n.Type()&os.ModeSocket != 0 {
			if err := os.Chmod(filepath.Join(run, n.Name()), 0o600); err != nil {
				return err
			}
		}
	}
	if err := os.Chown(run, 0, 0); err != nil {
		return err
	}
	return os.Chmod(run, 0o755)
}

// pidsOverhead is added to a handler's pids limit for the agent (a Go
// program, with its threads) and the zygote.
const pidsOverhead = 16

func bind(src, dst string, ro bool) specs.Mount {
	opts := []string{"rbind", "nosuid", "nodev"}
	if ro {
		opts = append(opts, "ro")
	} else {
		opts = append(opts, "rw")
	}
	return specs.Mount{Type: "bind", Source: src, Destination: dst, Options: opts}
}

// waitReady polls the box's socket until it accepts a connection.
func (b *box) waitReady(ctx context.Context) error {
	sock := b.socket()
	for {
		if _, err := os.Stat(sock); err == nil {
			if c, err := net.Dial("unix", sock); err == nil {
				c.Close()
				return nil
			}
		}
		select {
		case <-b.dead:
			return fmt.Errorf("sandbox %s exited while starting: %s", b.id, b.logTail())
		case <-ctx.Done():
			return fmt.Errorf("sandbox %s not ready: %w: %s", b.id, ctx.Err(), b.logTail())
		case <-time.After(time.Millisecond):
		}
	}
}

// logTail returns the last lines of the container's output.
func (b *box) logTail() string {
	data, _ := os.ReadFile(filepath.Join(b.hostDir, "log"))
	if len(data) > 2048 {
		data = data[len(data)-2048:]
	}
	return strings.TrimSpace(string(data))
}

// destroy kills and deletes a box's task and container, detaches its
// scratch tmpfs and removes its host directory. It is idempotent; errors
// are logged.
func (s *Sandbox) destroy(b *box) {
	b.destroyOnce.Do(func() {
		s.unregister(b)
		if b.Box != nil {
			b.Close()
		}
		ctx, cancel := context.WithTimeout(s.nsCtx(context.Background()), 30*time.Second)
		defer cancel()
		if b.task != nil {
			b.task.Kill(ctx, syscall.SIGKILL, client.WithKillAll)
			if b.exited != nil {
				select {
				case <-b.dead:
				case <-time.After(5 * time.Second):
				}
			}
			if _, err := b.task.Delete(ctx, client.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
				s.log.Warn("delete sandbox task", "container", b.id, "err", err)
			}
		}
		if b.ctr != nil {
			if err := b.ctr.Delete(ctx, client.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
				s.log.Warn("delete sandbox container", "container", b.id, "err", err)
			}
		}
		if err := tmpfs.Unmount(filepath.Join(b.hostDir, "scratch")); err != nil {
			s.log.Warn("detach sandbox scratch", "container", b.id, "err", err)
		}
		os.RemoveAll(b.hostDir)
	})
}

// cgroupPaths are a container's cgroup directories on the host.
type cgroupPaths struct {
	pids   string // directory whose cgroup.procs lists the container's processes
	memory string // directory with memory.oom_control (v1) or memory.events (v2)
	cpu    string // directory with cpuacct.usage (v1) or cpu.stat (v2), for measurements
	v2     bool
}

// cgroupsOf finds the cgroups of host process pid.
func cgroupsOf(pid int) (cgroupPaths, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return cgroupPaths{}, err
	}
	defer f.Close()
	var c cgroupPaths
	var unified string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, ctl := range strings.Split(parts[1], ",") {
			switch ctl {
			case "pids":
				c.pids = filepath.Join("/sys/fs/cgroup/pids", parts[2])
			case "memory":
				c.memory = filepath.Join("/sys/fs/cgroup/memory", parts[2])
			case "cpuacct":
				c.cpu = filepath.Join("/sys/fs/cgroup", parts[1], parts[2])
			case "":
				unified = parts[2]
			}
		}
	}
	if c.pids == "" && c.memory == "" && unified != "" {
		dir := filepath.Join("/sys/fs/cgroup", unified)
		c = cgroupPaths{pids: dir, memory: dir, cpu: dir, v2: true}
	}
	if c.pids == "" || c.memory == "" {
		return c, fmt.Errorf("cgroups of pid %d: no pids or memory controller", pid)
	}
	return c, nil
}

// withoutCloneParent refuses clone's CLONE_PARENT in the spec's seccomp
// profile, as the namespace sandbox's filter does: the sweep between runs
// spares the zygote's children, which only the zygote may make.
func withoutCloneParent(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
	if s.Linux != nil && s.Linux.Seccomp != nil {
		jobxseccomp.RefuseCloneParent(s.Linux.Seccomp)
	}
	return nil
}
