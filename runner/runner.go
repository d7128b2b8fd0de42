// Package runner is jobx's worker daemon: it consumes map and reduce
// messages from NSQ for the workflows and capabilities it serves, runs each
// invocation's handler in a Sandbox, and records the outcome in etcd.
//
//	r, err := runner.New(ctx, opts) // validates, loads the catalog
//	err = r.Run(ctx)                // blocks; cancel ctx to drain and stop
//	r.Close()
package runner

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jobx/jobx/internal/notifications"
	"github.com/jobx/jobx/internal/queue"
	"github.com/jobx/jobx/kvmodel"
	"github.com/jobx/jobx/runner/scope"
	"github.com/jobx/jobx/runner/services"
	"github.com/jobx/jobx/sandbox"
	"github.com/nsqio/go-nsq"
)

// Runner consumes invocations and runs them. Create it with New, run it
// with Run, release it with Close.
type Runner struct {
	opts     Options
	log      *slog.Logger
	store    *kvmodel.Store
	catalog  *kvmodel.Catalog
	pub      *queue.Publisher
	sandbox  sandbox.Sandbox
	progs    programs
	sem      chan struct{}
	counters *counters
	scopes   *scope.Factories
	sender   *notifications.Sender
	metrics  *metrics
	fss      *services.Filesystems
	svc      *services.Endpoint
	svcDir   string // removed on Close when the runner made it

	registry *kvmodel.Registry
	inFlight atomic.Int64
	held     holdings      // announced in the registry entry
	ready    chan struct{} // closed once subscribed and announced
	readyOne sync.Once

	// runCtx bounds handler runs; it is cancelled when the drain grace ends.
	runCtx    context.Context
	runCancel context.CancelFunc

	mu        sync.Mutex               // guards consumers and stopping
	consumers map[string]*nsq.Consumer // by topic (consumer.go)
	stopping  bool

	closeOnce sync.Once
	closeErr  error // Close's result
	// notifying tracks handler NOTIFY deliveries; Close waits for them.
	notifying sync.WaitGroup
	// parentSteps caches the step names of branching invocations.
	parentSteps stepNames
}

// New validates opts, loads the catalog and prepares the sandbox. When it
// fails, it releases whatever it had started.
func New(ctx context.Context, opts *Options) (_ *Runner, err error) {
	o := *opts
	if err := o.validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("runner: --dir: %w", err)
	}
	r := &Runner{
		opts:      o,
		log:       o.Log.With("component", "runner", "runner", o.ID),
		store:     kvmodel.NewStore(o.Etcd),
		sem:       make(chan struct{}, o.Concurrency),
		consumers: map[string]*nsq.Consumer{},
		ready:     make(chan struct{}),
	}
	r.progs.dir = filepath.Join(o.Dir, "handlers")
	r.counters = &counters{store: r.store, parents: map[string]*counterState{}}
	r.scopes = scope.New(scope.Options{Dir: o.ScopeDir, Command: o.ScopeCommand, Env: o.ScopeEnv, TTL: o.ScopeTTL})
	r.sender = &notifications.Sender{SMTP: r.smtp(), Log: r.log}
	r.fss = services.NewFilesystems(o.FS, o.FSConfigDir)
	r.runCtx, r.runCancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			r.Close()
		}
	}()
	if r.pub, err = queue.NewPublisherWith(queue.PublisherOptions{NSQDs: o.NSQDs, Lookupds: o.Lookupds, TLS: o.NSQTLS, Log: r.log}); err != nil {
		return nil, err
	}
	if r.catalog, err = kvmodel.NewCatalog(ctx, r.store, r.log); err != nil {
		return nil, err
	}
	if r.registry, err = kvmodel.NewRegistry(ctx, r.store, r.log); err != nil {
		return nil, err
	}
	sock := o.ServicesSocket
	if sock == "" {
		if r.svcDir, err = os.MkdirTemp("", "jobx-svc-"); err != nil {
			return nil, err
		}
		os.Chmod(r.svcDir, 0o755)
		sock = filepath.Join(r.svcDir, "services.sock")
	}
	if r.svc, err = services.Start(services.Options{Store: r.store, Filesystems: r.fss, Socket: sock, Log: r.log, Notify: r.postNotify}); err != nil {
		return nil, err
	}
	r.sandbox = o.Sandbox
	r.metrics = newMetrics(r)
	return r, nil
}

// Ready is closed once the runner consumes its topics and is announced in
// the registry (so gateways see its capabilities).
func (r *Runner) Ready() <-chan struct{} { return r.ready }

// Catalog returns the runner's view of workflow definitions.
func (r *Runner) Catalog() *kvmodel.Catalog { return r.catalog }

// Run subscribes to the topics of the served workflows and works until ctx
// is cancelled; then it drains: it stops taking messages, lets in-flight
// invocations finish within Options.Grace, and kills what is left (their
// messages are redelivered). It returns the first fatal error.
func (r *Runner) Run(ctx context.Context) error {
	updates := &handlerUpdates{r: r, counts: map[string]int{}, timers: map[string]*time.Timer{}}
	r.catalog.OnChange(updates.changed)
	r.catalog.OnChange(func(ch kvmodel.Change) {
		if ch.Class == "workflow" && !ch.Deleted && r.serves(ch.Workflow) {
			if err := r.subscribe(ch.Workflow); err != nil {
				r.log.Error("subscribe", "workflow", ch.Workflow, "err", err)
			}
		}
	})
	for _, wf := range r.catalog.Workflows() {
		if r.serves(wf) {
			if err := r.subscribe(wf); err != nil {
				return err
			}
		}
	}
	for _, wf := range r.opts.Workflows {
		if !slices.Contains(r.catalog.Workflows(), wf) {
			r.log.Warn("served workflow does not exist yet; its topics are consumed once it is created", "workflow", wf)
		}
	}
	r.log.Info("runner started", "capabilities", r.opts.Capabilities, "workflows", r.opts.Workflows, "sandbox", r.sandbox.Kind(), "concurrency", r.opts.Concurrency)
	// The metrics listener first: a runner that cannot serve them returns
	// before it starts anything that would outlive the return.
	if r.opts.MetricsAddr != "" {
		ln, err := net.Listen("tcp", r.opts.MetricsAddr)
		if err != nil {
			return fmt.Errorf("runner: --metrics-addr: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", r.Metrics())
		mux.HandleFunc("GET /healthz", r.healthz)
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()
		r.log.Info("serving metrics", "addr", ln.Addr().String())
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); r.announce(ctx) }()
	if len(r.opts.NSQDHTTP) > 0 {
		wg.Add(1)
		go func() { defer wg.Done(); r.pollDepth(ctx, 2*time.Second) }()
	}
	if r.opts.CleanupInterval > 0 {
		wg.Add(1)
		c := &cleaner{store: r.store, log: r.log, page: cleanupPage, workers: cleanupWorkers}
		go func() { defer wg.Done(); c.loop(ctx, r.opts.CleanupInterval) }()
	}
	if r.opts.StallAfter > 0 || r.opts.RequestDeadline > 0 {
		wg.Add(1)
		go func() { defer wg.Done(); r.recoverLoop(ctx) }()
	}
	if r.opts.CompactRetention > 0 {
		wg.Add(1)
		go func() { defer wg.Done(); r.compactLoop(ctx) }()
	}
	if r.opts.EtcdDefrag.Threshold > 0 {
		wg.Add(1)
		go func() { defer wg.Done(); r.defragLoop(ctx) }()
	}
	<-ctx.Done()
	r.drain()
	wg.Wait()
	return nil
}

// healthz answers 200 once the runner has announced itself and while etcd
// answers, 503 otherwise: a probe for container health checks.
func (r *Runner) healthz(w http.ResponseWriter, req *http.Request) {
	select {
	case <-r.ready:
	default:
		http.Error(w, "runner not announced yet", http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(req.Context(), 2*time.Second)
	defer cancel()
	if _, err := r.opts.Etcd.Get(ctx, "health"); err != nil {
		http.Error(w, "etcd: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}

func (r *Runner) serves(wf string) bool {
	return len(r.opts.Workflows) == 0 || slices.Contains(r.opts.Workflows, wf)
}

// Close releases what New started. Call it once Run has returned (cancel
// Run's context first). It shuts down in this order:
//
//  1. stops the NSQ consumers, if Run's drain has not, and cancels the
//     handler runs still going;
//  2. waits for the handlers' NOTIFY deliveries;
//  3. stops the catalog's and the runner registry's etcd watches;
//  4. stops the NSQ publisher;
//  5. shuts down the handler services' server (2 s for calls in flight)
//     and removes its socket;
//  6. closes the workflows' shared filesystems, then removes the services
//     directory if New made it.
//
// It returns the error of closing the shared filesystems, if any, and is
// idempotent: later calls return the first call's result. The sandbox and
// the etcd client in Options are the caller's to close.
func (r *Runner) Close() error {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.stopping = true
		for _, c := range r.consumers {
			c.Stop()
		}
		r.mu.Unlock()
		r.runCancel()
		r.notifying.Wait()
		if r.catalog != nil {
			r.catalog.Close()
		}
		if r.registry != nil {
			r.registry.Close()
		}
		if r.pub != nil {
			r.pub.Close()
		}
		if r.svc != nil {
			r.svc.Close()
		}
		if err := r.fss.Close(); err != nil {
			r.closeErr = fmt.Errorf("runner: close shared filesystems: %w", err)
		}
		if r.svcDir != "" {
			os.RemoveAll(r.svcDir)
		}
	})
	return r.closeErr
}

// announce keeps the runner's registry entry alive and its load current.
// When the lease is lost (etcd unreachable past LeaseTTL) the runner stops
// taking messages until it has announced itself again.
func (r *Runner) announce(ctx context.Context) {
	host, _ := os.Hostname()
	info := kvmodel.RunnerInfo{
		ID: r.opts.ID, Host: host, Capabilities: r.opts.Capabilities, Workflows: r.opts.Workflows,
		Sandbox: r.sandbox.Kind(), Version: r.opts.Version, Concurrency: r.opts.Concurrency, Started: time.Now().UTC(),
	}
	for ctx.Err() == nil {
		a, err := r.store.Announce(ctx, info, r.opts.LeaseTTL)
		if err != nil {
			r.log.Warn("cannot announce the runner; retrying", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		r.setPaused(false)
		r.readyOne.Do(func() { close(r.ready) })
		tick := time.NewTicker(2 * time.Second)
		lost := false
		for !lost && ctx.Err() == nil {
			select {
			case <-ctx.Done():
			case <-a.Lost():
				lost = true
			case <-tick.C:
				uctx, cancel := context.WithTimeout(ctx, r.opts.LeaseTTL/2)
				a.Hold(r.held.snapshot())
				err := a.Update(uctx, int(r.inFlight.Load()))
				cancel()
				if err != nil {
					r.log.Debug("update registry entry", "err", err)
				}
			}
		}
		tick.Stop()
		a.Close()
		if lost {
			r.log.Error("lost the registry lease (etcd unreachable); not taking work until it is back")
			r.setPaused(true)
		}
	}
}
