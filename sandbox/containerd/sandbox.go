// Package containerd is jobx's containerd sandbox: every handler invocation
// runs in a container of its processor's image, with a read-only root
// filesystem, a per-invocation scratch directory, no network unless the
// handler or workflow opts in, cgroup limits (memory, CPU, pids), a
// wall-clock timeout and an output limit, the workflow's shared directory
// and nothing else of the host, as a non-root user without new privileges.
//
// Containers are kept warm: a container per (workflow, processor, limits)
// runs the jobx agent as init (and, for Python, a zygote beside it, with
// one pre-forked child), and each invocation is a fresh process forked in
// it with its own stdio passed over a unix socket, so an invocation costs
// no container creation and, for Python, no interpreter start. Only the
// runner can reach the agent's and zygote's sockets. The run path is the
// namespace sandbox's (sandbox/internal/warm): a warm container runs one
// invocation at a time; after each, every process the invocation left is
// killed but the agent, the zygote and the zygote's own children (its
// pre-forked child and the processes it keeps), and its scratch directory
// is removed unless the run left it untouched, so nothing leaks to the
// next. With RunSpec.Reuse the zygote may keep the invocation's own
// process for the next run of the same key and handler, which then gets
// it directly; a kept process waits undumpable, out of other runs' reach.
// The result of a run is returned once its output is read; the clean-up
// completes before the container runs anything else.
//
//	sb, err := containerd.New(ctx, opts) // removes stale containers of crashed runners
//	out, err := sb.Run(ctx, spec)        // sandbox.Sandbox
//	sb.Close()                           // kills every sandbox
package containerd

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	client "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/typeurl/v2"
	"github.com/jobx/jobx/images"
	"github.com/jobx/jobx/internal/tmpfs"
	"github.com/jobx/jobx/sandbox"
	"github.com/jobx/jobx/sandbox/internal/boxlib"
	"github.com/jobx/jobx/sandbox/internal/leftover"
	"github.com/jobx/jobx/sandbox/internal/pool"
	"github.com/jobx/jobx/sandbox/internal/warm"
)

// Sandbox runs handlers in containerd containers. It is safe for concurrent
// use; the caller of New must call Close.
type Sandbox struct {
	opts   Options
	log    *slog.Logger
	cli    *client.Client
	images *images.Store
	libDir string

	imgMu sync.Mutex // guards imgs
	imgs  map[string]*imageEntry

	host   warm.Host
	pool   *pool.Pool[key, *box]
	boxMu  sync.Mutex // guards byID
	byID   map[string]*box
	cancel context.CancelFunc
	wg     sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

var _ sandbox.Sandbox = (*Sandbox)(nil)

type imageEntry struct {
	once sync.Mutex
	img  client.Image
}

// New connects to containerd, prepares the runner's namespace (removing the
// containers a previous run of this runner, or a crashed runner of this
// host, left behind), and installs the agent and the Python runtime under
// opts.Dir. Sandboxes start lazily.
func New(ctx context.Context, opts *Options) (*Sandbox, error) {
	o := *opts
	if err := o.validate(); err != nil {
		return nil, err
	}
	s := &Sandbox{opts: o, log: o.Log.With("component", "containerd-sandbox", "namespace", o.Namespace),
		imgs: map[string]*imageEntry{}, byID: map[string]*box{}, host: warm.Host{Handlers: o.HandlersDir, Shared: o.SharedDir}}
	s.libDir = filepath.Join(o.Dir, "lib")
	if err := os.MkdirAll(o.Dir, 0o711); err != nil {
		return nil, fmt.Errorf("containerd sandbox: %w", err)
	}
	// A runner killed with SIGKILL leaves its boxes' scratch mounts: in
	// this directory (a restart in the same one), or in one beside it.
	if removed, err := leftover.Sweep(o.Dir, nil); err != nil {
		s.log.Warn("remove what dead runners' sandboxes left", "err", err)
	} else if len(removed) > 0 {
		s.log.Info("removed the sandbox directories of dead runners", "dirs", removed)
	}
	if err := leftover.Claim(o.Dir); err != nil {
		return nil, fmt.Errorf("containerd sandbox: %w", err)
	}
	if err := tmpfs.UnmountUnder(filepath.Join(o.Dir, "c")); err != nil {
		return nil, fmt.Errorf("containerd sandbox: scratch mounts left by an earlier run: %w", err)
	}
	if err := os.RemoveAll(filepath.Join(o.Dir, "c")); err != nil {
		return nil, fmt.Errorf("containerd sandbox: %w", err)
	}
	if err := os.MkdirAll(s.libDir, 0o755); err != nil {
		return nil, fmt.Errorf("containerd sandbox: %w", err)
	}
	if err := boxlib.Install(s.libDir, o.AgentPath); err != nil {
		return nil, err
	}
	s.images = o.Images
	if s.images == nil {
		st, err := images.Open(filepath.Join(o.Dir, "images"))
		if err != nil {
			return nil, err
		}
		s.images = st
	}
	cli, err := client.New(o.Address, client.WithDefaultNamespace(o.Namespace), client.WithTimeout(10*time.Second))
	if err != nil {
		return nil, fmt.Errorf("containerd sandbox: connect %s: %w", o.Address, err)
	}
	s.cli = cli
	cctx, cancel := context.WithTimeout(s.nsCtx(ctx), time.Minute)
	defer cancel()
	if err := s.claimNamespace(cctx); err != nil {
		cli.Close()
		return nil, err
	}
	if err := s.removeStale(cctx); err != nil {
		cli.Close()
		return nil, err
	}
	s.pool = pool.New(pool.Options[key, *box]{Settings: o.Settings, Create: s.create, Destroy: s.destroy,
		Memory: func(k key) int64 { return k.memory }})
	bg, stop := context.WithCancel(s.nsCtx(context.Background()))
	s.cancel = stop
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.watchOOM(bg) }()
	return s, nil
}

func (s *Sandbox) nsCtx(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, s.opts.Namespace)
}

// Kind returns "containerd".
func (s *Sandbox) Kind() string { return "containerd" }

// Namespace returns the sandbox's containerd namespace.
func (s *Sandbox) Namespace() string { return s.opts.Namespace }

// Client returns the sandbox's containerd client (for tests and tools).
func (s *Sandbox) Client() *client.Client { return s.cli }

// Close kills every sandbox, deletes the containers and disconnects. It is
// idempotent. Invocations still running fail.
func (s *Sandbox) Close() error {
	s.closeOnce.Do(func() {
		if s.pool != nil {
			s.pool.Close()
		}
		s.boxMu.Lock()
		busy := make([]*box, 0, len(s.byID))
		for _, b := range s.byID {
			busy = append(busy, b)
		}
		s.boxMu.Unlock()
		for _, b := range busy {
			s.destroy(b)
		}
		// A runner of the same id killed while it created containers may
		// have left some that containerd finished only after this one
		// removed the stale ones at its start: the namespace is this
		// runner's, so whatever is still in it goes too.
		ctx, cancel := context.WithTimeout(s.nsCtx(context.Background()), 30*time.Second)
		if n, err := RemoveContainers(ctx, s.cli); err != nil {
			s.log.Warn("remove the containers left in the namespace", "namespace", s.opts.Namespace, "err", err)
		} else if n > 0 {
			s.log.Info("removed containers left in the namespace", "namespace", s.opts.Namespace, "containers", n)
		}
		if n, err := reapOrphans(ctx, s.cli, s.opts.Address, s.opts.Namespace); err != nil {
			s.log.Warn("look for orphaned shims", "namespace", s.opts.Namespace, "err", err)
		} else if n > 0 {
			s.log.Info("killed orphaned shims (tasks whose creation was abandoned)", "namespace", s.opts.Namespace, "shims", n)
		}
		cancel()
		if s.cancel != nil {
			s.cancel()
		}
		s.wg.Wait()
		s.closeErr = s.cli.Close()
	})
	return s.closeErr
}

// image returns ref, loaded and unpacked in the namespace, once.
func (s *Sandbox) image(ctx context.Context, ref string) (client.Image, error) {
	s.imgMu.Lock()
	e := s.imgs[ref]
	if e == nil {
		e = &imageEntry{}
		s.imgs[ref] = e
	}
	s.imgMu.Unlock()
	e.once.Lock()
	defer e.once.Unlock()
	if e.img != nil {
		return e.img, nil
	}
	img, err := s.images.Load(ctx, s.cli, ref)
	if err != nil {
		return nil, err
	}
	e.img = img
	return img, nil
}

// Stats reports the live sandboxes, the sum of their memory limits and
// how many are idle (running no invocation; a sandbox cleaning up after
// one counts as idle).
func (s *Sandbox) Stats() (live int, memory int64, idle int) { return s.pool.Stats() }

// Prepare loads the images of the named processors into the namespace, so
// that the first invocation does not pay for it.
func (s *Sandbox) Prepare(ctx context.Context, processors ...string) error {
	for _, p := range processors {
		if _, err := s.image(s.nsCtx(ctx), s.opts.ImageFor(p)); err != nil {
			return err
		}
	}
	return nil
}

func (s *Sandbox) register(b *box) {
	s.boxMu.Lock()
	s.byID[b.id] = b
	s.boxMu.Unlock()
}

func (s *Sandbox) unregister(b *box) {
	s.boxMu.Lock()
	delete(s.byID, b.id)
	s.boxMu.Unlock()
}

// watchOOM counts /tasks/oom events per container.
func (s *Sandbox) watchOOM(ctx context.Context) {
	for ctx.Err() == nil {
		ch, errs := s.cli.Subscribe(ctx, `topic=="/tasks/oom"`, fmt.Sprintf(`namespace==%q`, s.opts.Namespace))
	loop:
		for {
			select {
			case env := <-ch:
				v, err := typeurl.UnmarshalAny(env.Event)
				if err != nil {
					continue
				}
				if ev, ok := v.(*apievents.TaskOOM); ok {
					s.boxMu.Lock()
					b := s.byID[ev.ContainerID]
					s.boxMu.Unlock()
					if b != nil {
						b.oom.Add(1)
					}
				}
			case err := <-errs:
				if ctx.Err() == nil {
					s.log.Warn("containerd events", "err", err)
				}
				break loop
			case <-ctx.Done():
				return
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (s *Sandbox) keyOf(spec *sandbox.RunSpec) key {
	proc := warm.Processor(spec)
	l := warm.WithDefaults(spec.Limits, s.opts.Defaults)
	k := key{workflow: spec.Workflow, processor: proc, image: s.opts.ImageFor(proc), network: warm.Network(spec, s.opts.WorkflowNetwork),
		memory: l.Memory, cpu: l.CPU, pids: l.Pids, scratch: l.Scratch}
	if s.opts.PerHandler {
		k.handler = spec.Handler
	}
	return k
}

// Run runs one handler invocation on a warm sandbox, starting one if none
// is idle. A handler killed by the memory limit reports OOMKilled, one
// killed at its timeout TimedOut; an error means the sandbox failed.
func (s *Sandbox) Run(ctx context.Context, spec *sandbox.RunSpec) (*sandbox.Outcome, error) {
	return warm.RunIn(ctx, s.pool, s.keyOf(spec), spec, s.opts.Defaults.Timeout, &s.host, nil)
}
