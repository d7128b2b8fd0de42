package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jobx/jobx/kvmodel"
	"github.com/spf13/cobra"
)

func (a *app) runnersCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "runners",
		Short: "List the live runners and what they offer",
		Long: `List the runners announced in etcd (each under a lease, so a dead runner drops
out within its lease TTL): id, host, capabilities, workflows served (* = all),
sandbox, version and load.`,
		Example: `  jobx runners
  jobx runners -o json`,
		Args: cobra.NoArgs,
		RunE: a.storeCmd(func(cmd *cobra.Command, ctx context.Context, st *kvmodel.Store, args []string) error {
			runners, err := st.Runners(ctx)
			if err != nil {
				return err
			}
			var rows [][]string
			for _, r := range runners {
				wfs := strings.Join(r.Workflows, ",")
				if wfs == "" {
					wfs = "*"
				}
				rows = append(rows, []string{r.ID, r.Host, strings.Join(r.Capabilities, ","), wfs, r.Sandbox, r.Version,
					fmt.Sprintf("%d/%d", r.InFlight, r.Concurrency), time.Since(r.Started).Round(time.Second).String()})
			}
			return a.printTable(runners, []string{"ID", "HOST", "CAPABILITIES", "WORKFLOWS", "SANDBOX", "VERSION", "LOAD", "UP"}, rows)
		}),
	}
}
