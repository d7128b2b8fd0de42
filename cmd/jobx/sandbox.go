package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/jobx/jobx/images"
	"github.com/jobx/jobx/runner"
	"github.com/jobx/jobx/sandbox"
	"github.com/jobx/jobx/sandbox/agent"
	ctrd "github.com/jobx/jobx/sandbox/containerd"
	"github.com/jobx/jobx/sandbox/namespace"
	"github.com/jobx/jobx/sandbox/none"
	"github.com/jobx/jobx/sharedfs"
)

// Sandbox choices of --sandbox.
const (
	sandboxAuto       = "auto"
	sandboxContainerd = "containerd"
	sandboxNamespace  = "namespace"
	sandboxNone       = "none"
)

// defaultContainerd is the system containerd's socket.
const defaultContainerd = "/run/containerd/containerd.sock"

// builtSandbox is a built sandbox and what must be released with it.
type builtSandbox struct {
	box     sandbox.Sandbox
	cleanup []func()
}

func (s *builtSandbox) close() {
	for i := len(s.cleanup) - 1; i >= 0; i-- {
		s.cleanup[i]()
	}
	s.cleanup = nil
}

// privateContainerd is the containerd a jobx process starts for its
// runners' containerd sandboxes when none answers at --containerd (as root,
// with containerd installed): `jobx up`'s in <data-dir>/containerd, shared
// by its runners, and `jobx runner --containerd-dir`'s. Its directory is
// kept: a process restarted after a SIGKILL starts its daemon there again,
// which finds the containers the dead one left running, and the runners'
// sandboxes (same runner ids) remove them. The daemon starts on first use;
// close stops it, after the sandboxes on it.
type privateContainerd struct {
	dir string
	d   *ctrd.Daemon
}

// privateAddress starts private's daemon unless it runs, and returns its
// socket.
func (a *app) privateAddress(ctx context.Context, p *privateContainerd) (string, error) {
	if p.d != nil {
		return p.d.Address, nil
	}
	if err := os.MkdirAll(p.dir, 0o711); err != nil {
		return "", err
	}
	var daemonLog io.Writer
	if a.logLevel == "debug" {
		daemonLog = a.stderr
	}
	d, err := ctrd.StartDaemon(ctx, ctrd.DaemonOptions{Dir: p.dir, Log: daemonLog})
	if err != nil {
		return "", fmt.Errorf("start a private containerd: %w", err)
	}
	p.d = d
	a.log.Info("started a private containerd", "socket", d.Address)
	if d.Orphans > 0 {
		a.log.Info("killed the containers an earlier containerd in the same directory left running", "dir", p.dir, "shims", d.Orphans)
	}
	return d.Address, nil
}

func (p *privateContainerd) close() {
	if p != nil && p.d != nil {
		p.d.Close()
		p.d = nil
	}
}

// buildSandbox makes the sandbox --sandbox asks for, for a runner with
// options o:
//   - containerd: a containerd that answers at --containerd (or private's,
//     started when run as root with containerd installed), or an error that
//     says why not;
//   - namespace: bubblewrap's namespaces, or an error that says why not and
//     how to fix it;
//   - auto: containerd when one answers (or starts), else namespace; when
//     neither can, an error that gives both reasons;
//   - none: no isolation, only when asked for by name, said loudly.
//
// imagesDir holds containerd's sandbox images (built on first use; builds
// are cached).
func (a *app) buildSandbox(ctx context.Context, rf *runnerFlags, o *runner.Options, imagesDir string, private *privateContainerd) (*builtSandbox, error) {
	switch rf.sandbox {
	case sandboxNone:
		a.log.Warn("--sandbox none: handlers run UNISOLATED, as this process's user, with its network, files and processes in reach; use it only for handlers you trust", "user", os.Geteuid())
		return a.noneSandbox(o)
	case sandboxNamespace:
		sb, err := a.namespaceSandbox(ctx, rf, o)
		if err != nil {
			return nil, fmt.Errorf("--sandbox namespace: %w", err)
		}
		return sb, nil
	case sandboxContainerd:
		sb, err := a.containerdSandbox(ctx, rf, o, imagesDir, private)
		if err != nil {
			return nil, fmt.Errorf("--sandbox containerd: %w", err)
		}
		return sb, nil
	}
	unstarted := private != nil && private.d == nil
	sb, cerr := a.containerdSandbox(ctx, rf, o, imagesDir, private)
	if cerr == nil {
		return sb, nil
	}
	if unstarted {
		private.close() // started for nothing
	}
	sb, nerr := a.namespaceSandbox(ctx, rf, o)
	if nerr == nil {
		a.log.Info("--sandbox auto: no containerd sandbox, so the namespace sandbox", "containerd", cerr.Error())
		return sb, nil
	}
	return nil, fmt.Errorf("--sandbox auto: no sandbox can isolate handlers here:\n  containerd: %v\n  namespace: %v\n(--sandbox none runs handlers unisolated, when asked for by name)", cerr, nerr)
}

// noneSandbox is the none sandbox under the runner's directory.
func (a *app) noneSandbox(o *runner.Options) (*builtSandbox, error) {
	box, err := none.New(none.Options{Dir: filepath.Join(o.Dir, "sandbox"), Zygotes: 2, Log: a.log})
	if err != nil {
		return nil, err
	}
	return &builtSandbox{box: box, cleanup: []func(){func() { box.Close() }}}, nil
}

// namespaceSandbox is the namespace sandbox, with the pool settings of the
// --max-sandboxes and --pool-* flags.
func (a *app) namespaceSandbox(ctx context.Context, rf *runnerFlags, o *runner.Options) (_ *builtSandbox, err error) {
	sb := &builtSandbox{}
	defer func() {
		if err != nil {
			sb.close()
		}
	}()
	// Socket paths are short, and the sandbox user must reach the
	// directory: one under the system's temporary directory.
	dir, err := os.MkdirTemp("", "jxn-")
	if err != nil {
		return nil, err
	}
	sb.cleanup = append(sb.cleanup, func() { os.RemoveAll(dir) })
	agentPath, err := rf.agentPath()
	if err != nil {
		return nil, err
	}
	no := namespace.NewOptions()
	no.Dir, no.HandlersDir, no.AgentPath, no.Log = dir, filepath.Join(o.Dir, "handlers"), agentPath, a.log
	no.Defaults.Timeout, no.Defaults.CPU = o.Timeout, rf.pool.Defaults.CPU
	if rf.pool.Defaults.Memory > 0 {
		no.Defaults.Memory = rf.pool.Defaults.Memory
	}
	if o.Scratch > 0 {
		no.Defaults.Scratch = o.Scratch
	}
	no.Settings = rf.pool.Settings
	no.SharedDir = sharedDirOf(o.FS)
	box, err := namespace.New(ctx, no)
	if err != nil {
		return nil, err
	}
	a.log.Info("handlers run in the namespace sandbox", "limits", box.Limits())
	sb.box = box
	sb.cleanup = append(sb.cleanup, func() { box.Close() })
	return sb, nil
}

// sharedDirOf returns the host directory of a workflow's local shared
// filesystem under fs ("" when it has none).
func sharedDirOf(fs sharedfs.Config) func(string) string {
	return func(wf string) string {
		dir, _ := sharedfs.HostDir(fs, wf)
		return dir
	}
}

// containerdSandbox is the containerd sandbox on the containerd at
// --containerd, or on private (nil: none) when none answers there.
func (a *app) containerdSandbox(ctx context.Context, rf *runnerFlags, o *runner.Options, imagesDir string, private *privateContainerd) (_ *builtSandbox, err error) {
	sb := &builtSandbox{}
	defer func() {
		if err != nil {
			sb.close()
		}
	}()
	agentPath, err := rf.agentPath()
	if err != nil {
		return nil, err
	}
	addr := rf.containerd
	if !ctrd.Reachable(ctx, addr) {
		_, lerr := exec.LookPath("containerd")
		switch {
		case private == nil:
			return nil, fmt.Errorf("no containerd answers at %s (--containerd); give --containerd-dir, as root with containerd installed, to start a private one", addr)
		case os.Geteuid() != 0:
			return nil, fmt.Errorf("no containerd answers at %s (--containerd), and starting a private one needs root", addr)
		case lerr != nil:
			return nil, fmt.Errorf("no containerd answers at %s (--containerd), and containerd is not installed (apt-get install containerd runc)", addr)
		}
		if addr, err = a.privateAddress(ctx, private); err != nil {
			return nil, err
		}
	}
	st, err := images.Open(imagesDir)
	if err != nil {
		return nil, err
	}
	if rf.buildImages {
		a.log.Info("building sandbox images (cached)", "dir", imagesDir)
		if _, err := st.Build(ctx, images.Buildable()...); err != nil {
			return nil, fmt.Errorf("build sandbox images (--images-build=false uses --images-dir as it is): %w", err)
		}
	} else {
		recs, err := st.List()
		if err != nil {
			return nil, err
		}
		if len(recs) == 0 {
			return nil, fmt.Errorf("--images-build=false but the image store %s holds no image (jobx images build --images-dir %s)", imagesDir, imagesDir)
		}
		a.log.Info("using prebuilt sandbox images", "dir", imagesDir, "images", len(recs))
	}
	boxDir, err := os.MkdirTemp("", "jxc-")
	if err != nil {
		return nil, err
	}
	sb.cleanup = append(sb.cleanup, func() { os.RemoveAll(boxDir) })
	co := *rf.pool
	co.Address, co.RunnerID, co.Namespace = addr, o.ID, ctrd.NamespaceFor(o.ID)
	co.Dir, co.HandlersDir, co.AgentPath, co.Images, co.Log = boxDir, filepath.Join(o.Dir, "handlers"), agentPath, st, a.log
	co.Defaults.Timeout = o.Timeout
	co.SharedDir = sharedDirOf(o.FS)
	box, err := ctrd.New(ctx, &co)
	if err != nil {
		return nil, err
	}
	sb.box = box
	sb.cleanup = append(sb.cleanup, func() { box.Close() })
	return sb, nil
}

// agentPath is --agent, or the jobx-agent binary found beside jobx or in
// PATH.
func (rf *runnerFlags) agentPath() (string, error) {
	if rf.agent == "" {
		return agent.Find()
	}
	if st, err := os.Stat(rf.agent); err != nil || !st.Mode().IsRegular() {
		return "", fmt.Errorf("--agent %s: not a jobx-agent binary", rf.agent)
	}
	return rf.agent, nil
}
