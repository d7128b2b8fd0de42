package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/jobx/jobx/internal/handlersync"
	"github.com/jobx/jobx/kvmodel"
	"github.com/jobx/jobx/processors"
	"github.com/spf13/cobra"
)

func (a *app) handlerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "handler",
		Aliases: []string{"handlers"},
		Short:   "Sync, create, show, list and delete handlers (mr_kv_handler_*)",
	}
	cmd.AddCommand(a.handlerSyncCmd(), a.handlerCreateCmd())
	cmd.AddCommand(&cobra.Command{
		Use:     "get <workflow> <name>",
		Short:   "Show a handler, with its source (mr_kv_handler_get)",
		Example: `  jobx handler get dev map_test_split`,
		Args:    cobra.ExactArgs(2),
		RunE: a.storeCmd(func(cmd *cobra.Command, ctx context.Context, st *kvmodel.Store, args []string) error {
			h := &kvmodel.Handler{WorkflowName: args[0], Name: args[1]}
			if err := st.Get(ctx, h); err != nil {
				return notFound(err, "handler %q of workflow %s", args[1], args[0])
			}
			if err := a.printEntity(h, "source_code"); err != nil || a.output == "json" {
				return err
			}
			fmt.Fprintf(a.stdout, "\n%s", h.SourceCode)
			if !strings.HasSuffix(h.SourceCode, "\n") {
				fmt.Fprintln(a.stdout)
			}
			return nil
		}),
	})
	cmd.AddCommand(&cobra.Command{
		Use:     "list <workflow>",
		Short:   "List a workflow's handlers, without their source (mr_kv_handler_list)",
		Example: `  jobx handler list dev`,
		Args:    cobra.ExactArgs(1),
		RunE: a.storeCmd(func(cmd *cobra.Command, ctx context.Context, st *kvmodel.Store, args []string) error {
			if _, err := requireWorkflow(ctx, st, args[0]); err != nil {
				return err
			}
			hs, err := kvmodel.List[kvmodel.Handler](ctx, st, args[0])
			if err != nil {
				return err
			}
			items := make([]map[string]any, len(hs))
			rows := make([][]string, len(hs))
			for i, h := range hs {
				items[i] = entityFields(h)
				delete(items[i], "source_code")
				rows[i] = []string{h.Name, h.HandlerType, h.SourceType, h.RequiredCapability, textValue(shortID(h.Version)),
					textValue(h.Options.File), firstLine(h.Description)}
			}
			return a.printTable(items, []string{"HANDLER", "TYPE", "SOURCE", "CAPABILITY", "VERSION", "FILE", "DESCRIPTION"}, rows)
		}),
	})
	var force bool
	del := &cobra.Command{
		Use:   "delete <workflow> <name>",
		Short: "Delete a handler (mr_kv_handler_delete)",
		Long: `Delete a handler and recompute the workflow's handlers_state. Unlike JobX, it
refuses while a step uses the handler, unless --force.`,
		Example: `  jobx handler delete dev map_test_random_yield`,
		Args:    cobra.ExactArgs(2),
		RunE: a.storeCmd(func(cmd *cobra.Command, ctx context.Context, st *kvmodel.Store, args []string) error {
			steps, err := kvmodel.List[kvmodel.Step](ctx, st, args[0])
			if err != nil {
				return err
			}
			var users []string
			for _, s := range steps {
				if s.MapHandlerName == args[1] || s.CombineHandlerName == args[1] || s.ReduceHandlerName == args[1] {
					users = append(users, s.Name)
				}
			}
			if len(users) > 0 && !force {
				return fmt.Errorf("handler %s is used by step(s) %s; repoint them (jobx step update-handlers) or pass --force", args[1], strings.Join(users, ", "))
			}
			h := &kvmodel.Handler{WorkflowName: args[0], Name: args[1]}
			if err := st.Delete(ctx, h); err != nil {
				return notFound(err, "handler %q of workflow %s", args[1], args[0])
			}
			if _, err := handlersync.UpdateHandlersState(ctx, st, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "deleted handler %s\n", args[1])
			return nil
		}),
	}
	del.Flags().BoolVarP(&force, "force", "f", false, "delete even if steps use the handler")
	cmd.AddCommand(del)
	return cmd
}

func (a *app) handlerSyncCmd() *cobra.Command {
	var opts handlersync.Options
	cmd := &cobra.Command{
		Use:   "sync <workflow> <dir>",
		Short: "Push a directory of handler files to a workflow (mr_kv_handler_store)",
		Long: `Sync the handler files under <dir> into <workflow>, as JobX's mr_kv_handler_store:
new files are created, changed ones updated, unchanged ones skipped, and handlers
with no file deleted unless a step uses them (then kept). Handler names come from
paths: map/test/split.py is map_test_split.

Every file is checked first (metadata header, the language's own syntax check,
handler name); if any is bad, every problem is printed and nothing is written.`,
		Example: `  jobx handler sync dev examples/dev/handlers
  jobx handler sync dev ./handlers --dry-run`,
		Args: cobra.ExactArgs(2),
		RunE: a.storeCmd(func(cmd *cobra.Command, ctx context.Context, st *kvmodel.Store, args []string) error {
			opts.Log = a.cliLog()
			rep, err := handlersync.Sync(ctx, st, args[0], args[1], opts)
			if err != nil {
				return err
			}
			if a.output == "json" {
				return writeJSON(a.stdout, rep)
			}
			printDecisions(a.stdout, rep.Decisions)
			printSyncSummary(a.stderr, rep)
			return nil
		}),
	}
	cmd.Flags().BoolVarP(&opts.DryRun, "dry-run", "s", false, "print the decisions, write nothing (JobX's --simulate_only)")
	cmd.Flags().BoolVarP(&opts.Force, "force", "f", false, "update every handler, changed or not (JobX's --force_update)")
	return cmd
}

// printDecisions prints one line a decision:
// "create  map_test_split  (map/test/split.py)".
func printDecisions(w io.Writer, ds []handlersync.Decision) {
	for _, d := range ds {
		file := d.File
		if file == "" {
			file = "no file"
		}
		line := fmt.Sprintf("%-6s  %s  (%s)", d.Action, d.Handler, file)
		switch d.Action {
		case handlersync.Update, handlersync.Delete, handlersync.Keep:
			line += "  " + d.Reason
		}
		fmt.Fprintln(w, line)
	}
}

func printSyncSummary(w io.Writer, rep *handlersync.Report) {
	for _, warn := range rep.Warnings {
		fmt.Fprintln(w, "warning:", warn)
	}
	fmt.Fprintf(w, "%s: %d created, %d updated, %d unchanged, %d deleted, %d kept",
		rep.Workflow, rep.Count(handlersync.Create), rep.Count(handlersync.Update), rep.Count(handlersync.Skip),
		rep.Count(handlersync.Delete), rep.Count(handlersync.Keep))
	if rep.DryRun {
		fmt.Fprint(w, " (dry run: nothing written)")
	}
	fmt.Fprintln(w)
}

func (a *app) handlerCreateCmd() *cobra.Command {
	var specs []string
	var capability string
	cmd := &cobra.Command{
		Use:   "create <workflow> <name> <description> <source_type> <handler_type> [-a NAME=TYPE]... [-r capability] < source",
		Short: "Create a handler from source on stdin (mr_kv_handler_create)",
		Long: `Create a handler from the source code on standard input. <source_type> is a
processor name (` + "`jobx version`" + ` lists them: python, node, sh, exec);
<handler_type> is mapper, combiner or reducer. The source is syntax-checked
first. JobX's "-a NAME TYPE" is written -a NAME=TYPE here; without -a, a mapper
gets arguments=list and a combiner or reducer results=list.`,
		Example: `  jobx handler create dev reduce_test_sum "sum values" python reducer -a results=list < sum.py`,
		Args:    cobra.ExactArgs(5),
		RunE: a.storeCmd(func(cmd *cobra.Command, ctx context.Context, st *kvmodel.Store, args []string) error {
			wf, name, desc, sourceType, typ := args[0], args[1], args[2], args[3], args[4]
			if _, err := requireWorkflow(ctx, st, wf); err != nil {
				return err
			}
			role, ok := kvmodel.RoleOf(typ)
			t := role.HandlerType
			if !ok {
				return fmt.Errorf("handler type %q: want mapper, combiner or reducer", typ)
			}
			proc, ok := processors.ByName(sourceType)
			if !ok {
				return fmt.Errorf("source type %q: want one of %s", sourceType, strings.Join(processors.Names(), ", "))
			}
			spec, err := argumentSpec(specs, t)
			if err != nil {
				return err
			}
			src, err := io.ReadAll(a.stdin)
			if err != nil {
				return fmt.Errorf("read source from stdin: %w", err)
			}
			if len(strings.TrimSpace(string(src))) == 0 {
				return fmt.Errorf("no source code on stdin")
			}
			if err := proc.Check(ctx, "<stdin>", src); err != nil {
				return err
			}
			h := &kvmodel.Handler{
				WorkflowName: wf, Name: name, Description: desc, ArgumentSpec: spec,
				SourceType: proc.Name(), SourceCode: string(src), Version: processors.Version(src),
				HandlerType: t, RequiredCapability: capability,
			}
			if err := st.Create(ctx, h); err != nil {
				return err
			}
			if _, err := handlersync.UpdateHandlersState(ctx, st, wf); err != nil {
				return err
			}
			return a.printEntity(h, "source_code")
		}),
	}
	cmd.Flags().StringArrayVarP(&specs, "argument", "a", nil, "an argument_spec entry NAME=TYPE (TYPE may be empty for null)")
	cmd.Flags().StringVarP(&capability, "required-capability", "r", kvmodel.CapabilityNone, "capability a runner must offer")
	return cmd
}

// argumentSpec builds JobX's argument_spec from -a NAME=TYPE flags and
// checks JobX's rule: a mapper names exactly "arguments", a combiner or
// reducer exactly "results".
func argumentSpec(specs []string, typ string) ([][]any, error) {
	want := processors.ArgumentName(typ)
	if len(specs) == 0 {
		return [][]any{{want, "list"}}, nil
	}
	out := make([][]any, 0, len(specs))
	for _, s := range specs {
		name, t, _ := strings.Cut(s, "=")
		if name == "" {
			return nil, fmt.Errorf("-a %q: want NAME=TYPE", s)
		}
		var tv any
		if t != "" {
			tv = t
		}
		out = append(out, []any{name, tv})
	}
	if len(out) != 1 || out[0][0] != want {
		return nil, fmt.Errorf("the argument_spec of a %s must name exactly %q", typ, want)
	}
	return out, nil
}
