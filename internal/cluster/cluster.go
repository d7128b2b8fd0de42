// Package cluster assembles a whole jobx in one process: an embedded etcd
// (or an external one), an in-process nsqd (or external ones), an etcd
// client and store, a gateway and runners. `jobx up`, the bench and the
// whole-system tests start theirs here.
//
//	o := cluster.NewOptions()
//	o.Dir = dir
//	o.Runners = []*runner.Options{ro} // ro.Sandbox set, ro.Dir its own
//	c, err := cluster.Start(ctx, o)
//	if err != nil {
//		return err
//	}
//	defer c.Close()
//	http.Post(c.URL()+"/job/wf/job?blocking=true", "application/json", body)
package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"

	"github.com/jobx/jobx/gateway"
	"github.com/jobx/jobx/internal/embedded"
	"github.com/jobx/jobx/kvmodel"
	"github.com/jobx/jobx/runner"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Cluster is a running in-process jobx. Its methods are safe for
// concurrent use. Whoever starts one must call Close.
type Cluster struct {
	etcd      *embedded.Etcd // nil: external
	nsqd      *embedded.NSQD // nil: external
	endpoints []string
	nsqds     []string
	cli       *clientv3.Client
	ownCli    bool // cli is the cluster's to close
	store     *kvmodel.Store
	gwOpts    gateway.Options
	log       *slog.Logger
	errc      chan error // the first component that stopped on its own

	mu      sync.Mutex // guards the fields below
	gw      *gateway.Gateway
	gwRun   *running
	runners []*clusterRunner
	n       int // runners added so far, for their names
	closed  bool

	closeOnce sync.Once
	closeErr  error
}

// clusterRunner is a runner and its Run.
type clusterRunner struct {
	r   *runner.Runner
	run *running
}

// Start starts a cluster: etcd, nsqd, the etcd client, Options.Load, the
// gateway, then the runners, each component's Run in a goroutine the
// cluster owns. ctx bounds the start only; the cluster runs until Close.
// When a step fails, what started before it is closed and the error is a
// *StartError naming the step.
func Start(ctx context.Context, o *Options) (c *Cluster, err error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	c = &Cluster{log: o.Log, errc: make(chan error, 1), gwOpts: *o.Gateway}
	if c.log == nil {
		c.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	defer func() {
		if err != nil {
			c.Close()
			c = nil
		}
	}()

	c.endpoints = o.EtcdEndpoints
	if len(c.endpoints) == 0 {
		eo := o.Etcd
		if eo.Dir == "" {
			eo.Dir = o.Dir
		}
		if c.etcd, err = embedded.StartEtcd(ctx, eo); err != nil {
			return nil, &StartError{Component: Etcd, Err: err}
		}
		c.endpoints = []string{c.etcd.Endpoint}
	}
	c.nsqds = o.NSQDs
	if len(c.nsqds) == 0 {
		no := o.NSQD
		if no.Dir == "" {
			no.Dir = o.Dir
		}
		if no.Log == nil {
			no.Log = c.log
		}
		if c.nsqd, err = embedded.StartNSQD(ctx, no); err != nil {
			return nil, &StartError{Component: NSQD, Err: err}
		}
		c.nsqds = []string{c.nsqd.TCPAddr}
	}
	if c.cli = o.Client; c.cli == nil {
		dial := o.Dial
		if dial == nil {
			dial = dialEtcd
		}
		if c.cli, err = dial(c.endpoints); err != nil {
			return nil, &StartError{Component: Client, Err: err}
		}
		c.ownCli = true
	}
	c.store = kvmodel.NewStore(c.cli)
	if o.Load != nil {
		if err := o.Load(ctx, c.store); err != nil {
			return nil, &StartError{Component: Load, Err: err}
		}
	}

	if err := c.StartGateway(ctx, c.gwOpts.Addr); err != nil {
		return nil, &StartError{Component: Gateway, Err: err}
	}
	for _, ro := range o.Runners {
		if _, err := c.AddRunner(ctx, ro); err != nil {
			return nil, &StartError{Component: Runner, Err: err}
		}
	}
	return c, nil
}

// StartGateway starts a gateway with Options.Gateway on addr (host:port;
// "": Options.Gateway.Addr). Start starts the first; after StopGateway it
// starts another, on the address the first had, say, to restart it.
func (c *Cluster) StartGateway(ctx context.Context, addr string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed:
		return errors.New("cluster: closed")
	case c.gw != nil:
		return errors.New("cluster: a gateway runs already")
	}
	o := c.gwOpts
	if addr != "" {
		o.Addr = addr
	}
	if o.Etcd == nil {
		o.Etcd = c.cli
	}
	if len(o.NSQDs) == 0 {
		o.NSQDs = c.nsqds
	}
	if o.Log == nil {
		o.Log = c.log
	}
	gw, err := gateway.New(ctx, &o)
	if err != nil {
		return err
	}
	c.gw, c.gwRun = gw, c.run("gateway", gw.Run)
	return nil
}

// StopGateway stops the gateway's Run (in-flight requests get up to 10 s)
// and closes it; it returns their errors. Without a gateway it does
// nothing.
func (c *Cluster) StopGateway() error {
	c.mu.Lock()
	gw, run := c.gw, c.gwRun
	c.gw, c.gwRun = nil, nil
	c.mu.Unlock()
	if gw == nil {
		return nil
	}
	return errors.Join(run.stop(), gw.Close())
}

// AddRunner starts a runner with a copy of o, whose etcd client, nsqd
// addresses and logger default to the cluster's, and whose nsqd HTTP
// addresses default to the in-process nsqd's. o.Sandbox and o.Dir are the
// caller's to set, and the sandbox the caller's to close, after the runner
// (StopRunner or Close). It does not wait for the runner's Ready.
func (c *Cluster) AddRunner(ctx context.Context, o *runner.Options) (*runner.Runner, error) {
	ro := *o
	if ro.Etcd == nil {
		ro.Etcd = c.cli
	}
	if len(ro.NSQDs) == 0 {
		ro.NSQDs = c.nsqds
	}
	if len(ro.NSQDHTTP) == 0 && c.nsqd != nil {
		ro.NSQDHTTP = []string{c.nsqd.HTTPAddr}
	}
	if ro.Log == nil {
		ro.Log = c.log
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errors.New("cluster: closed")
	}
	r, err := runner.New(ctx, &ro)
	if err != nil {
		return nil, err
	}
	c.n++
	c.runners = append(c.runners, &clusterRunner{r: r, run: c.run(fmt.Sprintf("runner %d", c.n), r.Run)})
	return r, nil
}

// StopRunner stops r's Run (it drains within its grace period) and closes
// it; it returns their errors. A runner the cluster does not hold (already
// stopped) is left alone.
func (c *Cluster) StopRunner(r *runner.Runner) error {
	c.mu.Lock()
	i := slices.IndexFunc(c.runners, func(cr *clusterRunner) bool { return cr.r == r })
	if i < 0 {
		c.mu.Unlock()
		return nil
	}
	cr := c.runners[i]
	c.runners = slices.Delete(c.runners, i, i+1)
	c.mu.Unlock()
	return errors.Join(cr.run.stop(), cr.r.Close())
}

// Close stops the cluster, in order:
//  1. the runners: their Runs are cancelled together, so they drain at
//     once; each is closed once its Run returned;
//  2. the gateway: its Run shuts the server down, then it is closed;
//  3. the etcd client, unless it is the caller's (Options.Client);
//  4. the in-process nsqd, which persists queued messages to its
//     directory;
//  5. the embedded etcd.
//
// It returns the errors of the Runs and Close calls, and the same on later
// calls. The runners' sandboxes are the caller's, to close after it.
func (c *Cluster) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		runners := c.runners
		c.runners = nil
		c.mu.Unlock()

		var errs []error
		for _, cr := range runners {
			cr.run.cancel()
		}
		for _, cr := range runners {
			errs = append(errs, cr.run.stop(), cr.r.Close())
		}
		errs = append(errs, c.StopGateway())
		if c.cli != nil && c.ownCli {
			errs = append(errs, c.cli.Close())
		}
		if c.nsqd != nil {
			c.nsqd.Close()
		}
		if c.etcd != nil {
			c.etcd.Close()
		}
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}

// Err reports the first component (gateway or runner) whose Run returned
// while the cluster was not stopping it, with its error; components
// stopped by Close, StopGateway or StopRunner report nothing here.
func (c *Cluster) Err() <-chan error { return c.errc }

// URL returns the gateway's base URL, http://host:port, or "" while no
// gateway runs.
func (c *Cluster) URL() string {
	if gw := c.Gateway(); gw != nil {
		return "http://" + gw.Addr()
	}
	return ""
}

// Gateway returns the running gateway, nil after StopGateway.
func (c *Cluster) Gateway() *gateway.Gateway {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gw
}

// Runners returns the running runners, in the order they were added.
func (c *Cluster) Runners() []*runner.Runner {
	c.mu.Lock()
	defer c.mu.Unlock()
	rs := make([]*runner.Runner, len(c.runners))
	for i, cr := range c.runners {
		rs[i] = cr.r
	}
	return rs
}

// EtcdEndpoints returns etcd's client URLs: the embedded etcd's or
// Options.EtcdEndpoints.
func (c *Cluster) EtcdEndpoints() []string { return c.endpoints }

// EtcdEmbedded says whether etcd runs in this process.
func (c *Cluster) EtcdEmbedded() bool { return c.etcd != nil }

// Client returns the etcd client the gateway uses.
func (c *Cluster) Client() *clientv3.Client { return c.cli }

// Store returns a store over Client.
func (c *Cluster) Store() *kvmodel.Store { return c.store }

// NSQDs returns the nsqd TCP addresses: the in-process nsqd's or
// Options.NSQDs.
func (c *Cluster) NSQDs() []string { return c.nsqds }

// NSQDEmbedded says whether nsqd runs in this process.
func (c *Cluster) NSQDEmbedded() bool { return c.nsqd != nil }

// running is a component's Run in a goroutine of the cluster's.
type running struct {
	name   string
	cancel context.CancelFunc
	done   chan struct{}
	err    error // Run's; set before done is closed
}

// run starts fn in a goroutine until stopped; when fn returns on its own
// its error (or, without one, that it stopped) goes to Err.
func (c *Cluster) run(name string, fn func(context.Context) error) *running {
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{name: name, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = fn(ctx)
		if ctx.Err() != nil {
			return
		}
		err := r.err
		if err == nil {
			err = errors.New("stopped unexpectedly")
		}
		select {
		case c.errc <- fmt.Errorf("%s: %w", name, err):
		default:
		}
	}()
	return r
}

// stop cancels the Run, waits for it to return and returns its error.
func (r *running) stop() error {
	r.cancel()
	<-r.done
	if r.err != nil {
		return fmt.Errorf("%s: %w", r.name, r.err)
	}
	return nil
}
