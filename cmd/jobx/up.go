package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/jobx/jobx/gateway"
	"github.com/jobx/jobx/internal/cluster"
	"github.com/jobx/jobx/internal/embedded"
	"github.com/jobx/jobx/internal/manifest"
	"github.com/jobx/jobx/processors"
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

func (a *app) up(ctx context.Context, cmd *cobra.Command, o *upOptions) error {
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
	log := a.log.With("component", "up")

	co := cluster.NewOptions()
	co.Dir, co.Log = dataDir, a.log
	if a.root.PersistentFlags().Changed("etcd") {
		if co.EtcdEndpoints, err = a.etcdEndpoints(); err != nil {
			return err
		}
	} else {
		quota, err := processors.ParseSize(o.etcdQuota)
		if err != nil {
			return fmt.Errorf("--etcd-quota: %w", err)
		}
		co.Etcd = embedded.EtcdOptions{ClientAddr: o.etcdListen, PeerAddr: "127.0.0.1:0", QuotaBackendBytes: quota}
	}
	if a.root.PersistentFlags().Changed("nsqd") {
		if co.NSQDs, err = a.nsqdAddrs(); err != nil {
			return err
		}
	} else {
		co.NSQD = embedded.NSQDOptions{TCPAddr: o.nsqdListen, HTTPAddr: "127.0.0.1:0", Log: a.log.With("component", "nsqd")}
	}
	co.Dial = func(endpoints []string) (*clientv3.Client, error) { return newEtcdClient(endpoints, a.etcdTLS) }
	gw := *o.gw
	gw.Addr = o.http
	co.Gateway = &gw
	c, err := cluster.Start(ctx, co)
	if err != nil {
		return o.startError(err)
	}
	// One private containerd for every runner, in a directory kept across
	// restarts (when none answers at --containerd and the sandbox is one).
	private := &privateContainerd{dir: filepath.Join(dataDir, "containerd")}
	var boxes []*builtSandbox
	defer func() {
		c.Close() // the runners first: they use the sandboxes
		for _, sb := range slices.Backward(boxes) {
			sb.close()
		}
		private.close()
	}()

	fsCfg := o.rf.opts.FS
	if fsCfg.Backend == "" {
		fsCfg = sharedfs.Config{Backend: sharedfs.BackendLocal, Dir: filepath.Join(dataDir, "fs")}
	}
	for i := range o.runners {
		ro := *o.rf.opts
		ro.ID = fmt.Sprintf("up-%d", i+1)
		ro.Dir = filepath.Join(dataDir, "runner-"+fmt.Sprint(i+1))
		if err := o.rf.useScopeClass(&ro, filepath.Join(dataDir, "scope-class")); err != nil {
			return err
		}
		ro.Log = a.log
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
		boxes = append(boxes, sb)
		ro.Sandbox = sb.box
		if _, err := c.AddRunner(ctx, &ro); err != nil {
			return err
		}
	}

	gwURL := c.URL()
	fmt.Fprintf(a.stdout, "etcd:    %s%s\n", strings.Join(c.EtcdEndpoints(), ","), embeddedNote(c.EtcdEmbedded()))
	fmt.Fprintf(a.stdout, "nsqd:    %s%s\n", strings.Join(c.NSQDs(), ","), embeddedNote(c.NSQDEmbedded()))
	fmt.Fprintf(a.stdout, "gateway: %s\n", gwURL)
	fmt.Fprintf(a.stdout, "runners: %d\n", len(c.Runners()))
	fmt.Fprintf(a.stdout, "data:    %s\n", dataDir)

	for _, dir := range o.loads {
		res, err := manifest.Apply(ctx, c.Store(), dir, a.cliLog())
		if err != nil {
			return fmt.Errorf("--load %s: %w", dir, err)
		}
		fmt.Fprintf(a.stdout, "\nloaded %s: workflow %s (%s)\n", dir, res.Workflow.Name, res.Workflow.Action)
		if n, err := uploadFiles(dir, fsCfg, res.Workflow.Name); err != nil {
			return fmt.Errorf("--load %s: %w", dir, err)
		} else if n > 0 {
			fmt.Fprintf(a.stdout, "  %d files of %s in the workflow's shared files\n", n, filepath.Join(dir, "files"))
		}
		for _, j := range res.Manifest.Jobs {
			printJobLines(a.stdout, gwURL, res.Manifest.Workflow, j, c.EtcdEndpoints())
		}
	}
	for _, r := range c.Runners() {
		select {
		case <-r.Ready():
		case err := <-c.Err():
			return err
		case <-ctx.Done():
			return c.Close()
		}
	}
	fmt.Fprintf(a.stdout, "\njobx is up; press Ctrl-C to stop\n")
	log.Info("up", "gateway", gwURL, "etcd", c.EtcdEndpoints(), "nsqd", c.NSQDs())

	select {
	case <-ctx.Done():
		return c.Close()
	case err := <-c.Err():
		return err
	}
}

// startError names the flag of the embedded etcd or nsqd that could not
// start.
func (o *upOptions) startError(err error) error {
	var se *cluster.StartError
	if errors.As(err, &se) {
		switch se.Component {
		case cluster.Etcd:
			return fmt.Errorf("embedded etcd (--etcd-listen %s): %w", o.etcdListen, se.Err)
		case cluster.NSQD:
			return fmt.Errorf("in-process nsqd (--nsqd-listen %s): %w", o.nsqdListen, se.Err)
		}
	}
	return err
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
