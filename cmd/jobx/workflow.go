package main

import (
	"context"
	"fmt"

	"github.com/jobx/jobx/kvmodel"
	"github.com/spf13/cobra"
)

func (a *app) workflowCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "workflow",
		Aliases: []string{"workflows", "wf"},
		Short:   "Create, show, list and delete workflows (mr_kv_workflow_*)",
	}
	cmd.AddCommand(&cobra.Command{
		Use:     "create <name> <description>",
		Short:   "Create a workflow (mr_kv_workflow_create)",
		Example: `  jobx workflow create dev "JobX's development jobs"`,
		Args:    cobra.ExactArgs(2),
		RunE: a.storeCmd(func(cmd *cobra.Command, ctx context.Context, st *kvmodel.Store, args []string) error {
			wf := &kvmodel.Workflow{Name: args[0], Description: args[1]}
			if err := st.Create(ctx, wf); err != nil {
				return err
			}
			return a.printEntity(wf)
		}),
	})
	cmd.AddCommand(&cobra.Command{
		Use:     "get <name>",
		Short:   "Show a workflow (mr_kv_workflow_get)",
		Example: `  jobx workflow get dev -o json`,
		Args:    cobra.ExactArgs(1),
		RunE: a.storeCmd(func(cmd *cobra.Command, ctx context.Context, st *kvmodel.Store, args []string) error {
			wf, err := requireWorkflow(ctx, st, args[0])
			if err != nil {
				return err
			}
			return a.printEntity(wf)
		}),
	})
	cmd.AddCommand(&cobra.Command{
		Use:     "list",
		Short:   "List the workflows",
		Example: `  jobx workflow list`,
		Args:    cobra.NoArgs,
		RunE: a.storeCmd(func(cmd *cobra.Command, ctx context.Context, st *kvmodel.Store, args []string) error {
			wfs, err := kvmodel.List[kvmodel.Workflow](ctx, st)
			if err != nil {
				return err
			}
			items := make([]map[string]any, len(wfs))
			rows := make([][]string, len(wfs))
			for i, w := range wfs {
				items[i] = entityFields(w)
				rows[i] = []string{w.Name, firstLine(w.Description)}
			}
			return a.printTable(items, []string{"WORKFLOW", "DESCRIPTION"}, rows)
		}),
	})
	var force bool
	del := &cobra.Command{
		Use:   "delete <name>",
		Short: "Delete a workflow (mr_kv_workflow_delete)",
		Long: `Delete a workflow entity. Like JobX it does not cascade; unlike JobX it refuses
while the workflow still has jobs, steps or handlers, unless --force.`,
		Example: `  jobx workflow delete dev`,
		Args:    cobra.ExactArgs(1),
		RunE: a.storeCmd(func(cmd *cobra.Command, ctx context.Context, st *kvmodel.Store, args []string) error {
			wf, err := requireWorkflow(ctx, st, args[0])
			if err != nil {
				return err
			}
			jobs, err := kvmodel.List[kvmodel.Job](ctx, st, wf.Name)
			if err != nil {
				return err
			}
			steps, err := kvmodel.List[kvmodel.Step](ctx, st, wf.Name)
			if err != nil {
				return err
			}
			handlers, err := kvmodel.List[kvmodel.Handler](ctx, st, wf.Name)
			if err != nil {
				return err
			}
			if n := len(jobs) + len(steps) + len(handlers); n > 0 {
				left := fmt.Sprintf("workflow %s still has %d jobs, %d steps and %d handlers", wf.Name, len(jobs), len(steps), len(handlers))
				if !force {
					return fmt.Errorf("%s; delete them first, or pass --force to leave them behind", left)
				}
				fmt.Fprintf(a.stderr, "warning: %s; they are left behind\n", left)
			}
			if err := st.Delete(ctx, wf); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "deleted workflow %s\n", wf.Name)
			return nil
		}),
	}
	del.Flags().BoolVarP(&force, "force", "f", false, "delete even if jobs, steps or handlers remain (they are left behind)")
	cmd.AddCommand(del)
	return cmd
}
