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
	ctrd "github.com/jobx/jobx/sandbox/containerd"
	"github.com/jobx/jobx/sandbox/none"
	"github.com/jobx/jobx/sharedfs"
)

// Sandbox choices of --sandbox.
const (
	sandboxAuto       = "auto"
	sandboxContainerd = "containerd"
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
}

// buildSandbox makes the sandbox --sandbox asks for, for a runner with
// options o. auto means containerd when a containerd answers (with
// startPrivate, one this process starts when run as root with containerd
// installed) and the jobx-agent binary is found, else the process sandbox
// with a warning. imagesDir holds the sandbox images (built on first use;
// builds are cached).
func (a *app) buildSandbox(ctx context.Context, rf *runnerFlags, o *runner.Options, imagesDir string, startPrivate bool) (*builtSandbox, error) {
	sb := &builtSandbox{}
	if rf.sandbox == sandboxNone {
		return a.noneSandbox(o)
	}
	fallback := func(why string) (*builtSandbox, error) {
		if rf.sandbox == sandboxContainerd {
			sb.close()
			return nil, fmt.Errorf("--sandbox containerd: %s", why)
		}
		a.log.Warn("handlers run in the none sandbox (no isolation): " + why)
		sb.close()
		return a.noneSandbox(o)
	}
	agent, err := ctrd.FindAgent()
	if err != nil {
		return fallback(err.Error())
	}
	addr := rf.containerd
	if !ctrd.Reachable(ctx, addr) {
		startPrivate = startPrivate || rf.containerdDir != ""
		if _, lerr := exec.LookPath("containerd"); !startPrivate || os.Geteuid() != 0 || lerr != nil {
			hint := "run as root with containerd installed to start a private one"
			if !startPrivate {
				hint = "give --containerd-dir, as root with containerd installed, to start a private one"
			}
			return fallback(fmt.Sprintf("no containerd answers at %s (--containerd); %s", addr, hint))
		}
		dir := rf.containerdDir
		if dir == "" {
			if dir, err = os.MkdirTemp("", "jobx-ctrd-"); err != nil {
				return nil, err
			}
			sb.cleanup = append(sb.cleanup, func() { os.RemoveAll(dir) })
		} else if err := os.MkdirAll(dir, 0o711); err != nil {
			return nil, fmt.Errorf("--containerd-dir: %w", err)
		}
		var daemonLog io.Writer
		if a.logLevel == "debug" {
			daemonLog = a.stderr
		}
		d, err := ctrd.StartDaemon(ctx, ctrd.DaemonOptions{Dir: dir, Log: daemonLog})
		if err != nil {
			return fallback("start a private containerd: " + err.Error())
		}
		sb.cleanup = append(sb.cleanup, func() { d.Close() })
		addr = d.Address
		a.log.Info("started a private containerd", "socket", addr)
	}
	st, err := images.Open(imagesDir)
	if err != nil {
		return fallback(err.Error())
	}
	if rf.buildImages {
		a.log.Info("building sandbox images (cached)", "dir", imagesDir)
		if _, err := st.Build(ctx, images.Buildable()...); err != nil {
			return fallback("build sandbox images (--images-build=false uses --images-dir as it is): " + err.Error())
		}
	} else {
		recs, err := st.List()
		if err != nil {
			return fallback(err.Error())
		}
		if len(recs) == 0 {
			return fallback(fmt.Sprintf("--images-build=false but the image store %s holds no image (jobx images build --images-dir %s)", imagesDir, imagesDir))
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
	co.Dir, co.HandlersDir, co.AgentPath, co.Images, co.Log = boxDir, filepath.Join(o.Dir, "handlers"), agent, st, a.log
	co.Defaults.Timeout = o.Timeout
	fsCfg := o.FS
	co.SharedDir = func(wf string) string {
		dir, _ := sharedfs.HostDir(fsCfg, wf)
		return dir
	}
	box, err := ctrd.New(ctx, &co)
	if err != nil {
		return fallback(err.Error())
	}
	sb.box = box
	sb.cleanup = append(sb.cleanup, func() { box.Close() })
	return sb, nil
}

// noneSandbox is the none sandbox under the runner's directory.
func (a *app) noneSandbox(o *runner.Options) (*builtSandbox, error) {
	box, err := none.New(none.Options{Dir: filepath.Join(o.Dir, "sandbox"), Zygotes: 2, Log: a.log})
	if err != nil {
		return nil, err
	}
	return &builtSandbox{box: box, cleanup: []func(){func() { box.Close() }}}, nil
}
