package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/jobx/jobx/internal/manifest"
	"github.com/jobx/jobx/kvmodel"
	"github.com/spf13/cobra"
)

func (a *app) applyCmd() *cobra.Command {
	fl := &fsFlags{}
	cmd := &cobra.Command{
		Use:   "apply <dir>...",
		Short: "Load workflow directories (workflow.yaml + handlers/) into etcd",
		Long: `Load each workflow directory: create the workflow named in its workflow.yaml (or
update its description), sync its handlers/ directory, then create or update its
steps and jobs. Everything is validated before anything is written; applying the
same directory twice changes nothing. With --fs-dir or --fs-config-dir (the
runners' shared filesystem), a directory's files/ folder is then copied into the
workflow's shared files, where its handlers find them at $JOBX_FS_ROOT (jobx fs
does it by hand). See docs/cli.md for the workflow.yaml format.`,
		Example: `  jobx apply examples/dev
  jobx apply examples/* -o json`,
		Args: cobra.MinimumNArgs(1),
		RunE: a.storeCmd(func(cmd *cobra.Command, ctx context.Context, st *kvmodel.Store, args []string) error {
			var results []*manifest.Result
			for _, dir := range args {
				res, err := manifest.Apply(ctx, st, dir, a.cliLog())
				if err != nil {
					return err
				}
				results = append(results, res)
				if a.output == "text" {
					printApply(a.stdout, res)
				}
				if err := a.applyFiles(fl, dir, res.Workflow.Name); err != nil {
					return err
				}
			}
			if a.output == "json" {
				return writeJSON(a.stdout, results)
			}
			return nil
		}),
	}
	a.addFSFlags(cmd, fl, "")
	return cmd
}

// applyFiles copies workflow directory dir's files/ folder, if it has
// one, into workflow wf's shared files when a filesystem is given, and
// says so; without one it says how to.
func (a *app) applyFiles(fl *fsFlags, dir, wf string) error {
	src := filepath.Join(dir, "files")
	if st, err := os.Stat(src); err != nil || !st.IsDir() {
		return nil
	}
	if !fl.given() {
		fmt.Fprintf(a.stderr, "note: %s not copied into workflow %s's shared files: give --fs-dir or --fs-config-dir (as the runners'), or use jobx fs put\n", src, wf)
		return nil
	}
	cfg, err := fl.config(wf)
	if err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	n, err := uploadFiles(dir, cfg, wf)
	if err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	fmt.Fprintf(a.stderr, "copied %d file(s) of %s into workflow %s's shared files\n", n, src, wf)
	return nil
}

// printApply prints what Apply did, one line an entity.
func printApply(w io.Writer, res *manifest.Result) {
	fmt.Fprintf(w, "%-6s  workflow %s\n", res.Workflow.Action, res.Workflow.Name)
	if res.Handlers != nil {
		printDecisions(w, res.Handlers.Decisions)
		for _, warn := range res.Handlers.Warnings {
			fmt.Fprintln(w, "warning:", warn)
		}
	}
	for _, s := range res.Steps {
		fmt.Fprintf(w, "%-6s  step %s\n", s.Action, s.Name)
	}
	for _, j := range res.Jobs {
		fmt.Fprintf(w, "%-6s  job %s\n", j.Action, j.Name)
	}
}
