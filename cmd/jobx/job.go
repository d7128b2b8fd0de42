package main

import (
	"context"
	"fmt"

	"github.com/jobx/jobx/kvmodel"
	"github.com/spf13/cobra"
)

func (a *app) jobCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "job",
		Aliases: []string{"jobs"},
		Short:   "Create, show, list and delete jobs (mr_kv_job_*)",
	}
	cmd.AddCommand(&cobra.Command{
		Use:     "create <workflow> <name> <description> <initial_step>",
		Short:   "Create a job that starts at a step (mr_kv_job_create)",
		Example: `  jobx job create dev job4 "two-level split and sum" step6_split_argument_1`,
		Args:    cobra.ExactArgs(4),
		RunE: a.storeCmd(func(cmd *cobra.Command, ctx context.Context, st *kvmodel.Store, args []string) error {
			if _, err := requireWorkflow(ctx, st, args[0]); err != nil {
				return err
			}
			step := &kvmodel.Step{WorkflowName: args[0], Name: args[3]}
			if err := st.Get(ctx, step); err != nil {
				return notFound(err, "initial step %q of workflow %s", args[3], args[0])
			}
			job := &kvmodel.Job{WorkflowName: args[0], Name: args[1], Description: args[2], InitialStepName: args[3]}
			if err := st.Create(ctx, job); err != nil {
				return err
			}
			return a.printEntity(job)
		}),
	})
	cmd.AddCommand(&cobra.Command{
		Use:     "get <workflow> <name>",
		Short:   "Show a job (mr_kv_job_get)",
		Example: `  jobx job get dev job4`,
		Args:    cobra.ExactArgs(2),
		RunE: a.storeCmd(func(cmd *cobra.Command, ctx context.Context, st *kvmodel.Store, args []string) error {
			job := &kvmodel.Job{WorkflowName: args[0], Name: args[1]}
			if err := st.Get(ctx, job); err != nil {
				return notFound(err, "job %q of workflow %s", args[1], args[0])
			}
			return a.printEntity(job)
		}),
	})
	cmd.AddCommand(&cobra.Command{
		Use:     "list <workflow>",
		Short:   "List a workflow's jobs, by name (mr_kv_job_list)",
		Example: `  jobx job list dev`,
		Args:    cobra.ExactArgs(1),
		RunE: a.storeCmd(func(cmd *cobra.Command, ctx context.Context, st *kvmodel.Store, args []string) error {
			if _, err := requireWorkflow(ctx, st, args[0]); err != nil {
				return err
			}
			jobs, err := kvmodel.List[kvmodel.Job](ctx, st, args[0])
			if err != nil {
				return err
			}
			items := make([]map[string]any, len(jobs))
			rows := make([][]string, len(jobs))
			for i, j := range jobs {
				items[i] = entityFields(j)
				rows[i] = []string{j.Name, j.InitialStepName, firstLine(j.Description)}
			}
			return a.printTable(items, []string{"JOB", "INITIAL STEP", "DESCRIPTION"}, rows)
		}),
	})
	cmd.AddCommand(&cobra.Command{
		Use:     "delete <workflow> <name>",
		Short:   "Delete a job (mr_kv_job_delete)",
		Example: `  jobx job delete dev job4`,
		Args:    cobra.ExactArgs(2),
		RunE: a.storeCmd(func(cmd *cobra.Command, ctx context.Context, st *kvmodel.Store, args []string) error {
			job := &kvmodel.Job{WorkflowName: args[0], Name: args[1]}
			if err := st.Delete(ctx, job); err != nil {
				return notFound(err, "job %q of workflow %s", args[1], args[0])
			}
			fmt.Fprintf(a.stdout, "deleted job %s\n", args[1])
			return nil
		}),
	})
	return cmd
}
