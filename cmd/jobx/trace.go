package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jobx/jobx/kvmodel"
	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func (a *app) traceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "trace",
		Short: "Look into a request that is still kept (JobX's tracing scripts)",
	}
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
			var out []session
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
