package runner

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"time"

	"github.com/jobx/jobx/internal/etcdmaint"
	"github.com/jobx/jobx/internal/queue"
	"github.com/jobx/jobx/kvmodel"
	"github.com/jobx/jobx/sandbox"
	"github.com/jobx/jobx/sharedfs"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Options configure a Runner. Start from NewOptions.
type Options struct {
	// ID names this runner in logs and the registry (default host-pid).
	ID string
	// Etcd is the etcd client; required. The runner does not close it.
	Etcd *clientv3.Client
	// NSQDs are nsqd TCP addresses to consume from and publish to.
	NSQDs []string
	// NSQDHTTP are nsqd HTTP addresses whose /stats give the queue depth
	// metric; empty: no depth metric.
	NSQDHTTP []string
	// Lookupds are nsqlookupd HTTP addresses; when set, consumers discover
	// nsqd through them and publishing goes to the live nsqd they list
	// (NSQDs while they list none).
	Lookupds []string
	// NSQTLS, when set, makes the connections to nsqd use TLS.
	NSQTLS *tls.Config
	// Channel is the NSQ channel (JobX's MR_CHANNEL).
	Channel string
	// Capabilities the runner offers (JobX's MR_SYSTEM_CAPABILITIES).
	Capabilities []string
	// Workflows to serve; empty means every workflow, including ones
	// created later (JobX's MR_WORKFLOW_NAMES).
	Workflows []string
	// Concurrency bounds the handler runs at once; the runner keeps twice
	// as many messages in flight, so that loading data and recording
	// results overlap the runs.
	Concurrency int
	// Dir is the runner's working directory (installed handlers, scratch).
	Dir string
	// Sandbox runs handlers; required. The runner does not close it: the
	// command (or test) that built it does, after the runner's Close.
	Sandbox sandbox.Sandbox
	// MaxAttempts bounds deliveries of a message whose processing keeps
	// failing for infrastructure reasons; then its request fails.
	MaxAttempts uint16
	// MsgTimeout is how long nsqd waits for a message before redelivering
	// it; the runner touches in-flight messages every third of it, so a
	// long-running invocation is not redelivered while it runs.
	MsgTimeout time.Duration
	// RequeueDelay is the delay before an infrastructure failure is retried
	// the first time; it doubles with each further attempt.
	RequeueDelay time.Duration
	// Retention is how long a finished request is kept before cleanup
	// (a blocking request is cleaned once its result was delivered).
	Retention time.Duration
	// CleanupInterval is how often the cleanup queue is polled; 0 disables
	// cleanup on this runner.
	CleanupInterval time.Duration
	// StallAfter is how long a pending request's invocations may stay
	// unchanged before the recovery runner publishes its pending work again
	// (messages lost with an nsqd killed by SIGKILL); it should exceed the
	// longest handler timeout plus MsgTimeout, since a duplicate delivery,
	// though harmless, runs a handler twice. 0 disables recovery here.
	StallAfter time.Duration
	// RequestDeadline fails requests still pending this long after they
	// were accepted (kind "deadline"); 0: no deadline.
	RequestDeadline time.Duration
	// CompactRetention is how much of etcd's history (in time) is kept:
	// one runner of the cluster, elected in etcd, compacts it to the
	// revision current this long ago (see internal/etcdmaint). 0 disables
	// compaction here.
	CompactRetention time.Duration
	// EtcdDefrag configures the etcd defragmentation loop (one runner of
	// the cluster, elected in etcd, defragments the members whose database
	// is fragmented past EtcdDefrag.Threshold and, with AutoDisarm, ends a
	// NOSPACE alarm once space is reclaimed; see internal/etcdmaint). A
	// zero Threshold, the default, leaves it off.
	EtcdDefrag etcdmaint.DefragOptions
	// Timeout and MaxOutput are the defaults for handlers that set none.
	Timeout   time.Duration
	MaxOutput int64
	// Scratch is the scratch quota (bytes a run may write under its
	// scratch directory) of handlers whose header and workflow set none;
	// every run gets one.
	Scratch int64
	// Grace is how long shutdown waits for in-flight invocations.
	Grace time.Duration
	// LeaseTTL is the lease of the runner's registry entry: a runner cut
	// off from etcd for longer stops taking work.
	LeaseTTL time.Duration
	// Version is announced in the registry.
	Version string
	// ScopeDir holds the scope factories: per workflow a static file
	// (<wf>.yaml|.json) or an executable (<wf>); see scope.go. Empty: none.
	ScopeDir string
	// ScopeCommand, run with ScopeEnv added to the runner's environment, is
	// the scope factory of the workflows that have none in ScopeDir (for
	// JobX's scope-factory classes, processors/python.ScopeClassCommand):
	// it gets the workflow and the handler's name as arguments and the
	// handler's metadata as JSON on stdin, and prints a JSON object.
	ScopeCommand, ScopeEnv []string
	// ScopeTTL is how long a scope factory's answer is reused.
	ScopeTTL time.Duration
	// Writer is the result writer of jobs that name none (inline when zero).
	Writer kvmodel.WriterConfig
	// SMTPAddr and SMTPFrom are the SMTP server (host:port) and sender of
	// email result writers and email notifications.
	SMTPAddr, SMTPFrom string
	// SMTPUser and SMTPPassword, when set, log in with PLAIN auth (after
	// STARTTLS, which is used whenever the server offers it).
	SMTPUser, SMTPPassword string
	// MetricsAddr, when set, is where the runner serves GET /metrics.
	MetricsAddr string
	// FS is the shared filesystem backend of every workflow without its own
	// config in FSConfigDir; a zero Config means none.
	FS sharedfs.Config
	// FSConfigDir holds per-workflow filesystem configs (<wf>.yaml|.json,
	// see package sharedfs), e.g. a Tahoe-LAFS gateway and write dircap.
	FSConfigDir string
	// ServicesSocket is the unix socket of the endpoint handlers use for
	// sessions and notifications; empty picks a short path under the
	// system temporary directory (socket paths are limited to 107 bytes).
	ServicesSocket string
	Log            *slog.Logger
}

// NewOptions returns the defaults.
func NewOptions() *Options {
	host, _ := os.Hostname()
	return &Options{
		ID:              fmt.Sprintf("%s-%d", host, os.Getpid()),
		Channel:         queue.Channel,
		Capabilities:    []string{kvmodel.CapabilityGeneral},
		Concurrency:     4 * runtime.GOMAXPROCS(0),
		MaxAttempts:     5,
		MsgTimeout:      time.Minute,
		RequeueDelay:    time.Second,
		Retention:       time.Hour,
		CleanupInterval: time.Second,
		Timeout:         10 * time.Minute,
		StallAfter:      15 * time.Minute,
		RequestDeadline: 24 * time.Hour,
		MaxOutput:       1 << 30,
		Scratch:         512 << 20,
		Grace:           30 * time.Second,
		LeaseTTL:        10 * time.Second,
		ScopeTTL:        time.Minute,
		Version:         "dev",

		CompactRetention: etcdmaint.DefaultCompactRetention,
		EtcdDefrag:       etcdmaint.NewDefragOptions(),
	}
}

func (o *Options) validate() error {
	if o.Etcd == nil {
		return errors.New("runner: no etcd client (--etcd / MR_ETCD_HOST)")
	}
	if len(o.NSQDs) == 0 && len(o.Lookupds) == 0 {
		return errors.New("runner: no nsqd address (--nsqd / MR_NSQD_HOSTS, or --lookupd / JOBX_LOOKUPD)")
	}
	if o.Dir == "" {
		return errors.New("runner: no working directory (--dir)")
	}
	if o.Sandbox == nil {
		return errors.New("runner: no sandbox (Options.Sandbox; --sandbox picks one)")
	}
	if len(o.Capabilities) == 0 {
		return errors.New("runner: no capabilities (--capabilities / MR_SYSTEM_CAPABILITIES)")
	}
	for _, c := range o.Capabilities {
		if err := kvmodel.ValidateTopicName("capability", c); err != nil {
			return fmt.Errorf("runner: --capabilities: %w", err)
		}
	}
	for _, w := range o.Workflows {
		if err := kvmodel.ValidateTopicName("workflow name", w); err != nil {
			return fmt.Errorf("runner: --workflows: %w", err)
		}
	}
	if o.Concurrency < 1 {
		return fmt.Errorf("runner: --concurrency must be at least 1, not %d", o.Concurrency)
	}
	if o.MsgTimeout < time.Second {
		return fmt.Errorf("runner: --msg-timeout must be at least 1s, not %s", o.MsgTimeout)
	}
	if o.StallAfter < 0 || o.RequestDeadline < 0 {
		return errors.New("runner: --stall-after and --request-deadline must not be negative")
	}
	if o.CompactRetention < 0 {
		return fmt.Errorf("runner: --etcd-compact-retention must not be negative, not %s", o.CompactRetention)
	}
	if err := o.EtcdDefrag.Validate(); err != nil {
		return fmt.Errorf("runner: %w", err)
	}
	if o.MaxAttempts < 1 {
		return errors.New("runner: --max-attempts must be at least 1")
	}
	if o.Scratch <= 0 {
		return fmt.Errorf("runner: --scratch must be positive, not %d", o.Scratch)
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return nil
}
