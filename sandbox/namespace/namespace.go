// Package namespace is jobx's namespace sandbox: every handler invocation
// runs in a bubblewrap sandbox of its own Linux namespaces (user, mount,
// PID, IPC, UTS, cgroup, and network with only loopback unless the handler
// asks for the host's), as uid 65534 with no capabilities, no_new_privs
// and containerd's default seccomp filter, on a read-only root made of the
// host's system directories, with only a sized tmpfs for scratch and the
// workflow's shared directory writable. Memory, pids and CPU are bounded by
// cgroups when the runner is root, by rlimits otherwise. It needs no daemon
// and no image: the bubblewrap binary and the static jobx-agent.
//
// Domains are kept warm, as the containerd sandbox keeps containers: a
// domain per (workflow, processor, network, limits) runs the jobx agent as
// its PID 1 and, for Python, a zygote beside it, and each invocation is a
// fresh process forked in it, with its stdio passed over a unix socket that
// only the runner can reach (the sockets are made outside the sandbox and
// inherited; no path to them exists inside). An invocation thus costs a
// fork, or a reuse of a kept process, never a namespace set-up. A domain
// runs one invocation at a time; before it runs the next, every process the
// last one left is killed and its scratch directory removed unless the run
// left it untouched, so nothing leaks from one run to the next.
//
//	sb, err := namespace.New(ctx, opts) // checks that bubblewrap can run here
//	out, err := sb.Run(ctx, spec)       // sandbox.Sandbox
//	sb.Close()                          // stops every domain
package namespace

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/jobx/jobx/sandbox"
	"github.com/jobx/jobx/sandbox/internal/boxlib"
	"github.com/jobx/jobx/sandbox/internal/leftover"
	"github.com/jobx/jobx/sandbox/internal/pool"
	"github.com/jobx/jobx/sandbox/internal/warm"
)

// Sandbox runs handlers in namespace domains. It is safe for concurrent
// use; the caller of New must call Close.
type Sandbox struct {
	opts     Options
	log      *slog.Logger
	lib      string
	cgroups  bool   // limits are cgroups (root), else rlimits
	cgParent string // the cgroup of this sandbox's domains' cgroups
	stage    *staging
	pool     *pool.Pool[key, *domain]

	host warm.Host

	closeOnce sync.Once
}

var _ sandbox.Sandbox = (*Sandbox)(nil)

// New checks that bubblewrap can make a sandbox here (as the sandbox user
// when root), installs the agent and the Python runtime under opts.Dir, and
// returns the sandbox. Domains start lazily. The error of a host where the
// sandbox cannot run is an *Unavailable that says why and how to fix it.
func New(ctx context.Context, opts *Options) (_ *Sandbox, err error) {
	o := *opts
	if err := o.validate(); err != nil {
		return nil, err
	}
	if err := Check(ctx, o.Bwrap, o.UID, o.GID); err != nil {
		return nil, err
	}
	s := &Sandbox{opts: o, log: o.Log.With("component", "namespace-sandbox"), lib: filepath.Join(o.Dir, "lib"),
		host: warm.Host{Handlers: o.HandlersDir, Shared: o.SharedDir}}
	if err := os.MkdirAll(o.Dir, 0o711); err != nil {
		return nil, fmt.Errorf("namespace sandbox: %w", err)
	}
	// The sandbox user reaches the library and the staging mounts
	// through Dir.
	os.Chmod(o.Dir, 0o711)
	if os.Geteuid() == 0 && !traversable(o.Dir, o.UID, o.GID) {
		return nil, fmt.Errorf("namespace sandbox: the sandbox user (uid %d) cannot reach %s: pick a directory whose parents others may traverse, such as one under %s", o.UID, o.Dir, os.TempDir())
	}
	// A runner killed with SIGKILL leaves its sandbox's directory, its
	// staging mounts and its domains' cgroups (the domains die with it).
	removed, err := leftover.Sweep(o.Dir, nil)
	if err != nil {
		s.log.Warn("remove what dead runners' sandboxes left", "err", err)
	}
	if len(removed) > 0 {
		s.log.Info("removed the sandboxes of dead runners", "dirs", removed)
	}
	if err := leftover.Claim(o.Dir); err != nil {
		return nil, fmt.Errorf("namespace sandbox: %w", err)
	}
	if s.stage, err = newStaging(o.Dir, o.UID, o.GID); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			s.stage.close()
		}
	}()
	if err := os.RemoveAll(filepath.Join(o.Dir, "d")); err != nil {
		return nil, fmt.Errorf("namespace sandbox: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(s.lib, "etc"), 0o755); err != nil {
		return nil, fmt.Errorf("namespace sandbox: %w", err)
	}
	if err := boxlib.Install(s.lib, o.AgentPath); err != nil {
		return nil, err
	}
	if err := writeEtc(filepath.Join(s.lib, "etc")); err != nil {
		return nil, err
	}
	if cgroupsAvailable() {
		s.cgroups = true
		s.cgParent = groupParent(filepath.Base(o.Dir))
		dead := make([]string, len(removed))
		for i, d := range removed {
			dead[i] = filepath.Base(d)
		}
		removeDeadCgroups(filepath.Dir(o.Dir), filepath.Base(o.Dir), dead)
	} else {
		s.log.Info("limits are rlimits: this runner cannot make cgroups (it is not root, or the memory and pids controllers are not writable); memory is bounded per process, pids per domain, CPU not at all")
	}
	s.pool = pool.New(pool.Options[key, *domain]{Settings: o.Settings, Create: s.create, Destroy: func(d *domain) { d.destroy() },
		Memory: func(k key) int64 { return k.memory }})
	return s, nil
}

// writeEtc writes the domain's /etc/passwd, /etc/group and /etc/hosts: the
// sandbox user, and loopback.
func writeEtc(dir string) error {
	files := map[string]string{
		"passwd": fmt.Sprintf("root:x:0:0:root:/root:/usr/sbin/nologin\njobx:x:%d:%d:jobx handler:%s:/usr/sbin/nologin\n", sandboxUID, sandboxGID, boxScratch),
		"group":  fmt.Sprintf("root:x:0:\njobx:x:%d:\n", sandboxGID),
		"hosts":  "127.0.0.1\tlocalhost jobx\n::1\tlocalhost ip6-localhost ip6-loopback\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return fmt.Errorf("namespace sandbox: %w", err)
		}
	}
	return nil
}

// Kind returns "namespace".
func (s *Sandbox) Kind() string { return "namespace" }

// Limits says how limits are enforced: "cgroups" or "rlimits".
func (s *Sandbox) Limits() string {
	if s.cgroups {
		return "cgroups"
	}
	return "rlimits"
}

// Stats reports the live domains, the sum of their memory limits and how
// many are idle (running no invocation; a domain settling after one counts
// as idle).
func (s *Sandbox) Stats() (live int, memory int64, idle int) { return s.pool.Stats() }

// Close stops every domain and removes the sandbox's cgroups and staging
// mounts. It is idempotent. Invocations still running fail.
func (s *Sandbox) Close() error {
	s.closeOnce.Do(func() {
		s.pool.Close()
		s.stage.close()
		if s.cgroups {
			removeStaleCgroups(s.cgParent)
			removeStaleCgroups("jobx")
		}
		os.RemoveAll(filepath.Join(s.opts.Dir, "d"))
	})
	return nil
}

// domainSpec is what a domain of k mounts, with the host directories the
// sandbox user cannot reach staged where it can.
func (s *Sandbox) domainSpec(k key) (domainSpec, error) {
	sp := domainSpec{workflow: k.workflow, network: k.network, scratch: k.scratch, python: k.processor == "python"}
	handlers := filepath.Join(s.opts.HandlersDir, k.workflow)
	if err := os.MkdirAll(handlers, 0o755); err != nil {
		return sp, err
	}
	var err error
	if sp.lib, err = s.stage.reach(s.lib); err != nil {
		return sp, err
	}
	if sp.handlers, err = s.stage.reach(handlers); err != nil {
		return sp, err
	}
	if shared := s.host.SharedDir(k.workflow); shared != "" {
		if os.Geteuid() == 0 {
			// The sandbox user writes the workflow's files.
			if err := os.Chown(shared, s.opts.UID, s.opts.GID); err != nil {
				return sp, fmt.Errorf("shared directory of %s: %w", k.workflow, err)
			}
		}
		if sp.shared, err = s.stage.reach(shared); err != nil {
			return sp, err
		}
	}
	if services := s.host.ServicesDir(); services != "" {
		if sp.services, err = s.stage.reach(services); err != nil {
			return sp, err
		}
		if sp.services != services {
			// Handlers name the socket by its host path.
			return sp, fmt.Errorf("namespace sandbox: the sandbox user (uid %d) cannot reach the services socket's directory %s: make it and its parents traversable", s.opts.UID, services)
		}
	}
	return sp, nil
}

func (s *Sandbox) keyOf(spec *sandbox.RunSpec) key {
	l := warm.WithDefaults(spec.Limits, s.opts.Defaults)
	return key{workflow: spec.Workflow, processor: warm.Processor(spec), network: warm.Network(spec, s.opts.WorkflowNetwork),
		memory: l.Memory, cpu: l.CPU, pids: l.Pids, scratch: l.Scratch}
}

// Run runs one handler invocation on a warm domain, starting one if none
// is idle. A handler killed by the memory limit reports OOMKilled, one
// killed at its timeout TimedOut; an error means the sandbox failed.
// Without cgroups, memory is bounded per process (node reserves more
// address space than it uses: its heap is bounded instead) and processes
// per domain (each domain has a user namespace of its own, where
// RLIMIT_NPROC counts).
func (s *Sandbox) Run(ctx context.Context, spec *sandbox.RunSpec) (*sandbox.Outcome, error) {
	return warm.RunIn(ctx, s.pool, s.keyOf(spec), spec, s.opts.Defaults.Timeout, &s.host, func(d *domain, r *warm.Run) {
		if d.cg != nil {
			return
		}
		r.Rlimits.NProc = d.key.pids + pidsOverhead
		if d.key.processor == "node" {
			r.Env = append(r.Env, fmt.Sprintf("NODE_OPTIONS=--max-old-space-size=%d", max(d.key.memory*3/4>>20, 16)))
		} else {
			r.Rlimits.AS = d.key.memory
		}
	})
}
