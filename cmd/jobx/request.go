package main

import (
	"context"
	"fmt"

	"github.com/jobx/jobx/kvmodel"
	"github.com/spf13/cobra"
)

func (a *app) requestCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "request",
		Aliases: []string{"requests", "req"},
		Short:   "Show and clean up requests (mr_kv_request_*)",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "get <workflow> <request_id>",
		Short: "Show a request (mr_kv_request_get)",
		Long: `Show a request as stored in etcd: JobX's fields (context, is_done, is_blocking,
failed_invocation_id, invocation_id, job_name, workflow_name) plus state, error
and timestamps. For its result, use GET /request/<workflow>/<id> on the gateway
or jobx submit.`,
		Example: `  jobx request get dev 3c74e0d5...`,
		Args:    cobra.ExactArgs(2),
		RunE: a.storeCmd(func(cmd *cobra.Command, ctx context.Context, st *kvmodel.Store, args []string) error {
			r := &kvmodel.Request{WorkflowName: args[0], ID: args[1]}
			if err := st.Get(ctx, r); err != nil {
				return notFound(err, "request %s of workflow %s", args[1], args[0])
			}
			return a.printEntity(r)
		}),
	})
	var dryRun bool
	cleanup := &cobra.Command{
		Use:   "cleanup <workflow> <request_id>",
		Short: "Delete a request and everything it made (mr_kv_request_cleanup)",
		Long: `Delete a request, every invocation reachable from its root, their datasets,
relationships and sessions, even if the request was submitted with keep.`,
		Example: `  jobx request cleanup dev 3c74e0d5... --dry-run`,
		Args:    cobra.ExactArgs(2),
		RunE: a.storeCmd(func(cmd *cobra.Command, ctx context.Context, st *kvmodel.Store, args []string) error {
			wf, id := args[0], args[1]
			r := &kvmodel.Request{WorkflowName: wf, ID: id}
			if err := st.Get(ctx, r); err != nil {
				return notFound(err, "request %s of workflow %s", id, wf)
			}
			if dryRun {
				n, err := countInvocations(ctx, st, wf, r.InvocationID)
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "would delete request %s and %d map invocations (with their reductions and data)\n", id, n)
				return nil
			}
			n, err := st.PruneRequest(ctx, wf, id, true)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "deleted request %s and %d map invocations (with their reductions and data)\n", id, n)
			return nil
		}),
	}
	cleanup.Flags().BoolVarP(&dryRun, "dry-run", "s", false, "count what would be deleted, delete nothing (JobX's --simulate)")
	cmd.AddCommand(cleanup)
	return cmd
}

// countInvocations counts the map invocations reachable from root, as
// PruneRequest walks them.
func countInvocations(ctx context.Context, st *kvmodel.Store, wf, root string) (int, error) {
	n, queue := 0, []string{root}
	for len(queue) > 0 {
		m := queue[0]
		queue = queue[1:]
		children, err := st.Children(ctx, wf, m)
		if err != nil {
			return n, err
		}
		queue = append(queue, children...)
		n++
	}
	return n, nil
}

func (a *app) invocationCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "invocation",
		Aliases: []string{"invocations", "inv"},
		Short:   "Show invocations (mr_kv_invocation_get)",
	}
	cmd.AddCommand(&cobra.Command{
		Use:     "get <workflow> <invocation_id>",
		Short:   "Show an invocation (mr_kv_invocation_get)",
		Example: `  jobx invocation get dev 9f0a...`,
		Args:    cobra.ExactArgs(2),
		RunE: a.storeCmd(func(cmd *cobra.Command, ctx context.Context, st *kvmodel.Store, args []string) error {
			inv := &kvmodel.Invocation{WorkflowName: args[0], ID: args[1]}
			if err := st.Get(ctx, inv); err != nil {
				return notFound(err, "invocation %s of workflow %s", args[1], args[0])
			}
			return a.printEntity(inv)
		}),
	})
	return cmd
}
