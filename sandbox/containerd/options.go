package containerd

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/jobx/jobx/images"
	"github.com/jobx/jobx/sandbox"
	"github.com/jobx/jobx/sandbox/agent"
	"github.com/jobx/jobx/sandbox/internal/pool"
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
	// Settings size the pool of warm sandboxes.
	pool.Settings
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
		Defaults: sandbox.Limits{Memory: 512 << 20, Pids: 256, Scratch: 512 << 20},
		Settings: pool.DefaultSettings(),
		Ready:    15 * time.Second,
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
	if err := o.Settings.Check(o.Defaults.Memory); err != nil {
		return fmt.Errorf("containerd sandbox: %w", err)
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
