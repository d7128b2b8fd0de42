package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jobx/jobx/kvmodel"
	"github.com/spf13/cobra"
)

// listedRunner is a runner as jobx runners -o json prints it: its
// announcement and whether its handlers run isolated.
type listedRunner struct {
	*kvmodel.RunnerInfo
	Isolated bool `json:"isolated"`
}

func (a *app) runnersCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "runners",
		Short: "List the live runners and what they offer",
		Long: `List the runners announced in etcd (each under a lease, so a dead runner drops
out within its lease TTL): id, host, capabilities, workflows served (* = all),
sandbox, version and load.

A runner started with --sandbox none runs handlers unisolated: its sandbox reads
"none (UNISOLATED)", a warning on stderr names it, and -o json gives every
runner an "isolated" field.`,
		Example: `  jobx runners
  jobx runners -o json`,
		Args: cobra.NoArgs,
		RunE: a.storeCmd(func(cmd *cobra.Command, ctx context.Context, st *kvmodel.Store, args []string) error {
			runners, err := st.Runners(ctx)
			if err != nil {
				return err
			}
			items := make([]listedRunner, 0, len(runners))
			var rows [][]string
			var unisolated []string
			for _, r := range runners {
				items = append(items, listedRunner{r, r.Isolated()})
				wfs := strings.Join(r.Workflows, ",")
				if wfs == "" {
					wfs = "*"
				}
				sandbox := r.Sandbox
				if !r.Isolated() {
					sandbox += " (UNISOLATED)"
					unisolated = append(unisolated, r.ID)
				}
				rows = append(rows, []string{r.ID, r.Host, strings.Join(r.Capabilities, ","), wfs, sandbox, r.Version,
					fmt.Sprintf("%d/%d", r.InFlight, r.Concurrency), time.Since(r.Started).Round(time.Second).String()})
			}
			if err := a.printTable(items, []string{"ID", "HOST", "CAPABILITIES", "WORKFLOWS", "SANDBOX", "VERSION", "LOAD", "UP"}, rows); err != nil {
				return err
			}
			if len(unisolated) > 0 {
				fmt.Fprintf(a.stderr, "warning: handlers run UNISOLATED (--sandbox none: as the runner's user, with its files, network and processes in reach) on %s; restart those runners with --sandbox auto to isolate them\n",
					strings.Join(unisolated, ", "))
			}
			return nil
		}),
	}
}
