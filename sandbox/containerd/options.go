package containerd

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"time"

	"github.com/jobx/jobx/images"
	"github.com/jobx/jobx/sandbox"
	"github.com/jobx/jobx/sandbox/agent"
)

// Options configure a Sandbox. Start from NewOptions.
type Options struct {
	// Address is the containerd socket; required.
	Address string
	// RunnerID names the runner; containers carry it in the jobx.runner
	// label, and the namespace defaults to "jobx-<RunnerID>".
	RunnerID string
	// Namespace is the runner's own containerd namespace.
	Namespace string
	// Dir holds the sandbox's host-side files (agent, runtime, per-container
	// socket and scratch directories); required, and short enough for unix
	// socket paths (under about 60 bytes).
	Dir string
	// HandlersDir is where the runner installs handlers (<runner dir>/handlers);
	// required. <HandlersDir>/<workflow> is mounted read-only at /jobx/handlers.
	HandlersDir string
	// Images is the image store; nil opens <Dir>/images.
	Images *images.Store
	// ImageFor names the image of a processor (default images.Ref).
	ImageFor func(processor string) string
	// AgentPath is the static jobx-agent binary (default FindAgent()).
	AgentPath string
	// SharedDir returns the host directory of a workflow's shared
	// filesystem, mounted read-write at /working/<workflow> (JOBX_SHARED_DIR);
	// "" or a nil func mounts none. The sandbox user must be able to write it.
	SharedDir func(workflow string) string
	// WorkflowNetwork returns a workflow's network default ("host" or
	// "none"); a handler's own network key wins. nil means "none".
	WorkflowNetwork func(workflow string) string
	// UID and GID are the sandbox user (default 65534, nobody).
	UID, GID int
	// Defaults are the limits of handlers (and workflows) that set none.
	// Memory and Scratch must be positive: every sandbox has a memory
	// limit and a scratch tmpfs of a bounded size.
	Defaults sandbox.Limits
	// MemoryBudget bounds the sum of the memory limits of live sandboxes.
	MemoryBudget int64
	// MaxSandboxes bounds the live sandboxes (warm or busy).
	MaxSandboxes int
	// MaxIdle bounds the idle sandboxes kept per pool key once demand
	// falls: the extra ones are stopped after Linger idle. 0 keeps none,
	// not even during a burst.
	MaxIdle int
	// Linger is how long idle sandboxes beyond MaxIdle are kept for the
	// next invocations of a burst.
	Linger time.Duration
	// IdleTimeout stops a sandbox idle that long.
	IdleTimeout time.Duration
	// MaxReuse stops a sandbox after that many invocations (0: no limit).
	MaxReuse int
	// PerHandler keys warm sandboxes by handler, not only by workflow and
	// processor.
	PerHandler bool
	// Ready bounds the start of a sandbox (container and agent).
	Ready time.Duration
	Log   *slog.Logger
}

// NewOptions returns the defaults: 512 MiB of memory, 512 MiB of scratch
// and 256 processes per sandbox, half the host's memory as the budget,
// four sandboxes per CPU, two idle per key for five minutes (more for two
// seconds after a burst), no reuse limit.
func NewOptions() *Options {
	return &Options{
		UID: 65534, GID: 65534,
		Defaults:     sandbox.Limits{Memory: 512 << 20, Pids: 256, Scratch: 512 << 20},
		MemoryBudget: hostMemory() / 2,
		MaxSandboxes: 4 * runtime.NumCPU(),
		MaxIdle:      2,
		Linger:       2 * time.Second,
		IdleTimeout:  5 * time.Minute,
		Ready:        15 * time.Second,
	}
}

var nsRE = regexp.MustCompile(`[^a-zA-Z0-9._-]+`)

// NamespaceFor returns the containerd namespace of a runner id.
func NamespaceFor(runnerID string) string {
	ns := "jobx-" + strings.Trim(nsRE.ReplaceAllString(runnerID, "-"), "-._")
	if len(ns) > 76 {
		ns = ns[:76]
	}
	return ns
}

func (o *Options) validate() error {
	if o.Address == "" {
		return errors.New("containerd sandbox: no containerd socket (--containerd)")
	}
	if o.Dir == "" {
		return errors.New("containerd sandbox: Dir is required")
	}
	if o.HandlersDir == "" {
		return errors.New("containerd sandbox: HandlersDir is required")
	}
	if o.RunnerID == "" {
		host, _ := os.Hostname()
		o.RunnerID = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if o.Namespace == "" {
		o.Namespace = NamespaceFor(o.RunnerID)
	}
	if o.ImageFor == nil {
		o.ImageFor = images.Ref
	}
	if o.Defaults.Memory <= 0 {
		return errors.New("containerd sandbox: the default memory limit must be positive")
	}
	if o.Defaults.Scratch <= 0 {
		return errors.New("containerd sandbox: the default scratch quota must be positive")
	}
	if o.MemoryBudget < o.Defaults.Memory {
		return fmt.Errorf("containerd sandbox: memory budget %d is below one sandbox's default memory %d", o.MemoryBudget, o.Defaults.Memory)
	}
	if o.MaxSandboxes < 1 {
		o.MaxSandboxes = 1
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 5 * time.Minute
	}
	if o.Linger <= 0 {
		o.Linger = 2 * time.Second
	}
	if o.Ready <= 0 {
		o.Ready = 15 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.AgentPath == "" {
		p, err := agent.Find()
		if err != nil {
			return err
		}
		o.AgentPath = p
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return err
	}
	o.Dir = dir
	if len(filepath.Join(o.Dir, "c", "jx-0123456789ab", "run", "zygote.sock")) > 104 {
		return fmt.Errorf("containerd sandbox: Dir %q is too long for unix socket paths", o.Dir)
	}
	return nil
}

func hostMemory() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err == nil {
		var kb int64
		for _, line := range strings.Split(string(b), "\n") {
			if _, err := fmt.Sscanf(line, "MemTotal: %d kB", &kb); err == nil {
				return kb << 10
			}
		}
	}
	return 4 << 30
}
