package containerd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	client "github.com/containerd/containerd/v2/client"
	"github.com/jobx/jobx/internal/tmpfs"
	"github.com/jobx/jobx/sandbox/internal/leftover"
)

// DaemonOptions configure a private containerd started by StartDaemon.
type DaemonOptions struct {
	// Dir holds the daemon's config, root, state and socket. Keep it short:
	// the socket path must fit a unix socket address (107 bytes).
	Dir string
	// Binary is the containerd executable; default "containerd" in PATH.
	Binary string
	// Log receives the daemon's output; nil discards it.
	Log io.Writer
	// Ready bounds the wait for the socket (default 15 s).
	Ready time.Duration
}

// Daemon is a private containerd process: own config, root, state and
// socket, with the CRI plugin disabled. Close stops it.
//
// Its directory may be used again by a later process (a restarted `jobx
// up` or runner): StartDaemon then stops the earlier life's daemon if it is
// still shutting down, and the new daemon finds the earlier life's running
// containers again (their shims outlive a daemon), so that the runners'
// sandboxes remove them; the shims it does not find again are killed.
type Daemon struct {
	// Address is the daemon's gRPC socket.
	Address string
	// Orphans counts the shims of an earlier daemon on the same directory
	// (with their containers) that StartDaemon killed because the new
	// daemon did not find them again.
	Orphans int
	dir     string
	cmd     *exec.Cmd
	done    chan struct{}
	err     error
	once    sync.Once
}

const daemonConfig = `version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = %q

[ttrpc]
  address = %q
`

// StartDaemon writes a config under opts.Dir, starts containerd with it and
// returns once the daemon answers on its socket. The caller must Close it.
// A directory that another live process's daemon uses is an error.
func StartDaemon(ctx context.Context, opts DaemonOptions) (_ *Daemon, err error) {
	if opts.Dir == "" {
		return nil, errors.New("start containerd: Dir is required")
	}
	if opts.Binary == "" {
		opts.Binary = "containerd"
	}
	if opts.Ready == 0 {
		opts.Ready = 15 * time.Second
	}
	bin, err := exec.LookPath(opts.Binary)
	if err != nil {
		return nil, fmt.Errorf("start containerd: %w", err)
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("start containerd: %w", err)
	}
	sock := filepath.Join(dir, "containerd.sock")
	if len(sock) > 100 {
		return nil, fmt.Errorf("start containerd: socket path %q is too long", sock)
	}
	for _, d := range []string{"root", "state"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o711); err != nil {
			return nil, fmt.Errorf("start containerd: %w", err)
		}
	}
	cfg := filepath.Join(dir, "config.toml")
	if claimed, alive := leftover.Owner(dir); claimed && alive {
		return nil, fmt.Errorf("start containerd: %s is in use by another live process's containerd", dir)
	}
	// An earlier life's daemon (its process was killed) dies with it, a
	// moment later: it must be gone before this one opens the same files.
	for _, pid := range daemonsWith(cfg) {
		stop(pid, 5*time.Second)
	}
	if err := leftover.Claim(dir); err != nil {
		return nil, fmt.Errorf("start containerd: %w", err)
	}
	defer func() {
		if err != nil {
			os.Remove(filepath.Join(dir, leftover.OwnerFile))
		}
	}()
	// The directories of dead processes' daemons beside this one (temporary
	// ones, jobx-ctrd-*): their daemons' shims and containers, then them.
	leftover.Sweep(dir, func(old string) {
		for _, pid := range daemonsWith(filepath.Join(old, "config.toml")) {
			stop(pid, 5*time.Second)
		}
		killShims(filepath.Join(old, "containerd.sock"))
	})
	body := fmt.Sprintf(daemonConfig, filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock, sock+".ttrpc")
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		return nil, fmt.Errorf("start containerd: %w", err)
	}
	d := &Daemon{Address: sock, dir: dir, done: make(chan struct{})}
	d.cmd = exec.Command(bin, "--config", cfg)
	if opts.Log != nil {
		d.cmd.Stdout, d.cmd.Stderr = opts.Log, opts.Log
	}
	// The daemon outlives neither us nor a signal to our process group.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start containerd: %w", err)
	}
	go func() { d.err = d.cmd.Wait(); close(d.done) }()

	ctx, cancel := context.WithTimeout(ctx, opts.Ready)
	defer cancel()
	for {
		if err := ping(ctx, sock); err == nil {
			d.Orphans = d.reapOrphans(ctx)
			return d, nil
		}
		select {
		case <-d.done:
			return nil, fmt.Errorf("start containerd: exited: %v", d.err)
		case <-ctx.Done():
			d.Close()
			return nil, fmt.Errorf("start containerd: not ready on %s: %w", sock, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func ping(ctx context.Context, sock string) error {
	if _, err := os.Stat(sock); err != nil {
		return err
	}
	c, err := client.New(sock, client.WithTimeout(time.Second))
	if err != nil {
		return err
	}
	defer c.Close()
	ok, err := c.IsServing(ctx)
	if err == nil && !ok {
		err = errors.New("not serving")
	}
	return err
}

// Reachable reports whether a containerd answers on address within a
// second.
func Reachable(ctx context.Context, address string) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return ping(ctx, address) == nil
}

// Done is closed when the daemon process has exited.
func (d *Daemon) Done() <-chan struct{} { return d.done }

// reapOrphans kills the shims of an earlier life of the daemon that it did
// not find again, and returns how many.
func (d *Daemon) reapOrphans(ctx context.Context) int {
	c, err := client.New(d.Address, client.WithTimeout(time.Second))
	if err != nil {
		return 0
	}
	defer c.Close()
	n, _ := reapOrphans(ctx, c, d.Address, "")
	return n
}

// Close stops the daemon (SIGTERM, then SIGKILL after 5 s) and waits for
// it. The sandboxes on it should have removed their containers first:
// whatever still runs then (a shim, its container) is killed, and the
// mounts left under its directory are detached. It is idempotent.
func (d *Daemon) Close() error {
	d.once.Do(func() {
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(5 * time.Second):
			d.cmd.Process.Kill()
			<-d.done
		}
		killShims(d.Address)
		tmpfs.UnmountUnder(d.dir)
		os.Remove(filepath.Join(d.dir, leftover.OwnerFile))
	})
	if d.err != nil && !strings.Contains(d.err.Error(), "signal") {
		return fmt.Errorf("containerd: %w", d.err)
	}
	return nil
}
