package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/jobx/jobx/gateway"
	"github.com/jobx/jobx/internal/manifest"
	"github.com/jobx/jobx/internal/testenv"
	"github.com/jobx/jobx/kvmodel"
	"github.com/jobx/jobx/runner"
	"github.com/jobx/jobx/sandbox/none"
)

const failPy = `"""
Fail on purpose.

**
handler_type: mapper
"""
import sys
print("something broke", file=sys.stderr)
sys.exit(3)
yield MrConfigureToReturn()
`

// uiCluster is a cluster with one runner, examples/dev loaded and a
// workflow "broken" whose job "fail" always fails.
func uiCluster(t *testing.T, gwOpts ...func(*gateway.Options)) *cluster {
	t.Helper()
	c := startCluster(t, gwOpts...)
	c.addRunner()
	if _, err := manifest.Apply(context.Background(), c.store, "../examples/dev", testenv.Logger(t)); err != nil {
		t.Fatal(err)
	}
	c.workflow("broken")
	c.handler("broken", "map_fail", "map/fail.py", failPy)
	c.handler("broken", "reduce_sum", "reduce/sum.py", sumPy)
	c.step("broken", "s_fail", "map_fail", "", "reduce_sum")
	c.job("broken", "fail", "s_fail")
	return c
}

// bareRunner starts a runner "bare" on the none sandbox (handlers run
// unisolated) whose only capability, "bare", no test handler requires: it
// announces itself and runs nothing.
func bareRunner(t *testing.T, c *cluster, mods ...func(*runner.Options)) *runner.Runner {
	t.Helper()
	r, _ := c.addRunner(append([]func(*runner.Options){func(o *runner.Options) {
		sb, err := none.New(none.Options{Dir: filepath.Join(o.Dir, "sandbox"), Log: testenv.Logger(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sb.Close() })
		o.ID, o.Capabilities, o.Sandbox = "bare", []string{"bare"}, sb
	}}, mods...)...)
	return r
}

// runnerSandbox returns the sandbox kind runner id announces.
func runnerSandbox(t *testing.T, c *cluster, id string) string {
	t.Helper()
	runners, err := c.store.Runners(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range runners {
		if r.ID == id {
			return r.Sandbox
		}
	}
	t.Fatalf("runner %s is not announced", id)
	return ""
}

// isolates is whether each sandbox kind isolates handlers.
var isolates = map[string]bool{"namespace": true, "containerd": true, "none": false}

// chromiumPath finds Debian's chromium. A missing browser fails the test
// under CI=true (make deps installs it) and skips it otherwise.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("the browser test needs chromium (apt-get install chromium, or make deps)")
	}
	t.Skip("chromium is not installed (apt-get install chromium); CI=true makes this a failure")
	return ""
}

// browser starts a headless chromium for the test and returns its tab's
// context; it stops when the test ends.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.WindowSize(1280, 1000), chromedp.UserDataDir(t.TempDir()))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	t.Cleanup(func() { cancelBrowser(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser, bound to ctx
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// actionTimeout bounds one step of the browser test.
const actionTimeout = 30 * time.Second

// do runs browser actions within actionTimeout and, on failure, reports
// the page's URL and text.
func do(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, actionTimeout)
	defer cancel()
	if err := chromedp.Do(tctx, actions...); err != nil {
		t.Fatalf("%s: %v\n%s", what, err, pageText(ctx))
	}
}

// get runs one browser action that returns a value, within actionTimeout.
func get[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, actionTimeout)
	defer cancel()
	v, err := chromedp.Run(tctx, a)
	if err != nil {
		t.Fatalf("%s: %v\n%s", what, err, pageText(ctx))
	}
	return v
}

// pageText describes the page for failure messages.
func pageText(ctx context.Context) string {
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	url, _ := chromedp.Run(tctx, chromedp.Location())
	text, _ := chromedp.Run(tctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	return "page " + url + ":\n" + text
}

// text returns the text of the first element matching a CSS selector.
func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	return get(t, ctx, "text of "+sel, chromedp.Text(chromedp.CSS(sel)))
}

// waitJS polls a JavaScript condition in the page.
func waitJS(t *testing.T, ctx context.Context, what, cond string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !get(t, ctx, what, chromedp.Evaluate[bool](`!!(`+cond+`)`)) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s (%s)\n%s", d, what, cond, pageText(ctx))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// css is a CSS selector for chromedp.
type css = chromedp.CSS

// submitFromForm submits job with arguments from a workflow page's form
// and returns the request id the page navigates to.
func submitFromForm(t *testing.T, ctx context.Context, base, wf, job, args string) string {
	t.Helper()
	do(t, ctx, "submit from workflow "+wf,
		chromedp.Navigate(base+"/ui/#/wf/"+wf),
		chromedp.WaitVisible(css(`#submit-form`)),
		chromedp.SetValue(css(`#job-select`), job),
		chromedp.SetValue(css(`#arguments`), args),
		chromedp.Click(css(`#submit-button`)))
	waitJS(t, ctx, "the request page", `location.hash.startsWith("#/request/`+wf+`/")`, 15*time.Second)
	hash := get(t, ctx, "the location", chromedp.Evaluate[string](`location.hash`))
	id := regexp.MustCompile(`[0-9a-f]{40}$`).FindString(hash)
	if id == "" {
		t.Fatalf("request page %q has no request id", hash)
	}
	return id
}

// TestWebUIInABrowser drives the UI in headless chromium: list workflows
// and runners (the one on the none sandbox flagged), read a handler's
// source, submit JobX's two-level job4 from the form, watch it complete
// with its graph and result, open the graph, and see a failed request's
// error. With JOBX_DEMO_DIR set it also writes the
// request page's screenshot and the request's DOT and SVG there (make
// demo-artifacts).
func TestWebUIInABrowser(t *testing.T) {
	ctx := browser(t)
	c := uiCluster(t)

	bareRunner(t, c)
	do(t, ctx, "workflows page", chromedp.Navigate(c.url+"/ui/"), chromedp.WaitVisible(css(`#workflows a[href="#/wf/dev"]`)))
	mustHave(t, "workflows", text(t, ctx, "#workflows"), "dev", "broken", "JobX's development jobs")

	// The runners: bare (none sandbox) flagged, runner1 (testenv's
	// sandbox: namespace, or none where bubblewrap cannot run) only if
	// it is unisolated too.
	waitJS(t, ctx, "both runners listed", `document.querySelector('#runners tr[data-runner="runner1"]') && document.querySelector('#runners tr[data-runner="bare"]')`, 15*time.Second)
	noStrayValues(t, ctx, "the workflows page")
	warning := text(t, ctx, "#runners-warning")
	mustHave(t, "the runners warning", warning, "Handlers run unisolated", "bare", "--sandbox auto")
	for id, kind := range map[string]string{"runner1": runnerSandbox(t, c, "runner1"), "bare": kvmodel.SandboxNone} {
		row := `#runners tr[data-runner="` + id + `"]`
		mustHave(t, id+"'s row", text(t, ctx, row), id, kind)
		badge := get(t, ctx, id+"'s badge", chromedp.Evaluate[string](`(document.querySelector('`+row+` .badge.unisolated') || {}).textContent || ""`))
		if unisolated := !isolates[kind]; unisolated != (badge != "") || unisolated && !strings.Contains(badge, "none: handlers run unisolated") {
			t.Errorf("runner %s on the %s sandbox: badge %q", id, kind, badge)
		}
		if strings.Contains(warning, id) == isolates[kind] {
			t.Errorf("runner %s on the %s sandbox: warning %q", id, kind, warning)
		}
	}

	do(t, ctx, "open dev", chromedp.Click(css(`#workflows a[href="#/wf/dev"]`)),
		chromedp.WaitVisible(css(`#handlers a[href="#/wf/dev/handler/map_test_split"]`)))
	mustHave(t, "jobs", text(t, ctx, "#jobs"), "job4", "job5", "step6_split_argument_1")
	noStrayValues(t, ctx, "the dev workflow's page")
	mustHave(t, "steps", text(t, ctx, "#steps"), "step7_chunk_argument", "map_test_random_yield", "reduce_test_sum")
	do(t, ctx, "open a handler", chromedp.Click(css(`#handlers a[href="#/wf/dev/handler/map_test_split"]`)), chromedp.WaitVisible(css(`#source`)))
	mustHave(t, "source", text(t, ctx, "#source"), "MrConfigureToMap('step7_chunk_argument')")

	id := submitFromForm(t, ctx, c.url, "dev", "job4", `{"arg1": 1000}`)
	waitJS(t, ctx, "job4 to finish", `document.querySelector('#request-state[data-state="done"]')`, 60*time.Second)
	// Request, workflow, job, 3 map and 3 reduce invocations, none pending.
	waitJS(t, ctx, "the final graph", `document.querySelectorAll('#graph svg g.node').length == 9 && !document.querySelector('#graph svg [fill="#e8e8e8"]')`, 15*time.Second)
	if p := text(t, ctx, "#progress-text"); p != "6 / 6 invocations done" {
		t.Errorf("progress %q, want 6 / 6 invocations done", p)
	}
	graphText := get(t, ctx, "graph text", chromedp.Evaluate[string](`document.querySelector('#graph svg').textContent`))
	mustHave(t, "graph", graphText, "Request ("+id[:10]+")", "Job (job4)", "MI ", "RI ", "mapped to", "step reduced by", "stored to", "map_test_random_yield")
	if rows := get(t, ctx, "result rows", chromedp.Evaluate[int](`document.querySelectorAll('#result tbody tr').length`)); rows == 0 {
		t.Errorf("no result rows: %s", text(t, ctx, "#outcome"))
	}
	fills := get(t, ctx, "node colours", chromedp.Evaluate[string](`Array.from(document.querySelectorAll('#graph svg [fill]')).map(e => e.getAttribute('fill')).join(' ')`))
	if !strings.Contains(strings.ToLower(fills), "#b8e6b8") {
		t.Errorf("no node coloured done (#b8e6b8) in the graph: %s", fills)
	}
	// The handlers' log lines, per invocation (the form submits with
	// keep=true): random_yield logs how many intervals it yielded.
	waitJS(t, ctx, "the handler logs", `Array.from(document.querySelectorAll('#logs .invocation-log pre')).some(p => /Yielded \(\d+\) intervals/.test(p.textContent))`, 15*time.Second)
	if dir := os.Getenv("JOBX_DEMO_DIR"); dir != "" {
		writeDemoArtifacts(t, ctx, c, dir, id)
	}

	// The graph on its own.
	do(t, ctx, "open the graph", chromedp.Navigate(c.url+"/request/dev/"+id+"/graph"), chromedp.WaitReady(css(`svg`)))

	// The request is listed on its workflow's page.
	do(t, ctx, "recent requests", chromedp.Navigate(c.url+"/ui/#/wf/dev"),
		chromedp.WaitVisible(css(`#requests-table a[href="#/request/dev/`+id+`"]`)))
	// A blocking request, removed once delivered, is still listed, from
	// the workflow's history, without a link.
	blocked := c.post("dev", "job5", `{"arguments":{"arg1":10}}`, "")
	blocked.pairs(t)
	waitJS(t, ctx, "the delivered request in the history", `Array.from(document.querySelectorAll('#requests-table tr.removed')).some(r => r.textContent.includes('`+
		blocked.header.Get("X-MR-REQUEST-ID")[:10]+`') && !r.querySelector('a'))`, 30*time.Second)

	// A failed request shows its error and stderr.
	failed := submitFromForm(t, ctx, c.url, "broken", "fail", `{"a": 1}`)
	waitJS(t, ctx, "the failure", `document.querySelector('#request-state[data-state="failed"]') && document.querySelector('#error-kind')`, 60*time.Second)
	if kind, stderr := text(t, ctx, "#error-kind"), text(t, ctx, "#stderr"); kind != "handler_failed" || !strings.Contains(stderr, "something broke") {
		t.Errorf("failed request %s: kind %q, stderr %q", failed, kind, stderr)
	}
	waitJS(t, ctx, "a failed node", `document.querySelector('#graph svg [fill="#f4a6a6"]')`, 15*time.Second)

	// Arguments that are not a JSON object never leave the page.
	do(t, ctx, "bad arguments", chromedp.Navigate(c.url+"/ui/#/wf/dev"),
		chromedp.WaitVisible(css(`#submit-form`)),
		chromedp.SetValue(css(`#arguments`), `[1, 2]`),
		chromedp.Click(css(`#submit-button`)))
	waitJS(t, ctx, "the form's error", `document.querySelector('#form-error').textContent.includes("want a JSON object")`, 5*time.Second)
}

// writeDemoArtifacts saves the request page's screenshot and the request's
// DOT and SVG graph in dir.
func writeDemoArtifacts(t *testing.T, ctx context.Context, c *cluster, dir, id string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"job4-request-page.png": get(t, ctx, "screenshot", chromedp.FullScreenshot(100))}
	for _, f := range []string{"dot", "svg"} {
		r := c.do("GET", "/request/dev/"+id+"/graph?format="+f, "", "")
		if r.status != 200 {
			t.Fatalf("graph %s: %d %s", f, r.status, r.raw)
		}
		files["job4-graph."+f] = []byte(r.raw)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("demo artifacts in %s", dir)
}

func mustHave(t *testing.T, what, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("%s does not contain %q:\n%s", what, w, got)
		}
	}
}

// TestUIRoutes covers the UI's files and JSON routes without a browser,
// and that tokens filter and guard them as they do the job routes.
func TestUIRoutes(t *testing.T) {
	c := uiCluster(t, func(o *gateway.Options) {
		o.Tokens = map[string][]string{"dev": {"dev-token"}, "other": {"other-token"}, gateway.AllWorkflows: {"admin"}}
	})
	get := func(path, token string) response {
		t.Helper()
		req, _ := http.NewRequest("GET", c.url+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		r := response{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
		json.Unmarshal(raw, &r.body)
		return r
	}

	if r := get("/ui/", ""); r.status != 200 || !strings.Contains(r.raw, `<script src="app.js">`) {
		t.Fatalf("/ui/: %d %.200s", r.status, r.raw)
	}
	if r := get("/ui/app.js", ""); r.status != 200 || !strings.Contains(r.header.Get("Content-Type"), "javascript") {
		t.Fatalf("/ui/app.js: %d %s", r.status, r.header.Get("Content-Type"))
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if resp, err := noRedirect.Get(c.url + "/ui"); err != nil || resp.StatusCode != 301 || resp.Header.Get("Location") != "/ui/" {
		t.Fatalf("/ui: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	names := func(token string) string {
		r := get("/api/workflows", token)
		var out []string
		for _, w := range r.body["workflows"].([]any) {
			out = append(out, w.(map[string]any)["name"].(string))
		}
		return strings.Join(out, ",")
	}
	if got := names(""); got != "" {
		t.Errorf("workflows without a token: %q", got)
	}
	if got := names("dev-token"); got != "dev" {
		t.Errorf("workflows with dev's token: %q", got)
	}
	if got := names("admin"); got != "broken,dev" {
		t.Errorf("workflows with an all-workflows token: %q", got)
	}
	if r := get("/api/workflows/broken", "dev-token"); r.status != 403 {
		t.Errorf("another workflow's token: %d", r.status)
	}

	wf := get("/api/workflows/dev", "dev-token")
	if wf.status != 200 || len(wf.body["jobs"].([]any)) != 2 || len(wf.body["steps"].([]any)) != 2 || len(wf.body["handlers"].([]any)) != 4 ||
		strings.Contains(wf.raw, "source_code") {
		t.Fatalf("workflow: %d %s", wf.status, wf.raw)
	}
	h := get("/api/workflows/dev/handlers/map_test_split", "dev-token")
	if h.status != 200 || !strings.Contains(h.body["source_code"].(string), "MrConfigureToMap") || h.body["handler_type"] != "mapper" {
		t.Fatalf("handler: %d %s", h.status, h.raw)
	}
	if r := get("/api/workflows/dev/handlers/nope", "dev-token"); r.status != 404 {
		t.Errorf("missing handler: %d", r.status)
	}

	// Requests: newest first, with state and duration.
	submit := func(job, args, query string) string {
		req, _ := http.NewRequest("POST", c.url+"/job/dev/"+job+"?"+query, strings.NewReader(`{"arguments":`+args+`}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer dev-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.Header.Get("X-MR-REQUEST-ID")
	}
	first := submit("job5", `{"arg1":10}`, "keep=true")
	second := submit("job4", `{"arg1":100}`, "keep=true")
	list := get("/api/workflows/dev/requests", "dev-token")
	reqs, _ := list.body["requests"].([]any)
	if list.status != 200 || len(reqs) != 2 {
		t.Fatalf("requests: %d %s", list.status, list.raw)
	}
	newest, oldest := reqs[0].(map[string]any), reqs[1].(map[string]any)
	if newest["request_id"] != second || oldest["request_id"] != first || newest["state"] != "done" || newest["job_name"] != "job4" {
		t.Errorf("requests out of order or wrong: %s", list.raw)
	}
	if d, ok := newest["duration_seconds"].(float64); !ok || d <= 0 || d > 60 {
		t.Errorf("duration %v", newest["duration_seconds"])
	}
	if r := get("/api/workflows/dev/requests?limit=1", "dev-token"); len(r.body["requests"].([]any)) != 1 {
		t.Errorf("limit=1: %s", r.raw)
	}
	if r := get("/api/workflows/dev/requests?limit=0", "dev-token"); r.status != 400 {
		t.Errorf("limit=0: %d", r.status)
	}
	if r := get("/api/workflows/dev/requests", ""); r.status != 401 {
		t.Errorf("requests without a token: %d", r.status)
	}

	// Runners: runner1 (testenv's sandbox, every workflow) and bare (none
	// sandbox, workflows broken and other). A caller sees those serving a
	// workflow it may read, with those workflows only.
	bareRunner(t, c, func(o *runner.Options) { o.Workflows = []string{"broken", "other"} })
	runners := func(token string) map[string]map[string]any {
		t.Helper()
		r := get("/api/runners", token)
		if r.status != 200 || r.body["tokens_required"] != true {
			t.Fatalf("runners: %d %s", r.status, r.raw)
		}
		out := map[string]map[string]any{}
		for _, v := range r.body["runners"].([]any) {
			ri := v.(map[string]any)
			out[ri["id"].(string)] = ri
		}
		return out
	}
	waitFor(t, "bare in the gateway's registry", 10*time.Second, func() bool { return runners("admin")["bare"] != nil })
	all := runners("admin")
	if len(all) != 2 {
		t.Fatalf("runners with an all-workflows token: %v", all)
	}
	r1, bare := all["runner1"], all["bare"]
	if kind := runnerSandbox(t, c, "runner1"); r1["sandbox"] != kind || r1["isolated"] != isolates[kind] || len(r1["workflows"].([]any)) != 0 ||
		fmt.Sprint(r1["capabilities"]) != "[general]" || r1["concurrency"].(float64) < 1 || r1["in_flight"] == nil || r1["host"] == "" {
		t.Errorf("runner1: %v", r1)
	}
	if started, err := time.Parse(time.RFC3339Nano, fmt.Sprint(bare["started"])); bare["sandbox"] != kvmodel.SandboxNone || bare["isolated"] != false ||
		fmt.Sprint(bare["workflows"]) != "[broken other]" || fmt.Sprint(bare["capabilities"]) != "[bare]" || bare["version"] == nil ||
		err != nil || time.Since(started) > time.Minute {
		t.Errorf("bare: %v", bare)
	}
	if got := runners(""); len(got) != 0 {
		t.Errorf("runners without a token: %v", got)
	}
	if got := runners("dev-token"); len(got) != 1 || got["runner1"] == nil {
		t.Errorf("runners with dev's token: %v", got)
	}
	if got := runners("other-token"); len(got) != 2 || fmt.Sprint(got["bare"]["workflows"]) != "[other]" {
		t.Errorf("runners with other's token: %v", got)
	}
	if got := runners("wrong"); len(got) != 0 {
		t.Errorf("runners with an unknown token: %v", got)
	}
}

// noStrayValues fails the test when the page shows a JavaScript null or
// undefined as text (a missing field rendered; the workflows page once
// showed a stray "null").
func noStrayValues(t *testing.T, ctx context.Context, page string) {
	t.Helper()
	body := text(t, ctx, "main")
	if m := regexp.MustCompile(`\b(null|undefined|NaN)\b`).FindString(body); m != "" {
		t.Errorf("%s shows %q:\n%s", page, m, body)
	}
}
