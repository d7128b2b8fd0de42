package cluster_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jobx/jobx/internal/cluster"
	"github.com/jobx/jobx/internal/manifest"
	"github.com/jobx/jobx/internal/testenv"
	"github.com/jobx/jobx/kvmodel"
	_ "github.com/jobx/jobx/processors/all"
	"github.com/jobx/jobx/runner"
	"github.com/jobx/jobx/sandbox/none"
	"go.uber.org/goleak"
)

// A cluster answers a blocking job through its gateway's HTTP API, and
// Close leaves none of its goroutines behind.
func TestAClusterAnswersAJobAndCloseLeavesNoGoroutines(t *testing.T) {
	before := goleak.IgnoreCurrent()
	log := testenv.Logger(t)
	dir := t.TempDir()
	box, err := none.New(none.Options{Dir: filepath.Join(dir, "sandbox"), Zygotes: 2, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	ro := runner.NewOptions()
	ro.ID, ro.Dir, ro.Sandbox = "cluster-test", filepath.Join(dir, "runner"), box
	o := cluster.NewOptions()
	o.Dir, o.Log, o.Etcd.Fast = dir, log, true
	o.Runners = []*runner.Options{ro}
	o.Load = func(ctx context.Context, st *kvmodel.Store) error {
		_, err := manifest.Apply(ctx, st, filepath.Join("testdata", "double"), log)
		return err
	}
	c, err := cluster.Start(context.Background(), o)
	if err != nil {
		box.Close()
		t.Fatal(err)
	}
	select {
	case <-c.Runners()[0].Ready():
	case err := <-c.Err():
		t.Fatal(err)
	case <-time.After(30 * time.Second):
		t.Fatal("the runner is not ready within 30s")
	}

	url := c.URL()
	hc := &http.Client{Timeout: time.Minute}
	resp, err := hc.Post(url+"/job/demo/double?blocking=true", "application/json", strings.NewReader(`{"arguments":{"a":1,"b":2}}`))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	hc.CloseIdleConnections()
	var body struct {
		Result struct {
			Pairs [][2]json.RawMessage `json:"pairs"`
		} `json:"result"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &body) != nil {
		t.Fatalf("status %d: %s", resp.StatusCode, raw)
	}
	got := map[string]string{}
	for _, p := range body.Result.Pairs {
		got[string(p[0])] = string(p[1])
	}
	if len(got) != 2 || got[`"a"`] != "2" || got[`"b"`] != "4" {
		t.Errorf("pairs %s, want a: 2, b: 4", raw)
	}

	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("a second Close: %v", err)
	}
	if err := box.Close(); err != nil {
		t.Errorf("sandbox Close: %v", err)
	}
	if err := goleak.Find(before); err != nil {
		t.Error(err)
	}
	if _, err := http.Get(url + "/healthz"); err == nil {
		t.Error("the gateway still answers after Close")
	}
}

// Start checks its options before it starts anything.
func TestStartRefusesOptionsItCannotUse(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*cluster.Options)
		want string
	}{
		{"An embedded etcd needs a directory.", func(o *cluster.Options) { o.NSQDs = []string{"127.0.0.1:1"} }, "embedded etcd (Dir)"},
		{"A cluster needs gateway options.", func(o *cluster.Options) { o.Dir, o.Gateway = t.TempDir(), nil }, "no gateway options"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := cluster.NewOptions()
			o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
			tc.mod(o)
			if _, err := cluster.Start(context.Background(), o); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Start: %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// On an external etcd and nsqd the cluster leaves the caller's client open
// when it closes, and a stopped gateway starts again on its address.
func TestAClusterOnExternalServersLeavesTheirClientOpen(t *testing.T) {
	endpoint, cli := testenv.Etcd(t)
	o := cluster.NewOptions()
	o.EtcdEndpoints, o.Client, o.NSQDs, o.Log = []string{endpoint}, cli, []string{testenv.NSQD(t)}, testenv.Logger(t)
	c, err := cluster.Start(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.EtcdEmbedded() || c.NSQDEmbedded() || c.Client() != cli {
		t.Errorf("embedded etcd %v, nsqd %v; the caller's client used: %v", c.EtcdEmbedded(), c.NSQDEmbedded(), c.Client() == cli)
	}
	addr := c.Gateway().Addr()
	if err := c.StopGateway(); err != nil {
		t.Fatal(err)
	}
	if err := c.StartGateway(context.Background(), addr); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(c.URL() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if c.URL() != "http://"+addr || resp.StatusCode != http.StatusOK {
		t.Errorf("restarted gateway at %s: %d", c.URL(), resp.StatusCode)
	}

	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "/cluster-test", "still open"); err != nil {
		t.Errorf("the caller's client after Close: %v", err)
	}
}
