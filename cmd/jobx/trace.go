package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jobx/jobx/internal/trace"
	"github.com/jobx/jobx/kvmodel"
	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func (a *app) traceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "trace",
		Short: "Look into a request that is still kept (JobX's tracing scripts)",
	}
	load := func(ctx context.Context, st *kvmodel.Store, args []string, data bool) (*trace.Graph, error) {
		g, err := trace.Load(ctx, st, args[0], args[1], data)
		if errors.Is(err, kvmodel.ErrNotFound) {
			return nil, notFound(err, "request %s of workflow %s (requests are cleaned up once delivered; submit with --keep to trace one)", args[1], args[0])
		}
		return g, err
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "tree <workflow> <request_id>",
		Short: "Print a request's invocation tree (mr_get_invocation_flat_list)",
		Long: `Print the request's invocations as an indented tree: M (map) or R (reduce), the
invocation id (10 digits), which datasets exist ([ACR]: arguments, post_combine,
post_reduce; '-' when absent), the step, the handler and the state. A reduce
invocation follows the children of the map invocation it reduced.`,
		Example: `  jobx trace tree dev 3c74e0d5...
  jobx trace tree dev 3c74e0d5... -o json`,
		Args: cobra.ExactArgs(2),
		RunE: a.storeCmd(func(cmd *cobra.Command, ctx context.Context, st *kvmodel.Store, args []string) error {
			g, err := load(ctx, st, args, false)
			if err != nil {
				return err
			}
			if a.output == "json" {
				return writeJSON(a.stdout, g)
			}
			g.Tree(a.stdout)
			return nil
		}),
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "dump <workflow> <request_id>",
		Short: "Print the tree with every invocation's data and errors (mr_get_invocation_graph)",
		Long: `Print the request's tree with each map invocation's arguments, combined and
reduced data, and each failed invocation's error and stderr tail.`,
		Example: `  jobx trace dump dev 3c74e0d5...`,
		Args:    cobra.ExactArgs(2),
		RunE: a.storeCmd(func(cmd *cobra.Command, ctx context.Context, st *kvmodel.Store, args []string) error {
			g, err := load(ctx, st, args, true)
			if err != nil {
				return err
			}
			if a.output == "json" {
				return writeJSON(a.stdout, g)
			}
			g.Dump(a.stdout)
			return nil
		}),
	})
	var format string
	graph := &cobra.Command{
		Use:   "graph <workflow> <request_id>",
		Short: "Print the request's invocation graph as Graphviz DOT, SVG or PNG (mr_draw_invocation_graph)",
		Long: `Print the request's physical invocation graph: request, workflow and job nodes,
map (MI) and reduce (RI) invocations coloured by state, edges "mapped to",
"data reduced by", "step reduced by" and "stored to". --format png needs
Graphviz's dot; without it, svg comes from a simple built-in layout. -o json
prints the graph as trace tree -o json does.`,
		Example: `  jobx trace graph dev 3c74e0d5... > request.dot
  jobx trace graph dev 3c74e0d5... --format svg > request.svg`,
		Args: cobra.ExactArgs(2),
		RunE: a.storeCmd(func(cmd *cobra.Command, ctx context.Context, st *kvmodel.Store, args []string) error {
			g, err := load(ctx, st, args, false)
			if err != nil {
				return err
			}
			if a.output == "json" {
				return writeJSON(a.stdout, g)
			}
			if format == "dot" {
				g.DOT(a.stdout)
				return nil
			}
			out, err := g.Render(ctx, format)
			if err != nil {
				return err
			}
			_, err = a.stdout.Write(out)
			return err
		}),
	}
	graph.Flags().StringVar(&format, "format", "dot", "dot, svg or png")
	cmd.AddCommand(graph)
	cmd.AddCommand(&cobra.Command{
		Use:   "sessions <workflow> <request_id>",
		Short: "Dump the sessions of every map invocation of a request (mr_get_request_sessions)",
		Long: `Print, for every map invocation of the request that wrote its session, the
invocation id, its step, and the session's key/value pairs. The request must
still be kept (submit with keep=true to keep it past delivery).`,
		Example: `  jobx trace sessions dev 3c74e0d5...
  jobx trace sessions dev 3c74e0d5... -o json`,
		Args: cobra.ExactArgs(2),
		RunE: a.storeCmd(func(cmd *cobra.Command, ctx context.Context, st *kvmodel.Store, args []string) error {
			wf, id := args[0], args[1]
			req := &kvmodel.Request{WorkflowName: wf, ID: id}
			if err := st.Get(ctx, req); err != nil {
				return notFound(err, "request %s of workflow %s", id, wf)
			}
			type session struct {
				Invocation string         `json:"invocation_id"`
				Step       string         `json:"step"`
				Values     map[string]any `json:"values"`
				Order      []string       `json:"-"`
			}
			out := []session{}
			queue := []string{req.InvocationID}
			for len(queue) > 0 {
				m := queue[0]
				queue = queue[1:]
				inv := &kvmodel.Invocation{WorkflowName: wf, ID: m}
				if err := st.Get(ctx, inv); err != nil {
					return err
				}
				children, err := st.Children(ctx, wf, m)
				if err != nil {
					return err
				}
				queue = append(queue, children...)
				prefix := kvmodel.SessionPrefix(wf, m)
				resp, err := st.Client().Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
				if err != nil {
					return err
				}
				if len(resp.Kvs) == 0 {
					continue
				}
				s := session{Invocation: m, Step: inv.StepName, Values: map[string]any{}}
				for _, kv := range resp.Kvs {
					var v any
					json.Unmarshal(kv.Value, &v)
					k := string(kv.Key[len(prefix):])
					s.Values[k] = v
					s.Order = append(s.Order, k)
				}
				out = append(out, s)
			}
			if a.output == "json" {
				return writeJSON(a.stdout, out)
			}
			if len(out) == 0 {
				fmt.Fprintln(a.stdout, "no sessions")
			}
			for _, s := range out {
				fmt.Fprintf(a.stdout, "%s %s\n", s.Invocation, s.Step)
				for _, k := range s.Order {
					v, _ := json.Marshal(s.Values[k])
					fmt.Fprintf(a.stdout, "  %s = %s\n", k, v)
				}
			}
			return nil
		}),
	})
	return cmd
}
