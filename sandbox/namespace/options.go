package namespace

import (
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/jobx/jobx/sandbox"
	"github.com/jobx/jobx/sandbox/agent"
	"github.com/jobx/jobx/sandbox/internal/pool"
)

// Options configure a Sandbox. Start from NewOptions.
type Options struct {
	// Dir holds the sandbox's host-side files: the library mounted at
	// /jobx/lib, each domain's sockets and log, and, as root, the staging
	// mounts of host directories the sandbox user cannot reach. Required;
	// short enough for unix socket paths. Its parents must be traversable
	// by the sandbox user (a directory under /tmp is).
	Dir string
	// HandlersDir is where the runner installs handlers (<runner dir>/handlers);
	// required. <HandlersDir>/<workflow> is mounted read-only at
	// /jobx/handlers.
	HandlersDir string
	// SharedDir returns the host directory of a workflow's shared
	// filesystem, mounted read-write at /working/<workflow>
	// (JOBX_SHARED_DIR); "" or a nil func mounts none.
	SharedDir func(workflow string) string
	// WorkflowNetwork returns a workflow's network default ("host" or
	// "none"); a handler's own network key wins. nil means "none".
	WorkflowNetwork func(workflow string) string
	// UID and GID are the host user the sandbox processes run as when the
	// runner is root (default 65534, nobody). An ordinary user's runner
	// runs them as itself. Inside, handlers are always uid and gid 65534.
	UID, GID int
	// Defaults are the limits of handlers (and workflows) that set none.
	// Memory and Scratch must be positive.
	Defaults sandbox.Limits
	// Settings size the pool of warm sandboxes.
	pool.Settings
	// Ready bounds the start of a domain (bubblewrap, its cgroups, the
	// agent).
	Ready time.Duration
	// AgentPath is the static jobx-agent binary (default agent.Find()).
	AgentPath string
	// Bwrap is the bubblewrap binary (default: bwrap in PATH).
	Bwrap string
	Log   *slog.Logger
}

// NewOptions returns the defaults: 512 MiB of memory, 256 processes and
// 512 MiB of scratch per domain, half the host's memory as the budget,
// four domains per CPU, two idle per key for five minutes (more for two
// seconds after a burst).
func NewOptions() *Options {
	return &Options{
		UID: 65534, GID: 65534,
		Defaults: sandbox.Limits{Memory: 512 << 20, Pids: 256, Scratch: 512 << 20},
		Settings: pool.DefaultSettings(),
		Ready:    15 * time.Second,
	}
}

func (o *Options) validate() error {
	if o.Dir == "" {
		return errors.New("namespace sandbox: Dir is required")
	}
	if o.HandlersDir == "" {
		return errors.New("namespace sandbox: HandlersDir is required")
	}
	if o.Defaults.Memory <= 0 || o.Defaults.Scratch <= 0 {
		return errors.New("namespace sandbox: the default memory and scratch limits must be positive")
	}
	if err := o.Settings.Check(o.Defaults.Memory); err != nil {
		return fmt.Errorf("namespace sandbox: %w", err)
	}
	if o.Ready <= 0 {
		o.Ready = 15 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Bwrap == "" {
		p, err := exec.LookPath("bwrap")
		if err != nil {
			return &Unavailable{Reason: "bubblewrap (bwrap) is not installed", Fix: "apt-get install bubblewrap (Debian, Ubuntu), dnf install bubblewrap (Fedora)"}
		}
		o.Bwrap = p
	}
	if o.AgentPath == "" {
		p, err := agent.Find()
		if err != nil {
			return fmt.Errorf("namespace sandbox: %w", err)
		}
		o.AgentPath = p
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return err
	}
	o.Dir = dir
	if len(filepath.Join(o.Dir, "d", "ns-0123456789ab", "zygote.sock")) > 104 {
		return fmt.Errorf("namespace sandbox: Dir %q is too long for unix socket paths", o.Dir)
	}
	return nil
}
