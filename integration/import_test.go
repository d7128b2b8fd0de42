package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jobx/jobx/internal/testenv"
	"github.com/jobx/jobx/kvmodel"
)

// etcdV2Version is the etcd that serves JobX's v2 keyspace in the import
// test: 3.5 is the last etcd with the v2 API (--enable-v2), built from the
// Go module proxy like every module here.
const etcdV2Version = "v3.5.36"

// etcdV2Binary builds etcd etcdV2Version once (cached in the temporary
// directory across runs) and returns its path.
var etcdV2Binary = func() func(t *testing.T) string {
	var once sync.Once
	var bin string
	var err error
	return func(t *testing.T) string {
		t.Helper()
		once.Do(func() {
			dir := filepath.Join(os.TempDir(), "jobx-etcd-"+etcdV2Version)
			bin = filepath.Join(dir, "etcd")
			if _, e := os.Stat(bin); e == nil {
				return
			}
			if err = os.MkdirAll(dir, 0o755); err != nil {
				return
			}
			files := map[string]string{
				"go.mod":  "module etcdv2\n\ngo 1.23\n\nrequire go.etcd.io/etcd/server/v3 " + etcdV2Version + "\n",
				"main.go": "package main\n\nimport (\n\t\"os\"\n\n\t\"go.etcd.io/etcd/server/v3/etcdmain\"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n",
			}
			for name, body := range files {
				if err = os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
					return
				}
			}
			for _, args := range [][]string{{"mod", "tidy"}, {"build", "-o", bin + ".tmp", "."}} {
				cmd := exec.Command("go", args...)
				cmd.Dir = dir
				if out, e := cmd.CombinedOutput(); e != nil {
					err = fmt.Errorf("go %s (etcd %s): %v: %s", strings.Join(args, " "), etcdV2Version, e, out)
					return
				}
			}
			err = os.Rename(bin+".tmp", bin)
		})
		if err != nil {
			t.Fatal(err)
		}
		return bin
	}
}()

// startEtcdV2 starts etcd 3.5 with the v2 API and returns its client URL.
func startEtcdV2(t *testing.T) string {
	bin := etcdV2Binary(t)
	addrs := testenv.FreeAddrs(t, 2)
	client, peer := "http://"+addrs[0], "http://"+addrs[1]
	cmd := exec.Command(bin, "--enable-v2", "--data-dir", t.TempDir(), "--name", "jobx-v2",
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "jobx-v2="+peer)
	out := &testenv.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitFor(t, "etcd "+etcdV2Version+" to serve v2", time.Minute, func() bool {
		r, err := http.Get(client + "/v2/keys/")
		if err == nil {
			r.Body.Close()
		}
		return err == nil && r.StatusCode == http.StatusOK
	})
	return client
}

// v2Put writes a key as JobX's model layer did: a form PUT of the JSON of
// the fields but the key field, create-only (prevExist=false).
func v2Put(t *testing.T, endpoint, key string, fields map[string]any) {
	t.Helper()
	v, _ := json.Marshal(fields)
	form := url.Values{"value": {string(v)}, "prevExist": {"false"}}
	req, _ := http.NewRequest(http.MethodPut, endpoint+"/v2/keys"+key, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("v2 PUT %s: %s %s", key, resp.Status, body)
	}
}

// loadJobX writes a JobX deployment into the v2 keyspace as JobX's scripts
// (mr_kv_workflow_create, mr_kv_handler_store, mr_kv_step_create,
// mr_kv_job_create) and one request left it.
func loadJobX(t *testing.T, endpoint string) {
	v2Put(t, endpoint, "/entities/workflow/legacy", map[string]any{"description": "JobX's dev workflow", "handlers_state": "abc"})
	handler := func(name, typ, arg, src string) {
		v2Put(t, endpoint, "/entities/handler/legacy/"+name, map[string]any{
			"workflow_name": "legacy", "description": name, "argument_spec": [][]any{{arg, "list"}},
			"source_type": "python", "source_code": src, "version": "v-" + name, "handler_type": typ, "required_capability": "none"})
	}
	// The source as mr_kv_handler_store stored it: the whole file, its
	// docstring header included.
	handler("map_double", "mapper", "arguments", "\"\"\"\nDouble every value.\n\n**\nhandler_type: mapper\n\"\"\"\nyield MrConfigureToReturn()\nfor k, v in arguments:\n    yield (k, v * 2)\n")
	handler("reduce_sum", "reducer", "results", "\"\"\"\nSum each key's values.\n\n**\nhandler_type: reducer\n\"\"\"\nfor k, vs in results:\n    yield (k, sum(vs))\n")
	v2Put(t, endpoint, "/entities/step/legacy/double", map[string]any{
		"workflow_name": "legacy", "description": "double", "map_handler_name": "map_double", "combine_handler_name": nil, "reduce_handler_name": "reduce_sum"})
	v2Put(t, endpoint, "/entities/job/legacy/double", map[string]any{
		"workflow_name": "legacy", "description": "double every argument", "initial_step_name": "double"})
	v2Put(t, endpoint, "/entities/request/legacy/0123456789abcdef0123456789abcdef01234567", map[string]any{
		"workflow_name": "legacy", "job_name": "double", "invocation_id": "1123456789abcdef0123456789abcdef01234567", "is_done": true, "is_blocking": true})
}

// TestImportJobXFromItsV2Keyspace imports a JobX deployment from a real
// etcd serving the v2 API: a dry run first (its report, nothing written),
// then the import, whose job runs on jobx; a second import finds the same;
// a conflict or a dangling reference fails it with nothing written, and a
// v2 dump file works as the endpoint does.
func TestImportJobXFromItsV2Keyspace(t *testing.T) {
	v2 := startEtcdV2(t)
	loadJobX(t, v2)
	c := startCluster(t)
	c.addRunner()
	bin := jobxBinary(t)
	jobx := func(args ...string) (string, string, error) {
		cmd := exec.Command(bin, append([]string{"--etcd", c.etcd}, args...)...)
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		return out.String(), errb.String(), err
	}
	entities := func() int {
		n := 0
		for _, kv := range mustList(t, c, kvmodel.EntityRoot) {
			if strings.Contains(kv[0], "/legacy") {
				n++
			}
		}
		return n
	}

	out, errOut, err := jobx("import", "jobx", "--from", v2, "--dry-run")
	if err != nil {
		t.Fatalf("dry run: %v\n%s%s", err, out, errOut)
	}
	for _, want := range []string{"create    workflow legacy", "create    handler legacy/map_double", "create    step legacy/double",
		"create    job legacy/double", "skip      1 request entries: runtime state"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run report lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errOut, "5 to create, 0 already there, 0 conflicts, 0 invalid, 1 skipped (dry run: nothing written)") {
		t.Errorf("dry run summary: %s", errOut)
	}
	if n := entities(); n != 0 {
		t.Fatalf("the dry run wrote %d entities", n)
	}

	if out, errOut, err = jobx("import", "jobx", "--from", v2); err != nil || !strings.Contains(errOut, "imported 5 entities") {
		t.Fatalf("import: %v\n%s%s", err, out, errOut)
	}
	// The imported job runs on jobx, JobX's handlers unchanged.
	assertPairs(t, c.post("legacy", "double", `{"arguments":{"a":1,"b":20}}`, "").pairs(t), map[string]string{`"a"`: "2", `"b"`: "40"})

	if out, _, err = jobx("import", "jobx", "--from", v2); err != nil || strings.Count(out, "same ") != 5 {
		t.Fatalf("a second import: %v\n%s", err, out)
	}

	// A conflict (jobx's job differs) and a step naming a missing handler:
	// the import fails and writes nothing, the new workflow included.
	ctx := context.Background()
	job := &kvmodel.Job{WorkflowName: "legacy", Name: "double"}
	if err := c.store.Get(ctx, job); err != nil {
		t.Fatal(err)
	}
	job.Description = "changed in jobx"
	if err := c.store.Update(ctx, job); err != nil {
		t.Fatal(err)
	}
	v2Put(t, v2, "/entities/workflow/second", map[string]any{"description": "another"})
	v2Put(t, v2, "/entities/step/second/s", map[string]any{"workflow_name": "second", "description": "s", "map_handler_name": "map_gone", "reduce_handler_name": "reduce_gone"})
	out, errOut, err = jobx("import", "jobx", "--from", v2)
	if err == nil || !strings.Contains(out, "conflict  job legacy/double") || !strings.Contains(out, "invalid   step second/s: names handler map_gone, handler reduce_gone") ||
		!strings.Contains(errOut, "nothing was written") {
		t.Fatalf("a conflicting import: %v\n%s%s", err, out, errOut)
	}
	if err := c.store.Get(ctx, &kvmodel.Workflow{Name: "second"}); err == nil {
		t.Fatal("a failed import wrote workflow second")
	}

	// A dump of the v2 keyspace is as good as the endpoint.
	resp, err := http.Get(v2 + "/v2/keys/entities?recursive=true")
	if err != nil {
		t.Fatal(err)
	}
	dump, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	file := filepath.Join(t.TempDir(), "entities.json")
	os.WriteFile(file, dump, 0o644)
	if out, _, err = jobx("import", "jobx", "--from", file, "--dry-run"); err == nil || !strings.Contains(out, "create    workflow second") {
		t.Fatalf("import from a dump: %v\n%s", err, out)
	}
}
