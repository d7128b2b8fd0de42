package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/jobx/jobx/gateway"
	"github.com/jobx/jobx/internal/embedded"
	"github.com/jobx/jobx/internal/manifest"
	"github.com/jobx/jobx/kvmodel"
	"github.com/jobx/jobx/processors"
	"github.com/jobx/jobx/runner"
	"github.com/jobx/jobx/sharedfs"
	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// upOptions are `jobx up`'s flags.
type upOptions struct {
	dataDir    string
	http       string
	etcdListen string
	nsqdListen string
	etcdQuota  string // --etcd-quota, a size
	loads      []string
	runners    int
	gw         *gateway.Options
	rf         *runnerFlags
}

func (a *app) upCmd() *cobra.Command {
	o := &upOptions{gw: gateway.NewOptions()}
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run a whole local cluster in one process: etcd, nsqd, gateway, runners",
		Long: `Run an all-in-one local cluster: an embedded etcd and an in-process nsqd (both
keeping their data in --data-dir, so definitions and queued messages survive a
restart), a gateway and --runners runners. Started again on the same --data-dir
after a crash, it resumes the requests that were running and removes the sandboxes
its previous life left (its private containerd, if any, is <data-dir>/containerd).
--etcd / --nsqd use external servers
instead of the embedded ones. --load applies workflow directories (see jobx apply)
once the cluster is up, copies a directory's files/ folder into the workflow's
shared files (where its handlers find them at $JOBX_FS_ROOT, in every sandbox),
and prints a ready-to-paste curl and jobx submit line for each of their jobs. The first SIGINT/SIGTERM shuts down in order (runners drain,
then the gateway, nsqd and etcd); a second exits at once.`,
		Example: `  jobx up --load examples/dev
  jobx up --data-dir /tmp/jobx --http 127.0.0.1:9090 --runners 2`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := jobxEnvErr(a.envVar, o.runners > 0); err != nil {
				return err
			}
			return a.up(cmd.Context(), cmd, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.dataDir, "data-dir", ".jobx", "directory for etcd's and nsqd's data and the runners' files")
	f.StringVar(&o.http, "http", "127.0.0.1:8080", "gateway HTTP listen address")
	f.StringVar(&o.etcdListen, "etcd-listen", "127.0.0.1:2379", "embedded etcd client address")
	f.StringVar(&o.nsqdListen, "nsqd-listen", "127.0.0.1:4150", "in-process nsqd TCP address")
	f.StringVar(&o.etcdQuota, "etcd-quota", "2Gi", "embedded etcd's quota (--quota-backend-bytes), a size such as 2Gi or 16Mi: at this database size etcd raises NOSPACE and refuses writes until space is reclaimed (jobx etcd)")
	f.StringArrayVar(&o.loads, "load", nil, "workflow directory to apply once up (repeatable)")
	runners := 1
	if a.envVar("MR_CONSUME") == "0" { // JobX's front end without a consumer
		runners = 0
	}
	f.IntVar(&o.runners, "runners", runners, "number of runners (env MR_CONSUME=0: none)")
	f.DurationVar(&o.gw.BlockingTimeout, "blocking-timeout", o.gw.BlockingTimeout, "gateway: longest wait of a blocking request")
	f.DurationVar(&o.gw.DeliveredRetention, "delivered-retention", o.gw.DeliveredRetention, "gateway: how long a blocking request is kept after delivery")
	o.rf = a.addRunnerFlags(cmd, false)
	return cmd
}

// cluster is what `jobx up` started, closed in reverse order.
type cluster struct {
	etcd     *embedded.Etcd
	nsqd     *embedded.NSQD
	cli      *clientv3.Client
	gw       *gateway.Gateway
	runners  []*runner.Runner
	etcdURLs []string
	nsqdAddr []string
}

// close releases everything in order: runners, gateway, client, nsqd, etcd.
func (c *cluster) close() {
	for _, r := range c.runners {
		r.Close()
	}
	if c.gw != nil {
		c.gw.Close()
	}
	if c.cli != nil {
		c.cli.Close()
	}
	if c.nsqd != nil {
		c.nsqd.Close()
	}
	if c.etcd != nil {
		c.etcd.Close()
	}
}

func (a *app) up(ctx context.Context, cmd *cobra.Command, o *upOptions) (err error) {
	if o.runners < 0 {
		return fmt.Errorf("--runners must not be negative")
	}
	if err := o.rf.validate(); err != nil {
		return err
	}
	dataDir, err := filepath.Abs(o.dataDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	c := &cluster{}
	defer c.close()
	log := a.log.With("component", "up")

	if a.root.PersistentFlags().Changed("etcd") {
		if c.etcdURLs, err = a.etcdEndpoints(); err != nil {
			return err
		}
	} else {
		quota, err := processors.ParseSize(o.etcdQuota)
		if err != nil {
			return fmt.Errorf("--etcd-quota: %w", err)
		}
		c.etcd, err = embedded.StartEtcd(ctx, embedded.EtcdOptions{Dir: dataDir, ClientAddr: o.etcdListen, PeerAddr: "127.0.0.1:0", QuotaBackendBytes: quota})
		if err != nil {
			return fmt.Errorf("embedded etcd (--etcd-listen %s): %w", o.etcdListen, err)
		}
		c.etcdURLs = []string{c.etcd.Endpoint}
	}
	if a.root.PersistentFlags().Changed("nsqd") {
		if c.nsqdAddr, err = a.nsqdAddrs(); err != nil {
			return err
		}
	} else {
		c.nsqd, err = embedded.StartNSQD(ctx, embedded.NSQDOptions{Dir: dataDir, TCPAddr: o.nsqdListen, HTTPAddr: "127.0.0.1:0", Log: a.log.With("component", "nsqd")})
		if err != nil {
			return fmt.Errorf("in-process nsqd (--nsqd-listen %s): %w", o.nsqdListen, err)
		}
		c.nsqdAddr = []string{c.nsqd.TCPAddr}
	}
	if c.cli, err = newEtcdClient(c.etcdURLs, a.etcdTLS); err != nil {
		return err
	}

	gw := *o.gw
	gw.Addr, gw.Etcd, gw.NSQDs, gw.Log = o.http, c.cli, c.nsqdAddr, a.log
	if c.gw, err = gateway.New(ctx, &gw); err != nil {
		return err
	}
	fsCfg := o.rf.opts.FS
	if fsCfg.Backend == "" {
		fsCfg = sharedfs.Config{Backend: sharedfs.BackendLocal, Dir: filepath.Join(dataDir, "fs")}
	}
	// One private containerd for every runner, in a directory kept across
	// restarts (when none answers at --containerd and the sandbox is one).
	private := &privateContainerd{dir: filepath.Join(dataDir, "containerd")}
	defer private.close()
	for i := range o.runners {
		ro := *o.rf.opts
		ro.ID = fmt.Sprintf("up-%d", i+1)
		ro.Dir = filepath.Join(dataDir, "runner-"+fmt.Sprint(i+1))
		if err := o.rf.useScopeClass(&ro, filepath.Join(dataDir, "scope-class")); err != nil {
			return err
		}
		ro.Etcd, ro.NSQDs, ro.Log = c.cli, c.nsqdAddr, a.log
		if c.nsqd != nil {
			ro.NSQDHTTP = []string{c.nsqd.HTTPAddr}
		}
		if ro.FS.Backend == "" {
			ro.FS = fsCfg
		}
		imagesDir := o.rf.imagesDir
		if imagesDir == "" {
			imagesDir = filepath.Join(dataDir, "images")
		}
		sb, err := a.buildSandbox(ctx, o.rf, &ro, imagesDir, private)
		if err != nil {
			return err
		}
		defer sb.close()
		ro.Sandbox = sb.box
		r, err := runner.New(ctx, &ro)
		if err != nil {
			return err
		}
		c.runners = append(c.runners, r)
	}

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	errc := make(chan error, 1+len(c.runners))
	go func() { errc <- wrap("gateway", c.gw.Run(runCtx)) }()
	for i, r := range c.runners {
		go func() { errc <- wrap(fmt.Sprintf("runner %d", i+1), r.Run(runCtx)) }()
	}
	running := 1 + len(c.runners)
	// wait stops every component and returns the first error.
	wait := func(first error) error {
		stop()
		for ; running > 0; running-- {
			if err := <-errc; first == nil && err != nil {
				first = err
			}
		}
		return first
	}

	gwURL := "http://" + c.gw.Addr()
	fmt.Fprintf(a.stdout, "etcd:    %s%s\n", strings.Join(c.etcdURLs, ","), embeddedNote(c.etcd != nil))
	fmt.Fprintf(a.stdout, "nsqd:    %s%s\n", strings.Join(c.nsqdAddr, ","), embeddedNote(c.nsqd != nil))
	fmt.Fprintf(a.stdout, "gateway: %s\n", gwURL)
	fmt.Fprintf(a.stdout, "runners: %d\n", len(c.runners))
	fmt.Fprintf(a.stdout, "data:    %s\n", dataDir)

	st := kvmodel.NewStore(c.cli)
	for _, dir := range o.loads {
		res, err := manifest.Apply(ctx, st, dir, a.cliLog())
		if err != nil {
			return wait(fmt.Errorf("--load %s: %w", dir, err))
		}
		fmt.Fprintf(a.stdout, "\nloaded %s: workflow %s (%s)\n", dir, res.Workflow.Name, res.Workflow.Action)
		if n, err := uploadFiles(dir, fsCfg, res.Workflow.Name); err != nil {
			return wait(fmt.Errorf("--load %s: %w", dir, err))
		} else if n > 0 {
			fmt.Fprintf(a.stdout, "  %d files of %s in the workflow's shared files\n", n, filepath.Join(dir, "files"))
		}
		for _, j := range res.Manifest.Jobs {
			printJobLines(a.stdout, gwURL, res.Manifest.Workflow, j, c.etcdURLs)
		}
	}
	for _, r := range c.runners {
		select {
		case <-r.Ready():
		case err := <-errc:
			running--
			return wait(err)
		case <-ctx.Done():
			return wait(nil)
		}
	}
	fmt.Fprintf(a.stdout, "\njobx is up; press Ctrl-C to stop\n")
	log.Info("up", "gateway", gwURL, "etcd", c.etcdURLs, "nsqd", c.nsqdAddr)

	select {
	case <-ctx.Done():
		return wait(nil)
	case err := <-errc:
		running--
		if err == nil {
			err = errors.New("a component stopped unexpectedly")
		}
		return wait(err)
	}
}

func wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

func embeddedNote(embedded bool) string {
	if embedded {
		return " (embedded)"
	}
	return " (external)"
}

// printJobLines prints a ready-to-paste curl and jobx submit line for a job.
func printJobLines(w io.Writer, gwURL, wf string, j manifest.Job, etcd []string) {
	var args, flags []string
	for _, arg := range j.ExampleArguments {
		v, _ := json.Marshal(arg.Value)
		k, _ := json.Marshal(arg.Key)
		args = append(args, string(k)+":"+string(v))
		val := string(v)
		if s, ok := arg.Value.(string); ok && !json.Valid([]byte(s)) {
			val = s
		}
		flags = append(flags, "-a "+shellQuote(arg.Key+"="+val))
	}
	body := `{"arguments":{` + strings.Join(args, ",") + `}}`
	fmt.Fprintf(w, "  job %s/%s: %s\n", wf, j.Name, firstLine(j.Description))
	fmt.Fprintf(w, "    curl -sS -X POST -H 'Content-Type: application/json' -d %s '%s/job/%s/%s?blocking=true'\n",
		shellQuote(body), gwURL, wf, j.Name)
	fmt.Fprintf(w, "    jobx submit --gateway %s %s %s %s\n", gwURL, wf, j.Name, strings.Join(flags, " "))
}

// shellQuote quotes s for a POSIX shell, only when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_=.,:/@+", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// uploadFiles copies a workflow directory's files/ folder, if it has one,
// into the workflow's shared filesystem, where its handlers read them
// (JOBX_FS_ROOT) in every sandbox.
func uploadFiles(dir string, cfg sharedfs.Config, wf string) (int, error) {
	src := filepath.Join(dir, "files")
	if st, err := os.Stat(src); err != nil || !st.IsDir() {
		return 0, nil
	}
	fsys, err := sharedfs.Open(cfg, wf)
	if err != nil {
		return 0, err
	}
	defer fsys.Close()
	return fsys.Upload(src, "/")
}
