package main

import (
	"context"
	"fmt"
	"io"

	"github.com/jobx/jobx/internal/manifest"
	"github.com/jobx/jobx/kvmodel"
	"github.com/spf13/cobra"
)

func (a *app) applyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "apply <dir>...",
		Short: "Load workflow directories (workflow.yaml + handlers/) into etcd",
		Long: `Load each workflow directory: create the workflow named in its workflow.yaml (or
update its description), sync its handlers/ directory, then create or update its
steps and jobs. Everything is validated before anything is written; applying the
same directory twice changes nothing. See docs/cli.md for the workflow.yaml format.`,
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
			}
			if a.output == "json" {
				return writeJSON(a.stdout, results)
			}
			return nil
		}),
	}
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
