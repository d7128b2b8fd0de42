package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/jobx/jobx/kvmodel"
	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// jobx import jobx: a JobX deployment's definitions (workflows, jobs,
// steps, handlers), kept in etcd's v2 keyspace under /entities, brought
// into jobx's etcd. JobX's entities and jobx's share their keys and field
// names, so each is decoded as jobx's entity of the same key. Requests and
// invocations are runtime state and stay behind.

// v2Node is a node of etcd's v2 API (GET /v2/keys/...?recursive=true).
type v2Node struct {
	Key   string    `json:"key"`
	Value string    `json:"value"`
	Dir   bool      `json:"dir"`
	Nodes []*v2Node `json:"nodes"`
}

// importDecision is what the import does with one entity.
type importDecision struct {
	Action string `json:"action"` // create, same, conflict, skip, invalid
	Entity string `json:"entity"` // e.g. "handler dev/map_x"
	Reason string `json:"reason,omitempty"`
	entity kvmodel.Entity
	value  []byte
}

func (a *app) importCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "import",
		Short: "Bring definitions over from another system (JobX)",
	}
	var from string
	var dryRun bool
	jx := &cobra.Command{
		Use:   "jobx --from <v2 endpoint or dump file>",
		Short: "Import a JobX deployment's workflows, jobs, steps and handlers (etcd v2 keyspace)",
		Long: `Read a JobX deployment's definitions from etcd's v2 keyspace (/entities): from a
v2 endpoint (--from http://host:2379, etcd started with --enable-v2), or from a dump
of it, the answer of GET /v2/keys/entities?recursive=true saved to a file. Workflows,
jobs, steps and handlers are created in jobx's etcd (--etcd); requests and
invocations are runtime state and are left behind.

Every entity is decided first, one line each: create (not in jobx), same (already
there, identical), conflict (there, different), invalid (not a valid entity, or a
step or job naming what exists nowhere), skip (not a definition). A conflict or an
invalid entity fails the import and nothing is written; --dry-run writes nothing
in any case. The writes are create-only, and an import that fails part-way takes
back what it wrote.`,
		Example: `  jobx import jobx --from http://jobx-etcd:4001 --dry-run
  jobx import jobx --from entities.json`,
		Args: cobra.NoArgs,
		RunE: a.storeCmd(func(cmd *cobra.Command, ctx context.Context, st *kvmodel.Store, _ []string) error {
			if from == "" {
				return errors.New("--from: give a JobX etcd v2 endpoint (http://host:port) or a dump file")
			}
			root, err := readV2(ctx, from)
			if err != nil {
				return err
			}
			decisions, err := decideImport(ctx, st, root)
			if err != nil {
				return err
			}
			failed := printImport(a, decisions, dryRun)
			if failed > 0 {
				return fmt.Errorf("%d entities cannot be imported (above); nothing was written", failed)
			}
			if dryRun {
				return nil
			}
			n, err := writeImport(ctx, st, decisions)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stderr, "imported %d entities\n", n)
			return nil
		}),
	}
	jx.Flags().StringVar(&from, "from", "", "JobX's etcd v2 endpoint (http://host:port) or a file holding GET /v2/keys/entities?recursive=true")
	jx.Flags().BoolVarP(&dryRun, "dry-run", "s", false, "print the decisions, write nothing")
	cmd.AddCommand(jx)
	return cmd
}

// readV2 reads the /entities tree from a v2 endpoint or a dump file.
func readV2(ctx context.Context, from string) (*v2Node, error) {
	var body []byte
	if strings.HasPrefix(from, "http://") || strings.HasPrefix(from, "https://") {
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(from, "/")+"/v2/keys/entities?recursive=true&sorted=true", nil)
		if err != nil {
			return nil, fmt.Errorf("--from %s: %w", from, err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, fmt.Errorf("--from %s: %w", from, err)
		}
		defer resp.Body.Close()
		if body, err = io.ReadAll(resp.Body); err != nil {
			return nil, fmt.Errorf("--from %s: %w", from, err)
		}
		if resp.StatusCode == http.StatusNotFound && bytes.Contains(body, []byte(`"errorCode":100`)) {
			return nil, fmt.Errorf("--from %s: the v2 keyspace has no /entities: nothing of JobX's is there", from)
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("--from %s: GET /v2/keys/entities: %s: %s (is etcd serving the v2 API, --enable-v2?)", from, resp.Status, bytes.TrimSpace(body))
		}
	} else {
		var err error
		if body, err = os.ReadFile(from); err != nil {
			return nil, fmt.Errorf("--from: %w", err)
		}
	}
	var doc struct {
		Node *v2Node `json:"node"`
	}
	if err := json.Unmarshal(body, &doc); err != nil || doc.Node == nil {
		return nil, fmt.Errorf("--from %s: not an etcd v2 answer (want {\"node\": {...}} from GET /v2/keys/entities?recursive=true): %v", from, err)
	}
	return doc.Node, nil
}

// newEntity returns an empty jobx entity of a JobX class, nil for classes
// that are not definitions.
func newEntity(class string) kvmodel.Entity {
	switch class {
	case "workflow":
		return &kvmodel.Workflow{}
	case "job":
		return &kvmodel.Job{}
	case "step":
		return &kvmodel.Step{}
	case "handler":
		return &kvmodel.Handler{}
	}
	return nil
}

// decideImport decides, for every entity under root, what the import does.
func decideImport(ctx context.Context, st *kvmodel.Store, root *v2Node) ([]*importDecision, error) {
	var leaves []*v2Node
	var walk func(n *v2Node)
	walk = func(n *v2Node) {
		if !n.Dir {
			leaves = append(leaves, n)
		}
		for _, c := range n.Nodes {
			walk(c)
		}
	}
	walk(root)
	sort.Slice(leaves, func(i, j int) bool { return leaves[i].Key < leaves[j].Key })

	var out []*importDecision
	skipped := map[string]int{}
	imported := map[string]kvmodel.Entity{} // by key
	for _, n := range leaves {
		rest, ok := strings.CutPrefix(n.Key, kvmodel.EntityRoot)
		class, _, _ := strings.Cut(rest, "/")
		e := newEntity(class)
		if !ok || e == nil {
			skipped[class]++
			continue
		}
		d := &importDecision{Entity: class + " " + strings.TrimPrefix(rest, class+"/"), entity: e}
		out = append(out, d)
		if err := kvmodel.Decode(e, n.Key, []byte(n.Value), 0); err != nil {
			d.Action, d.Reason = "invalid", err.Error()
			continue
		}
		if kvmodel.Key(e) != n.Key {
			d.Action, d.Reason = "invalid", fmt.Sprintf("its key %s is not a %s's (want %s)", n.Key, class, kvmodel.Key(e))
			continue
		}
		v, err := kvmodel.Encode(e)
		if err != nil {
			d.Action, d.Reason = "invalid", err.Error()
			continue
		}
		d.value = v
		imported[n.Key] = e
	}
	// References: each step's handlers and each job's initial step, in the
	// import or in jobx already.
	exists := func(e kvmodel.Entity) (bool, error) {
		if _, ok := imported[kvmodel.Key(e)]; ok {
			return true, nil
		}
		err := st.Get(ctx, e)
		if errors.Is(err, kvmodel.ErrNotFound) {
			return false, nil
		}
		return err == nil, err
	}
	for _, d := range out {
		if d.Action != "" {
			continue
		}
		var missing []string
		switch e := d.entity.(type) {
		case *kvmodel.Step:
			for _, h := range []string{e.MapHandlerName, e.CombineHandlerName, e.ReduceHandlerName} {
				if h == "" {
					continue
				}
				ok, err := exists(&kvmodel.Handler{WorkflowName: e.WorkflowName, Name: h})
				if err != nil {
					return nil, err
				}
				if !ok {
					missing = append(missing, "handler "+h)
				}
			}
		case *kvmodel.Job:
			ok, err := exists(&kvmodel.Step{WorkflowName: e.WorkflowName, Name: e.InitialStepName})
			if err != nil {
				return nil, err
			}
			if !ok {
				missing = append(missing, "step "+e.InitialStepName)
			}
		}
		if len(missing) > 0 {
			d.Action, d.Reason = "invalid", "names "+strings.Join(missing, ", ")+", which neither the import nor jobx has"
			continue
		}
		// What jobx has under the same key.
		resp, err := st.Client().Get(ctx, kvmodel.Key(d.entity))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", d.Entity, err)
		}
		switch {
		case len(resp.Kvs) == 0:
			d.Action = "create"
		case sameEntity(d.entity, resp.Kvs[0].Value):
			d.Action = "same"
		default:
			d.Action, d.Reason = "conflict", "jobx has a different one; change or delete it there first (jobx "+strings.Fields(d.Entity)[0]+" get)"
		}
	}
	for class, n := range skipped {
		out = append(out, &importDecision{Action: "skip", Entity: fmt.Sprintf("%d %s entries", n, class), Reason: "runtime state, not a definition"})
	}
	return out, nil
}

// sameEntity reports whether stored (jobx's value) holds what e holds.
func sameEntity(e kvmodel.Entity, stored []byte) bool {
	other := newEntity(e.Class())
	if kvmodel.Decode(other, kvmodel.Key(e), stored, 0) != nil {
		return false
	}
	a, _ := kvmodel.Encode(e)
	b, _ := kvmodel.Encode(other)
	return bytes.Equal(a, b)
}

// printImport prints the decisions and returns how many fail the import.
func printImport(a *app, decisions []*importDecision, dryRun bool) (failed int) {
	counts := map[string]int{}
	for _, d := range decisions {
		counts[d.Action]++
		if d.Action == "conflict" || d.Action == "invalid" {
			failed++
		}
	}
	if a.output == "json" {
		writeJSON(a.stdout, decisions)
	} else {
		for _, d := range decisions {
			line := fmt.Sprintf("%-8s  %s", d.Action, d.Entity)
			if d.Reason != "" {
				line += ": " + d.Reason
			}
			fmt.Fprintln(a.stdout, line)
		}
	}
	note := ""
	if dryRun {
		note = " (dry run: nothing written)"
	}
	fmt.Fprintf(a.stderr, "%d to create, %d already there, %d conflicts, %d invalid, %d skipped%s\n",
		counts["create"], counts["same"], counts["conflict"], counts["invalid"], counts["skip"], note)
	return failed
}

// writeImport creates the entities decided "create", create-only, a
// transaction at a time; when one fails it deletes what the earlier ones
// wrote, so that nothing is left half-imported.
func writeImport(ctx context.Context, st *kvmodel.Store, decisions []*importDecision) (int, error) {
	var todo []*importDecision
	for _, d := range decisions {
		if d.Action == "create" {
			todo = append(todo, d)
		}
	}
	var written []string
	rollback := func(cause error) (int, error) {
		for _, k := range written {
			if _, err := st.Client().Delete(ctx, k); err != nil {
				return 0, fmt.Errorf("%w; taking back what was written failed too, at %s: %v (delete what this import created by hand)", cause, k, err)
			}
		}
		return 0, fmt.Errorf("%w; nothing was imported", cause)
	}
	const maxOps, maxBytes = 64, 1 << 20
	for start := 0; start < len(todo); {
		var cmps []clientv3.Cmp
		var puts []clientv3.Op
		var keys []string
		size := 0
		end := start
		for ; end < len(todo) && len(puts) < maxOps && (len(puts) == 0 || size+len(todo[end].value) < maxBytes); end++ {
			k := kvmodel.Key(todo[end].entity)
			cmps = append(cmps, clientv3.Compare(clientv3.Version(k), "=", 0))
			puts = append(puts, clientv3.OpPut(k, string(todo[end].value)))
			keys = append(keys, k)
			size += len(todo[end].value)
		}
		resp, err := st.Client().Txn(ctx).If(cmps...).Then(puts...).Commit()
		if err != nil {
			return rollback(fmt.Errorf("write: %w", err))
		}
		if !resp.Succeeded {
			return rollback(errors.New("an entity being imported was created in jobx meanwhile; run the import again"))
		}
		written = append(written, keys...)
		start = end
	}
	return len(written), nil
}
