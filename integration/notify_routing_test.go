package integration

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jobx/jobx/internal/notifications"
	"github.com/jobx/jobx/internal/testenv"
	"github.com/jobx/jobx/kvmodel"
)

// TestHandlerNotifyLinesAreRoutedByTheRunner: a shell handler's bare
// JOBX-NOTIFY line reaches its workflow's channel, named after the handler,
// and a line claiming another workflow cannot reach that workflow's channel.
func TestHandlerNotifyLinesAreRoutedByTheRunner(t *testing.T) {
	listen := func() (string, *testenv.Buffer) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var out testenv.Buffer
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		go notifications.Listen(ctx, ln, &out)
		return "http://" + ln.Addr().String() + "/", &out
	}
	ownURL, own := listen()
	otherURL, other := listen()
	c := startCluster(t)
	c.addRunner()
	for name, u := range map[string]string{"wf": ownURL, "victim": otherURL} {
		if err := c.store.Create(context.Background(), &kvmodel.Workflow{Name: name, Description: name, Notifications: &kvmodel.NotifyConfig{HTTP: u}}); err != nil {
			t.Fatal(err)
		}
	}
	c.handler("wf", "map_sh", "map/map_sh.sh", "#!/bin/sh\n# Notify.\n#\n# **\n# handler_type: mapper\n"+
		`echo 'JOBX-NOTIFY {"level": "warning", "message": "bare line from sh"}' >&2`+"\n"+
		`echo 'JOBX-NOTIFY {"level": "error", "message": "spoofed", "workflow": "victim", "handler": "someone_else"}' >&2`+"\n"+
		"printf '{\"jobx\":\"return\"}\\n'\n")
	c.handler("wf", "reduce_sum", "reduce/sum.py", sumPy)
	c.step("wf", "s", "map_sh", "", "reduce_sum")
	c.job("wf", "j", "s")
	c.post("wf", "j", `{"arguments":{}}`, "")
	waitFor(t, "both handler notifications on wf's channel", 10*time.Second, func() bool {
		out := own.String()
		return strings.Contains(out, "MR_HANDLER.map_sh") && strings.Contains(out, "bare line from sh") && strings.Contains(out, "spoofed")
	})
	for _, line := range strings.Split(strings.TrimSpace(own.String()), "\n") {
		if strings.Contains(line, "spoofed") && !strings.Contains(line, "MR_HANDLER.map_sh ") {
			t.Fatalf("the handler's claimed name was trusted: %q", line)
		}
	}
	if out := other.String(); out != "" {
		t.Fatalf("a handler of wf notified workflow victim: %q", out)
	}
}
