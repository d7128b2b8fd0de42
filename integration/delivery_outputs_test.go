package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jobx/jobx/internal/notifications"
	"github.com/jobx/jobx/internal/testenv"
	"github.com/jobx/jobx/kvmodel"
	"github.com/jobx/jobx/runner"
)

func TestResultWritersAndNotifications(t *testing.T) {
	smtp := testenv.SMTP(t)
	// The notification listener jobx notify listen runs.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var printed testenv.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go notifications.Listen(ctx, ln, &printed)
	// A real HTTP receiver for the http result writer.
	var mu sync.Mutex
	var posted []byte
	var postedHeader http.Header
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		posted, _ = io.ReadAll(r.Body)
		postedHeader = r.Header
	}))
	defer receiver.Close()

	c := startCluster(t)
	c.addRunner(func(o *runner.Options) { o.SMTPAddr, o.SMTPFrom = smtp.Addr, "jobx@example.com" })
	wf := &kvmodel.Workflow{Name: "wf", Description: "outputs", Notifications: &kvmodel.NotifyConfig{
		HTTP: "http://" + ln.Addr().String() + "/", Email: []string{"ops@example.com"}, OnCompletion: true}}
	if err := c.store.Create(context.Background(), wf); err != nil {
		t.Fatal(err)
	}
	c.handler("wf", "map_yield", "map/yield.py", strings.Replace(yieldPy, "yield MrConfigureToReturn()", "NOTIFY.warning('disk at %d%%', 91)\nyield MrConfigureToReturn()", 1))
	c.handler("wf", "reduce_sum", "reduce/sum.py", sumPy)
	c.handler("wf", "map_boom", "map/boom.py", "\"\"\"\nFail.\n\n**\nhandler_type: mapper\n\"\"\"\nraise ValueError('boom')\nyield MrConfigureToReturn()\n")
	c.step("wf", "chunk", "map_yield", "", "reduce_sum")
	c.step("wf", "boom", "map_boom", "", "reduce_sum")
	dir := t.TempDir()
	for name, w := range map[string]*kvmodel.WriterConfig{
		"to_file": {Kind: "file", Path: dir}, "to_email": {Kind: "email", To: []string{"results@example.com"}},
		"to_http": {Kind: "http", URL: receiver.URL}, "to_nowhere": {Kind: "http", URL: "http://127.0.0.1:1/"},
	} {
		if err := c.store.Create(context.Background(), &kvmodel.Job{Name: name, WorkflowName: "wf", Description: name, InitialStepName: "chunk", ResultWriter: w}); err != nil {
			t.Fatal(err)
		}
	}
	c.job("wf", "boom", "boom")

	writerOf := func(r response) map[string]any {
		id := r.header.Get("X-MR-REQUEST-ID")
		var w map[string]any
		waitFor(t, "the writer's status on request "+id, 30*time.Second, func() bool {
			w, _ = c.do("GET", "/request/wf/"+id, "", "").body["result_writer"].(map[string]any)
			return w != nil
		})
		return w
	}
	// file
	r := c.post("wf", "to_file", `{"arguments":{"n":4}}`, "keep=true")
	assertPairs(t, r.pairs(t), sumsOf(4))
	if w := writerOf(r); w["state"] != "written" {
		t.Fatalf("file writer: %v", w)
	}
	b, err := os.ReadFile(filepath.Join(dir, "wf", r.header.Get("X-MR-REQUEST-ID")+".json"))
	var pairs [][]int
	if err != nil || json.Unmarshal(b, &pairs) != nil || len(pairs) != 3 {
		t.Fatalf("file: %s %v", b, err)
	}
	// email
	r = c.post("wf", "to_email", `{"arguments":{"n":4}}`, "keep=true")
	if w := writerOf(r); w["state"] != "written" {
		t.Fatalf("email writer: %v", w)
	}
	found := false
	for _, m := range smtp.Inbox() {
		if m.To[0] == "results@example.com" && strings.Contains(string(m.Data), `filename="result.json"`) {
			found = true
		}
	}
	if !found {
		t.Fatal("no result mail")
	}
	// http
	r = c.post("wf", "to_http", `{"arguments":{"n":4}}`, "keep=true")
	if w := writerOf(r); w["state"] != "written" {
		t.Fatalf("http writer: %v", w)
	}
	mu.Lock()
	if postedHeader.Get("X-REQUEST-ID") != r.header.Get("X-MR-REQUEST-ID") || !bytes.HasPrefix(posted, []byte("[[")) {
		t.Fatalf("http receiver got %s %v", posted, postedHeader)
	}
	mu.Unlock()
	// A writer that fails is recorded; the result is still fetchable.
	r = c.post("wf", "to_nowhere", `{"arguments":{"n":4}}`, "blocking=false&keep=true")
	if w := writerOf(r); w["state"] != "failed" || !strings.Contains(w["error"].(string), "127.0.0.1:1") {
		t.Fatalf("failing writer: %v", w)
	}
	assertPairs(t, c.do("GET", r.header.Get("Location"), "", "").pairs(t), sumsOf(4))
	// A failure is notified.
	c.post("wf", "boom", `{"arguments":{}}`, "")
	waitFor(t, "the notifications", 10*time.Second, func() bool {
		out := printed.String()
		return strings.Contains(out, "disk at 91%") && strings.Contains(out, "HANDLER=[map_boom]") && strings.Contains(out, "is done")
	})
	for _, line := range strings.Split(strings.TrimSpace(printed.String()), "\n") {
		if strings.Contains(line, "disk at 91%") && !strings.Contains(line, "MR_HANDLER.map_yield") {
			t.Fatalf("handler notification line lacks its name: %q", line)
		}
	}
	mails := 0
	for _, m := range smtp.Inbox() {
		if m.To[0] == "ops@example.com" {
			mails++
		}
	}
	if mails == 0 {
		t.Fatal("no notification mail")
	}
}
