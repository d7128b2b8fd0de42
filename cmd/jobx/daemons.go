package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/jobx/jobx/gateway"
	"github.com/jobx/jobx/internal/writers"
	"github.com/jobx/jobx/processors"
	"github.com/jobx/jobx/processors/python"
	"github.com/jobx/jobx/runner"
	ctrd "github.com/jobx/jobx/sandbox/containerd"
	"github.com/jobx/jobx/sharedfs"
	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"
)

func (a *app) gatewayCmd() *cobra.Command {
	opts := gateway.NewOptions()
	var tokensFile string
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Run the HTTP gateway (POST /job/<workflow>/<job>)",
		Long: `Run the HTTP gateway: it accepts job submissions (POST /job/<workflow>/<job>),
queues their root invocation on nsqd and, for blocking requests, answers with the
result. GET /request/<workflow>/<id> shows a request's status and result;
GET /healthz checks etcd. The first SIGINT/SIGTERM stops accepting and lets
blocking requests in flight finish; a second exits at once.`,
		Example: `  jobx gateway --etcd 127.0.0.1:2379 --nsqd 127.0.0.1:4150 --http :8080
  JOBX_ETCD=e1:2379,e2:2379,e3:2379 JOBX_LOOKUPD=lookupd:4161 JOBX_HTTP=:8080 jobx gateway`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := jobxEnvErr(a.envVar, false); err != nil {
				return err
			}
			cli, err := a.etcdClient()
			if err != nil {
				return err
			}
			defer cli.Close()
			if opts.NSQDs, err = a.nsqdAddrs(); err != nil {
				return err
			}
			if opts.Lookupds, err = a.lookupdAddrs(); err != nil {
				return err
			}
			if opts.NSQTLS, err = a.nsqTLS(); err != nil {
				return err
			}
			opts.Etcd, opts.Log = cli, a.log
			if tokensFile != "" {
				if opts.Tokens, err = readTokens(tokensFile); err != nil {
					return err
				}
			}
			g, err := gateway.New(cmd.Context(), opts)
			if err != nil {
				return err
			}
			runErr := g.Run(cmd.Context())
			return errors.Join(runErr, g.Close())
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Addr, "http", orDefault(a.env.HTTP, opts.Addr), "HTTP listen address (env JOBX_HTTP)")
	f.DurationVar(&opts.BlockingTimeout, "blocking-timeout", opts.BlockingTimeout, "longest wait of a blocking request (then 504 with the request id; the job goes on)")
	f.Int64Var(&opts.MaxBodyBytes, "max-body", opts.MaxBodyBytes, "largest request body, in bytes")
	f.DurationVar(&opts.DeliveredRetention, "delivered-retention", opts.DeliveredRetention, "how long a blocking request is kept after its result was delivered")
	f.StringVar(&tokensFile, "tokens", "", `YAML/JSON file of bearer tokens by workflow ({wf: [token, ...], "*": [token]}); when set, every workflow route needs one`)
	f.StringVar(&opts.TLSCert, "tls-cert", "", "serve HTTPS with this certificate (PEM; with --tls-key)")
	f.StringVar(&opts.TLSKey, "tls-key", "", "the private key of --tls-cert (PEM)")
	return cmd
}

// runnerFlags are the runner flags shared by `jobx runner` and `jobx up`.
type runnerFlags struct {
	opts       *runner.Options
	sandbox    string
	containerd string
	agent      string // the jobx-agent binary ("": agent.Find)
	// containerdDir, when set, is where a runner starts its own containerd
	// when none answers at containerd.
	containerdDir string
	imagesDir     string
	// buildImages builds missing or outdated sandbox images from this
	// host's files on start; false uses the image store as it is.
	buildImages bool
	fsDir       string
	pool        *ctrd.Options // pool settings of the containerd sandbox
	scratch     string        // --scratch: a size, or "" for the runner's default
	// compactRetention is --etcd-compact-retention: a duration, or "" for
	// the runner's default.
	compactRetention string
	// defragMinSize is --etcd-defrag-min-size: a size, or "" for the
	// default.
	defragMinSize string
	// jobxErr is a JobX variable's value jobx cannot take (jobxenv.go).
	jobxErr error
	// scopeClass is --scope-class: a JobX scope-factory class, or "".
	scopeClass string
}

// useScopeClass sets the runner's scope command to --scope-class's, its
// adapter written under dir.
func (rf *runnerFlags) useScopeClass(o *runner.Options, dir string) error {
	if rf.scopeClass == "" {
		return nil
	}
	argv, env, err := python.ScopeClassCommand(dir, rf.scopeClass)
	if err != nil {
		return fmt.Errorf("--scope-class (env MR_WORKFLOW_SCOPE_FACTORY_FQ_CLASS): %w", err)
	}
	o.ScopeCommand, o.ScopeEnv = argv, env
	return nil
}

func (a *app) addRunnerFlags(cmd *cobra.Command, withIdentity bool) *runnerFlags {
	rf := &runnerFlags{opts: runner.NewOptions(), sandbox: sandboxAuto, containerd: orDefault(a.env.Containerd, defaultContainerd), pool: ctrd.NewOptions(), buildImages: true}
	rf.opts.Version = buildVersion()
	o := rf.opts
	if len(a.env.Capabilities) > 0 {
		o.Capabilities = a.env.Capabilities
	}
	o.Workflows = a.env.Workflows
	if a.env.Channel != "" {
		o.Channel = a.env.Channel
	}
	// JobX's variables, as the defaults of the flags below.
	jr := jobxRunnerEnv(a.envVar)
	rf.jobxErr = jr.err
	o.FS = jr.fs
	o.Writer.Subject = jr.writer.Subject
	if jr.concurrency > 0 {
		o.Concurrency = jr.concurrency
	}
	f := cmd.Flags()
	f.StringSliceVar(&o.Capabilities, "capabilities", o.Capabilities, "capabilities offered, comma-separated (env MR_SYSTEM_CAPABILITIES)")
	f.StringSliceVar(&o.Workflows, "workflows", o.Workflows, "workflows served, comma-separated; empty serves all (env MR_WORKFLOW_NAMES)")
	f.IntVar(&o.Concurrency, "concurrency", o.Concurrency, "handler runs at once (JobX's MR_NSQ_MAX_IN_FLIGHT); twice as many messages are in flight, the others loading data or recording results")
	f.DurationVar(&o.Retention, "retention", o.Retention, "how long a finished request is kept before cleanup")
	f.StringVar(&rf.scratch, "scratch", "", "scratch quota of a handler run, the bytes it may write under its scratch directory: a size such as 64Mi, or bytes; a handler's scratch header key and its workflow's defaults win (default 512Mi)")
	f.StringVar(&rf.sandbox, "sandbox", rf.sandbox, "sandbox for handlers: auto (containerd when one answers, else namespace), containerd, namespace (Linux namespaces through bubblewrap; no daemon, no image), or none (no isolation; only when asked for by name)")
	f.StringVar(&rf.containerd, "containerd", rf.containerd, "containerd socket for the containerd sandbox (env JOBX_CONTAINERD)")
	f.StringVar(&rf.agent, "agent", a.env.Agent, "the static jobx-agent binary the containerd and namespace sandboxes run (env JOBX_AGENT; default: beside jobx, then in PATH)")
	f.IntVar(&rf.pool.MaxSandboxes, "max-sandboxes", rf.pool.MaxSandboxes, "containerd and namespace: most sandboxes alive at once (warm or busy)")
	f.Int64Var(&rf.pool.MemoryBudget, "sandbox-memory-budget", rf.pool.MemoryBudget, "containerd and namespace: bound on the sum of live sandboxes' memory limits, in bytes")
	f.IntVar(&rf.pool.MaxIdle, "pool-max-idle", rf.pool.MaxIdle, "containerd and namespace: warm sandboxes kept idle per workflow and processor")
	f.DurationVar(&rf.pool.IdleTimeout, "pool-idle-timeout", rf.pool.IdleTimeout, "containerd and namespace: stop a sandbox idle this long")
	f.DurationVar(&rf.pool.Linger, "pool-linger", rf.pool.Linger, "containerd and namespace: keep the idle sandboxes beyond --pool-max-idle this long after a burst")
	f.IntVar(&rf.pool.MaxReuse, "pool-max-reuse", rf.pool.MaxReuse, "containerd: stop a sandbox after this many invocations (0: no limit)")
	f.BoolVar(&rf.pool.PerHandler, "sandbox-per-handler", rf.pool.PerHandler, "containerd: keep warm sandboxes per handler, not per workflow and processor")
	f.StringVar(&rf.imagesDir, "images-dir", "", "sandbox image store (default: <dir>/images; jobx up: <data-dir>/images)")
	f.DurationVar(&o.StallAfter, "stall-after", o.StallAfter, "publish again the pending work of a request unchanged this long (queue messages lost with a crashed nsqd); keep it above the longest handler timeout plus --msg-timeout; 0 disables")
	f.DurationVar(&o.RequestDeadline, "request-deadline", o.RequestDeadline, "fail requests still pending this long after they were accepted (kind deadline); 0: none")
	f.StringVar(&rf.compactRetention, "etcd-compact-retention", orDefault(a.env.CompactRetention, o.CompactRetention.String()), "keep this much of etcd's history: one runner of the cluster (elected) compacts it to the revision current this long ago; 0 disables (env JOBX_ETCD_COMPACT_RETENTION)")
	f.BoolVar(&rf.buildImages, "images-build", rf.buildImages, "build missing or outdated sandbox images from this host's interpreters on start; false uses --images-dir as it is (images built elsewhere with jobx images build, e.g. in a container image)")
	f.Float64Var(&o.EtcdDefrag.Threshold, "etcd-defrag-threshold", o.EtcdDefrag.Threshold, "defragment an etcd member once this share of its database file is free pages ((size - in use) / size, e.g. 0.5) and the file is at least --etcd-defrag-min-size, or half this share once the file is at 70% of etcd's quota (the nearer NOSPACE, the less free space is kept); one runner of the cluster (elected) does it, a member at a time, the leader last, a pass a minute; while etcd is out of space (NOSPACE) it also compacts to the current revision and defragments after each deletion; 0: off (jobx etcd defrag is the operator's step)")
	f.StringVar(&rf.defragMinSize, "etcd-defrag-min-size", "", "with --etcd-defrag-threshold: leave etcd members whose database is smaller alone, a size such as 64Mi or 0 (default 64Mi)")
	f.BoolVar(&o.EtcdDefrag.AutoDisarm, "etcd-auto-disarm", o.EtcdDefrag.AutoDisarm, "with --etcd-defrag-threshold: once etcd raised NOSPACE (out of space) and the loop's compaction and defragmentation have brought every member's database below 80% of its quota, disarm the alarm (logged) so that writes resume; without it, jobx etcd disarm is the operator's step")
	f.Uint16Var(&o.MaxAttempts, "max-attempts", o.MaxAttempts, "deliveries of a message that keeps failing for infrastructure reasons, before its request fails")
	f.DurationVar(&o.Grace, "grace", o.Grace, "on shutdown, how long in-flight invocations may finish")
	f.DurationVar(&o.MsgTimeout, "msg-timeout", o.MsgTimeout, "how long nsqd waits for a message before redelivering it (in-flight messages are kept alive at a third of it); also how soon a dead runner's work is redelivered")
	f.StringVar(&o.ScopeDir, "scope-dir", o.ScopeDir, "directory of scope factories: <workflow>.yaml|.json (static variables) or an executable <workflow> (see docs/handlers.md)")
	f.StringVar(&rf.scopeClass, "scope-class", a.envVar("MR_WORKFLOW_SCOPE_FACTORY_FQ_CLASS"), "a JobX scope-factory class (a subclass of mr.handlers.scope.WorkflowScopeFactory, found on PYTHONPATH), run with python3 for the workflows that have no factory in --scope-dir (env MR_WORKFLOW_SCOPE_FACTORY_FQ_CLASS)")
	f.DurationVar(&o.ScopeTTL, "scope-ttl", o.ScopeTTL, "how long a scope factory's answer for a handler version is reused")
	f.StringVar(&o.Writer.Kind, "result-writer", orDefault(jr.writer.Kind, "inline"), "default result writer of jobs that name none: inline, file, email or http (env MR_RESULT_WRITER_FQ_CLASS, JobX's class names)")
	f.StringVar(&o.Writer.Path, "result-dir", jr.writer.Path, "file writer: root directory (default /tmp/mr_results; env MR_RESULT_FILE_WRITER_OUTPUT_PATH)")
	f.BoolVar(&o.Writer.AsDirectory, "result-as-directory", jr.writer.AsDirectory, "file writer: one file per pair in a directory per request (env MR_RESULT_FILE_WRITER_WRITE_AS_DIRECTORY=1)")
	f.StringSliceVar(&o.Writer.To, "result-email-to", jr.writer.To, "email writer: recipients, comma-separated (env MR_RESULT_EMAIL_WRITER_TO_LIST)")
	f.StringVar(&o.Writer.URL, "result-url", jr.writer.URL, "http writer: the URL results are POSTed to (env MR_RESULT_HTTP_WRITER_SERVER_URL)")
	f.StringVar(&o.SMTPAddr, "smtp-addr", jr.smtpAddr, "SMTP server (host:port) for email result writers and email notifications (env MR_EMAIL_SMTP_HOSTNAME, port 25 unless given)")
	f.StringVar(&o.SMTPFrom, "smtp-from", jr.smtpFrom, "sender address of jobx's mail (env MR_EMAIL_SMTP_FROM_EMAIL)")
	f.StringVar(&o.SMTPUser, "smtp-user", "", "SMTP login (PLAIN auth, after STARTTLS when offered); the password is JOBX_SMTP_PASSWORD")
	o.SMTPPassword = a.env.SMTPPassword
	f.StringVar(&rf.fsDir, "fs-dir", "", "host directory of the local shared filesystem backend (workflow roots are <dir>/working/<workflow>); jobx up defaults to <data-dir>/fs")
	f.StringVar(&o.FSConfigDir, "fs-config-dir", "", "directory of per-workflow filesystem configs, <workflow>.yaml|.json (e.g. a Tahoe-LAFS gateway and write dircap; see docs/sharedfs.md)")
	if withIdentity {
		f.StringVar(&o.Dir, "dir", "", "working directory for installed handlers and scratch (default: a temporary directory, removed on exit)")
		f.StringVar(&o.Channel, "channel", o.Channel, "NSQ channel (env MR_CHANNEL)")
		f.StringVar(&o.ID, "id", o.ID, "runner id in logs and the registry")
		f.StringVar(&o.MetricsAddr, "metrics-addr", a.env.MetricsAddr, "serve Prometheus metrics (GET /metrics) and GET /healthz on this address (env JOBX_METRICS_ADDR)")
		f.StringSliceVar(&o.NSQDHTTP, "nsqd-http", a.env.NSQDHTTP, "nsqd HTTP addresses whose /stats feed the jobx_queue_depth metric (env JOBX_NSQD_HTTP)")
		f.StringVar(&rf.containerdDir, "containerd-dir", "", "when no containerd answers at --containerd, start a private one (as root; containerd and runc in PATH) keeping its config, root, state and socket in this directory, e.g. a volume at /var/lib/containerd inside a container")
	}
	return rf
}

func (rf *runnerFlags) validate() error {
	if rf.jobxErr != nil {
		return rf.jobxErr
	}
	if rf.opts.Writer.Kind == "inline" {
		rf.opts.Writer.Kind = ""
	}
	if err := writers.Validate(rf.opts.Writer); err != nil {
		return fmt.Errorf("--result-writer: %w", err)
	}
	if rf.scratch != "" {
		n, err := processors.ParseSize(rf.scratch)
		if err != nil {
			return fmt.Errorf("--scratch: %w", err)
		}
		rf.opts.Scratch = n
	}
	if rf.compactRetention != "" {
		d, err := time.ParseDuration(rf.compactRetention)
		if err != nil || d < 0 {
			return fmt.Errorf("--etcd-compact-retention (env JOBX_ETCD_COMPACT_RETENTION) %q: want a duration such as 5m, or 0 to disable", rf.compactRetention)
		}
		rf.opts.CompactRetention = d
	}
	if rf.defragMinSize == "0" {
		rf.opts.EtcdDefrag.MinSize = 0
	} else if rf.defragMinSize != "" {
		n, err := processors.ParseSize(rf.defragMinSize)
		if err != nil {
			return fmt.Errorf("--etcd-defrag-min-size: %w", err)
		}
		rf.opts.EtcdDefrag.MinSize = n
	}
	if rf.fsDir != "" {
		dir, err := filepath.Abs(rf.fsDir)
		if err != nil {
			return fmt.Errorf("--fs-dir: %w", err)
		}
		rf.opts.FS = sharedfs.Config{Backend: sharedfs.BackendLocal, Dir: dir}
	}
	switch rf.sandbox {
	case sandboxAuto, sandboxContainerd, sandboxNamespace, sandboxNone:
	default:
		return fmt.Errorf("--sandbox %q: want auto, containerd, namespace or none", rf.sandbox)
	}
	return nil
}

func (a *app) runnerCmd() *cobra.Command {
	var rf *runnerFlags
	cmd := &cobra.Command{
		Use:   "runner",
		Short: "Run a runner: consume invocations from nsqd and run handlers",
		Long: `Run a runner daemon. It consumes the map and reduce topics
(mr.<workflow>.map.<capability>, mr.<workflow>.reduce.<capability>) of the
served workflows and offered capabilities, runs each invocation's handler in a
sandbox and records the outcome in etcd. The first SIGINT/SIGTERM drains (stops
taking messages, lets in-flight invocations finish within --grace); a second
exits at once.`,
		Example: `  jobx runner --capabilities general,gpu --workflows dev
  MR_SYSTEM_CAPABILITIES=general MR_WORKFLOW_NAMES=dev jobx runner`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := jobxEnvErr(a.envVar, true); err != nil {
				return err
			}
			if err := rf.validate(); err != nil {
				return err
			}
			o := rf.opts
			if o.Dir == "" {
				dir, err := os.MkdirTemp("", "jobx-runner-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(dir)
				o.Dir = dir
			}
			if err := rf.useScopeClass(o, filepath.Join(o.Dir, "scope-class")); err != nil {
				return err
			}
			cli, err := a.etcdClient()
			if err != nil {
				return err
			}
			defer cli.Close()
			if o.NSQDs, err = a.nsqdAddrs(); err != nil {
				return err
			}
			if o.Lookupds, err = a.lookupdAddrs(); err != nil {
				return err
			}
			if o.NSQTLS, err = a.nsqTLS(); err != nil {
				return err
			}
			o.Etcd, o.Log = cli, a.log
			imagesDir := rf.imagesDir
			if imagesDir == "" {
				imagesDir = filepath.Join(o.Dir, "images")
			}
			var private *privateContainerd
			if rf.containerdDir != "" {
				private = &privateContainerd{dir: rf.containerdDir}
				defer private.close()
			}
			sb, err := a.buildSandbox(cmd.Context(), rf, o, imagesDir, private)
			if err != nil {
				return err
			}
			defer sb.close()
			o.Sandbox = sb.box
			r, err := runner.New(cmd.Context(), o)
			if err != nil {
				return err
			}
			runErr := r.Run(cmd.Context())
			return errors.Join(runErr, r.Close())
		},
	}
	rf = a.addRunnerFlags(cmd, true)
	return cmd
}

// readTokens reads a --tokens file: workflow name (or "*") -> tokens.
func readTokens(path string) (map[string][]string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--tokens: %w", err)
	}
	var tokens map[string][]string
	if err := yaml.Unmarshal(raw, &tokens); err != nil {
		return nil, fmt.Errorf("--tokens %s: want a mapping of workflow to a list of tokens: %w", path, err)
	}
	for wf, list := range tokens {
		for _, t := range list {
			if len(t) < 16 {
				return nil, fmt.Errorf("--tokens %s: a token of workflow %q is shorter than 16 characters", path, wf)
			}
		}
	}
	return tokens, nil
}
