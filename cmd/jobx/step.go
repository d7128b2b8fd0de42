package main

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/jobx/jobx/kvmodel"
	"github.com/spf13/cobra"
)

// checkHandler fails unless handler name exists in wf and may fill role r.
func checkHandler(ctx context.Context, st *kvmodel.Store, wf, name string, r kvmodel.StepRole) error {
	h := &kvmodel.Handler{WorkflowName: wf, Name: name}
	if err := kvmodel.ValidateName(r.Name+" handler name", name); err != nil {
		return err
	}
	if err := st.Get(ctx, h); err != nil {
		return notFound(err, "%s handler %q of workflow %s", r.Name, name, wf)
	}
	return kvmodel.CheckRole(r, h)
}

// checkStepHandlers checks every handler a step names. The error of a bad
// map, combine or reduce handler exits with 1, 2 or 3, as
// mr_kv_step_create did.
func checkStepHandlers(ctx context.Context, st *kvmodel.Store, s *kvmodel.Step) error {
	i := 0
	for r, name := range s.Roles() {
		i++
		if name == "" && r.Optional {
			continue
		}
		if err := checkHandler(ctx, st, s.WorkflowName, name, r); err != nil {
			return &codedError{fmt.Errorf("step %s: %w", s.Name, err), i}
		}
	}
	return nil
}

func (a *app) stepCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "step",
		Aliases: []string{"steps"},
		Short:   "Create, show, list, repoint and delete steps (mr_kv_step_*)",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "create <workflow> <name> <description> <map_handler> <combine_handler or ''> <reduce_handler>",
		Short: "Create a step: a mapper, an optional combiner and a reducer (mr_kv_step_create)",
		Long: `Create a step. The handlers must exist with the right handler_type; pass '' as
the combiner for none (as with JobX, it is a required positional).`,
		Example: `  jobx step create dev step6_split_argument_1 "split an argument in two" map_test_split '' reduce_test_noop`,
		Args:    cobra.ExactArgs(6),
		RunE: a.storeCmd(func(cmd *cobra.Command, ctx context.Context, st *kvmodel.Store, args []string) error {
			if _, err := requireWorkflow(ctx, st, args[0]); err != nil {
				return err
			}
			s := &kvmodel.Step{WorkflowName: args[0], Name: args[1], Description: args[2],
				MapHandlerName: args[3], CombineHandlerName: args[4], ReduceHandlerName: args[5]}
			if err := checkStepHandlers(ctx, st, s); err != nil {
				return err
			}
			if err := st.Create(ctx, s); err != nil {
				return err
			}
			a.warnUnofferedCapabilities(ctx, st, s)
			return a.printEntity(s)
		}),
	})
	cmd.AddCommand(&cobra.Command{
		Use:     "get <workflow> <name>",
		Short:   "Show a step (mr_kv_step_get)",
		Example: `  jobx step get dev step6_split_argument_1`,
		Args:    cobra.ExactArgs(2),
		RunE: a.storeCmd(func(cmd *cobra.Command, ctx context.Context, st *kvmodel.Store, args []string) error {
			s := &kvmodel.Step{WorkflowName: args[0], Name: args[1]}
			if err := st.Get(ctx, s); err != nil {
				return notFound(err, "step %q of workflow %s", args[1], args[0])
			}
			return a.printEntity(s)
		}),
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "list <workflow>",
		Short: "List steps grouped by step, mapper, combiner and reducer (mr_kv_step_list)",
		Example: `  jobx step list dev
  jobx step list dev -o json`,
		Args: cobra.ExactArgs(1),
		RunE: a.storeCmd(func(cmd *cobra.Command, ctx context.Context, st *kvmodel.Store, args []string) error {
			if _, err := requireWorkflow(ctx, st, args[0]); err != nil {
				return err
			}
			steps, err := kvmodel.List[kvmodel.Step](ctx, st, args[0])
			if err != nil {
				return err
			}
			return a.printSteps(steps)
		}),
	})
	var force bool
	del := &cobra.Command{
		Use:   "delete <workflow> <name>",
		Short: "Delete a step (mr_kv_step_delete)",
		Long: `Delete a step. Unlike JobX, it refuses while a job starts at the step, unless
--force.`,
		Example: `  jobx step delete dev step7_chunk_argument`,
		Args:    cobra.ExactArgs(2),
		RunE: a.storeCmd(func(cmd *cobra.Command, ctx context.Context, st *kvmodel.Store, args []string) error {
			jobs, err := kvmodel.List[kvmodel.Job](ctx, st, args[0])
			if err != nil {
				return err
			}
			var users []string
			for _, j := range jobs {
				if j.InitialStepName == args[1] {
					users = append(users, j.Name)
				}
			}
			if len(users) > 0 && !force {
				return fmt.Errorf("step %s is the initial step of job(s) %s; delete or repoint them, or pass --force", args[1], strings.Join(users, ", "))
			}
			s := &kvmodel.Step{WorkflowName: args[0], Name: args[1]}
			if err := st.Delete(ctx, s); err != nil {
				return notFound(err, "step %q of workflow %s", args[1], args[0])
			}
			fmt.Fprintf(a.stdout, "deleted step %s\n", args[1])
			return nil
		}),
	}
	del.Flags().BoolVarP(&force, "force", "f", false, "delete even if jobs start at the step")
	cmd.AddCommand(del, a.stepSetHandlerCmd(), a.stepUpdateHandlersCmd())
	return cmd
}

func (a *app) stepSetHandlerCmd() *cobra.Command {
	var m, c, r string
	cmd := &cobra.Command{
		Use:   "set-handler <workflow> <name> [-m map] [-c combine] [-r reduce]",
		Short: "Replace some of a step's handlers (mr_kv_step_set_handler)",
		Long:  `Replace the handlers given by flags; -c '' removes the combiner.`,
		Example: `  jobx step set-handler dev step7_chunk_argument -r reduce_test_multiply
  jobx step set-handler dev step7_chunk_argument -c ''`,
		Args: cobra.ExactArgs(2),
		RunE: a.storeCmd(func(cmd *cobra.Command, ctx context.Context, st *kvmodel.Store, args []string) error {
			s := &kvmodel.Step{WorkflowName: args[0], Name: args[1]}
			if err := st.Get(ctx, s); err != nil {
				return notFound(err, "step %q of workflow %s", args[1], args[0])
			}
			changed := false
			for flag, v := range map[string]string{"map": m, "combine": c, "reduce": r} {
				if cmd.Flags().Changed(flag) {
					r, _ := kvmodel.RoleOf(flag)
					*s.HandlerOf(r) = v
					changed = true
				}
			}
			if !changed {
				return fmt.Errorf("nothing to set: give -m, -c or -r")
			}
			if err := checkStepHandlers(ctx, st, s); err != nil {
				return err
			}
			if err := st.UpdateCAS(ctx, s); err != nil {
				return err
			}
			return a.printEntity(s)
		}),
	}
	cmd.Flags().StringVarP(&m, "map", "m", "", "map handler")
	cmd.Flags().StringVarP(&c, "combine", "c", "", "combine handler ('' for none)")
	cmd.Flags().StringVarP(&r, "reduce", "r", "", "reduce handler")
	return cmd
}

func (a *app) stepUpdateHandlersCmd() *cobra.Command {
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "update-handlers <workflow> <handler_type> <if_name> <to_name>",
		Short: "Repoint every step that uses one handler to another (mr_kv_step_update_handlers)",
		Long: `Repoint every step whose <handler_type> handler is <if_name> to <to_name>, which
must exist with that type. <handler_type> is mapper, combiner or reducer (or map,
combine, reduce).`,
		Example: `  jobx step update-handlers dev reducer reduce_test_sum reduce_test_multiply --dry-run`,
		Args:    cobra.ExactArgs(4),
		RunE: a.storeCmd(func(cmd *cobra.Command, ctx context.Context, st *kvmodel.Store, args []string) error {
			wf, from, to := args[0], args[2], args[3]
			role, ok := kvmodel.RoleOf(args[1])
			if !ok {
				return fmt.Errorf("handler type %q: want mapper, combiner or reducer", args[1])
			}
			if err := checkHandler(ctx, st, wf, to, role); err != nil {
				return err
			}
			steps, err := kvmodel.List[kvmodel.Step](ctx, st, wf)
			if err != nil {
				return err
			}
			n := 0
			for _, s := range steps {
				h := s.HandlerOf(role)
				if *h != from {
					continue
				}
				*h = to
				n++
				if !dryRun {
					if err := st.UpdateCAS(ctx, s); err != nil {
						return fmt.Errorf("step %s: %w", s.Name, err)
					}
				}
				fmt.Fprintf(a.stdout, "step %s: %s %s -> %s\n", s.Name, role.HandlerType, from, to)
			}
			suffix := ""
			if dryRun {
				suffix = " (dry run: nothing written)"
			}
			fmt.Fprintf(a.stderr, "%d step(s) updated%s\n", n, suffix)
			return nil
		}),
	}
	cmd.Flags().BoolVarP(&dryRun, "dry-run", "s", false, "print what would change, write nothing (JobX's -s)")
	return cmd
}

// printSteps prints steps grouped as JobX's mr_kv_step_list does.
func (a *app) printSteps(steps []*kvmodel.Step) error {
	by := map[string]map[string][]string{"mapper": {}, "combiner": {}, "reducer": {}}
	for _, s := range steps {
		for r, h := range s.Roles() {
			if h != "" {
				by[r.HandlerType][h] = append(by[r.HandlerType][h], s.Name)
			}
		}
	}
	if a.output == "json" {
		items := make([]map[string]any, len(steps))
		for i, s := range steps {
			items[i] = entityFields(s)
		}
		return writeJSON(a.stdout, map[string]any{
			"steps": items, "by_mapper": by["mapper"], "by_combiner": by["combiner"], "by_reducer": by["reducer"],
		})
	}
	w := a.stdout
	fmt.Fprintln(w, "By step:")
	if len(steps) == 0 {
		fmt.Fprintln(w, "  (none)")
	}
	for _, s := range steps {
		fmt.Fprintf(w, "  %s: map=%s combine=%s reduce=%s\n", s.Name, s.MapHandlerName, textValue(s.CombineHandlerName), s.ReduceHandlerName)
	}
	for _, g := range []struct{ title, typ string }{{"By mapper:", "mapper"}, {"By combiner:", "combiner"}, {"By reducer:", "reducer"}} {
		fmt.Fprintln(w, g.title)
		names := make([]string, 0, len(by[g.typ]))
		for h := range by[g.typ] {
			names = append(names, h)
		}
		sort.Strings(names)
		if len(names) == 0 {
			fmt.Fprintln(w, "  (none)")
		}
		for _, h := range names {
			fmt.Fprintf(w, "  %s: %s\n", h, strings.Join(by[g.typ][h], ", "))
		}
	}
	return nil
}

// warnUnofferedCapabilities warns (on stderr) about each handler of s whose
// required capability no live runner offers for its workflow: its requests
// would be refused until such a runner starts.
func (a *app) warnUnofferedCapabilities(ctx context.Context, st *kvmodel.Store, s *kvmodel.Step) {
	runners, err := st.Runners(ctx)
	if err != nil {
		return
	}
	for _, name := range s.Roles() {
		h := &kvmodel.Handler{WorkflowName: s.WorkflowName, Name: name}
		if name == "" || st.Get(ctx, h) != nil {
			continue
		}
		c := h.Capability()
		offered := false
		for _, r := range runners {
			offered = offered || r.Serves(s.WorkflowName, c)
		}
		if !offered {
			fmt.Fprintf(a.stderr, "warning: no live runner offers capability %q for workflow %s, which handler %s requires (start one: jobx runner --capabilities %s)\n", c, s.WorkflowName, name, c)
		}
	}
}
