package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/jobx/jobx/kvmodel"
	_ "github.com/jobx/jobx/processors/all"
	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// app holds what every command shares: the streams, the environment and
// the global flags.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	env            envConfig
	getenv         func(string) string

	root      *cobra.Command
	etcd      []string
	nsqd      []string
	lookupd   []string
	gateway   string
	token     string
	etcdTLS   tlsFiles
	nsqdTLS   tlsFiles
	logLevel  string
	logFormat string
	output    string

	log *slog.Logger
}

// envVar reads an environment variable through the getenv run was given
// ("" without one).
func (a *app) envVar(name string) string {
	if a.getenv == nil {
		return ""
	}
	return a.getenv(name)
}

// exitError carries an exit status; its message, if any, was already
// printed.
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// codedError is an error that exits with code (JobX's exit status for
// it) instead of 1.
type codedError struct {
	err  error
	code int
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }

// run executes jobx with args and returns the exit status.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, env: loadEnv(getenv), getenv: getenv}
	root := a.newRootCmd()
	root.SetArgs(jobxPairs(root, args))
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	fmt.Fprintln(stderr, "jobx:", err)
	var ce *codedError
	if errors.As(err, &ce) {
		return ce.code
	}
	return 1
}

func (a *app) newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "jobx",
		Short: "jobx: MapReduce jobs over etcd and NSQ, handlers in any language",
		Long: `jobx runs MapReduce jobs: a gateway takes job submissions over HTTP, runners
execute handler files (Python, Node, shell, any #! executable) in sandboxes,
and etcd holds the workflows, jobs, steps, handlers and requests.

Every JobX mr_* script has a jobx command; see docs/cli.md.`,
		Example: `  jobx up --load examples/dev          # a local cluster with a workflow loaded
  jobx submit dev job4 -a arg1=17413412  # run a job and print its result
  jobx handler sync dev ./handlers       # push handler files to etcd`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if a.token != "" {
				http.DefaultClient = &http.Client{Transport: bearer{token: a.token, next: http.DefaultTransport}}
			}
			return a.setupLog()
		},
	}
	a.root = root
	pf := root.PersistentFlags()
	pf.StringSliceVar(&a.etcd, "etcd", a.env.Etcd, "etcd endpoints, comma-separated (env JOBX_ETCD, or MR_ETCD_HOST, MR_ETCD_PORT, MR_ETCD_IS_SSL)")
	pf.StringSliceVar(&a.nsqd, "nsqd", a.env.NSQD, "nsqd TCP addresses, comma-separated; a bare host gets :4150 (env JOBX_NSQD or MR_NSQD_HOSTS)")
	pf.StringSliceVar(&a.lookupd, "lookupd", a.env.Lookupd, "nsqlookupd HTTP addresses, comma-separated; a bare host gets :4161. Gateways and runners then publish to the nsqd it lists (--nsqd only while it lists none) and runners consume from every nsqd holding their topics (env JOBX_LOOKUPD)")
	pf.StringVar(&a.gateway, "gateway", a.env.Gateway, "gateway URL for submit (env JOBX_GATEWAY)")
	pf.StringVar(&a.etcdTLS.CA, "etcd-cacert", "", "CA bundle (PEM) to verify etcd's certificate")
	pf.StringVar(&a.etcdTLS.Cert, "etcd-cert", "", "client certificate (PEM) for etcd")
	pf.StringVar(&a.etcdTLS.Key, "etcd-key", "", "client key (PEM) for etcd")
	pf.StringVar(&a.nsqdTLS.CA, "nsqd-cacert", "", "CA bundle (PEM) to verify nsqd's certificate; any --nsqd-* TLS flag turns TLS on")
	pf.StringVar(&a.nsqdTLS.Cert, "nsqd-cert", "", "client certificate (PEM) for nsqd")
	pf.StringVar(&a.nsqdTLS.Key, "nsqd-key", "", "client key (PEM) for nsqd")
	pf.StringVar(&a.token, "token", a.env.GatewayToken, "bearer token for a gateway that requires one (env JOBX_GATEWAY_TOKEN)")
	pf.StringVar(&a.logLevel, "log-level", a.env.LogLevel, "log level: debug, info, warn or error (env JOBX_LOG_LEVEL)")
	pf.StringVar(&a.logFormat, "log-format", a.env.LogFormat, "log format: text or json (env JOBX_LOG_FORMAT)")
	pf.StringVarP(&a.output, "output", "o", "text", "output format of reads: text or json")

	root.AddGroup(
		&cobra.Group{ID: "defs", Title: "Definitions (etcd):"},
		&cobra.Group{ID: "run", Title: "Running jobs:"},
		&cobra.Group{ID: "daemons", Title: "Daemons:"},
	)
	for _, c := range []*cobra.Command{a.workflowCmd(), a.jobCmd(), a.stepCmd(), a.handlerCmd(), a.applyCmd(), a.importCmd()} {
		c.GroupID = "defs"
		root.AddCommand(c)
	}
	for _, c := range []*cobra.Command{a.submitCmd(), a.requestCmd(), a.invocationCmd(), a.runnersCmd(), a.traceCmd(), a.notifyCmd(), a.fsCmd()} {
		c.GroupID = "run"
		root.AddCommand(c)
	}
	for _, c := range []*cobra.Command{a.gatewayCmd(), a.runnerCmd(), a.upCmd(), a.imagesCmd(), a.etcdCmd()} {
		c.GroupID = "daemons"
		root.AddCommand(c)
	}
	root.AddCommand(a.versionCmd())
	root.SetGlobalNormalizationFunc(jobxSpellings)
	return root
}

func (a *app) setupLog() error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(a.logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", a.logLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch a.logFormat {
	case "text":
		a.log = slog.New(slog.NewTextHandler(a.stderr, opts))
	case "json":
		a.log = slog.New(slog.NewJSONHandler(a.stderr, opts))
	default:
		return fmt.Errorf("--log-format %q: want text or json", a.logFormat)
	}
	switch a.output {
	case "text", "json":
	default:
		return fmt.Errorf("--output %q: want text or json", a.output)
	}
	return nil
}

// cliLog is the logger of the definition commands: warnings only, so that
// their output stays their own.
func (a *app) cliLog() *slog.Logger {
	if a.logLevel == "debug" || a.logLevel == "DEBUG" {
		return a.log
	}
	return slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// etcdEndpoints returns the normalised --etcd endpoints.
func (a *app) etcdEndpoints() ([]string, error) {
	if !a.root.PersistentFlags().Changed("etcd") && a.env.EtcdErr != nil {
		return nil, a.env.EtcdErr
	}
	return etcdEndpoints(a.etcd)
}

// etcdClient connects to --etcd; the caller closes the client.
func (a *app) etcdClient() (*clientv3.Client, error) {
	eps, err := a.etcdEndpoints()
	if err != nil {
		return nil, err
	}
	return newEtcdClient(eps, a.etcdTLS)
}

// nsqdAddrs returns the normalised --nsqd addresses.
func (a *app) nsqdAddrs() ([]string, error) { return nsqdAddrs(a.nsqd) }

// lookupdAddrs returns the normalised --lookupd addresses (none: no
// discovery).
func (a *app) lookupdAddrs() ([]string, error) { return lookupdAddrs(a.lookupd) }

// withStore runs fn with a Store on --etcd, closing the client afterwards.
// etcd errors name the endpoints.
func (a *app) withStore(cmd *cobra.Command, fn func(ctx context.Context, st *kvmodel.Store) error) error {
	cli, err := a.etcdClient()
	if err != nil {
		return err
	}
	defer cli.Close()
	err = fn(cmd.Context(), kvmodel.NewStore(cli))
	if err != nil && (errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "connection refused")) {
		err = fmt.Errorf("%w (is etcd running at %s?)", err, strings.Join(cli.Endpoints(), ","))
	}
	return err
}

// storeCmd builds the RunE of a command that needs the store.
func (a *app) storeCmd(fn func(cmd *cobra.Command, ctx context.Context, st *kvmodel.Store, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		return a.withStore(cmd, func(ctx context.Context, st *kvmodel.Store) error {
			return fn(cmd, ctx, st, args)
		})
	}
}

// requireWorkflow fails unless workflow wf exists.
func requireWorkflow(ctx context.Context, st *kvmodel.Store, wf string) (*kvmodel.Workflow, error) {
	if err := kvmodel.ValidateTopicName("workflow name", wf); err != nil {
		return nil, err
	}
	w := &kvmodel.Workflow{Name: wf}
	if err := st.Get(ctx, w); err != nil {
		if errors.Is(err, kvmodel.ErrNotFound) {
			return nil, fmt.Errorf("workflow %q does not exist (jobx workflow create %s <description>)", wf, wf)
		}
		return nil, err
	}
	return w, nil
}

// notFound rewrites a kvmodel not-found error as "<what> does not exist".
func notFound(err error, format string, args ...any) error {
	if errors.Is(err, kvmodel.ErrNotFound) {
		return fmt.Errorf(format+" does not exist", args...)
	}
	return err
}

// bearer adds "Authorization: Bearer <token>" to gateway requests.
type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

// nsqTLS returns the TLS config for nsqd connections, nil without TLS flags.
func (a *app) nsqTLS() (*tls.Config, error) {
	if !a.nsqdTLS.set() {
		return nil, nil
	}
	return a.nsqdTLS.config("nsqd")
}
