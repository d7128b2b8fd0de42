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
type Daemon struct {
	// Address is the daemon's gRPC socket.
	Address string
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
func StartDaemon(ctx context.Context, opts DaemonOptions) (*Daemon, error) {
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
	body := fmt.Sprintf(daemonConfig, filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock, sock+".ttrpc")
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		return nil, fmt.Errorf("start containerd: %w", err)
	}
	d := &Daemon{Address: sock, done: make(chan struct{})}
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

// Close stops the daemon (SIGTERM, then SIGKILL after 5 s) and waits for
// it. Shims of containers still running are left to the caller's cleanup.
// It is idempotent.
func (d *Daemon) Close() error {
	d.once.Do(func() {
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(5 * time.Second):
			d.cmd.Process.Kill()
			<-d.done
		}
	})
	if d.err != nil && !strings.Contains(d.err.Error(), "signal") {
		return fmt.Errorf("containerd: %w", d.err)
	}
	return nil
}
