package gateway

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jobx/jobx/internal/testenv"
	"github.com/jobx/jobx/kvmodel"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Every brought-forward cleanup is written, in batches, by the time close
// returns: a burst of them larger than one transaction loses none.
func TestDeliveredCleanupsWritesEveryScheduledCleanupByClose(t *testing.T) {
	_, cli := testenv.Etcd(t)
	d := newDeliveredCleanups(kvmodel.NewStore(cli), testenv.Logger(t))
	due := time.Now()
	const n = 3*kvmodel.MaxTxnOps + 7
	for i := range n {
		d.schedule(kvmodel.CleanupOp("wf", fmt.Sprintf("req%04d", i), due))
	}
	d.close()
	d.schedule(kvmodel.CleanupOp("wf", "after-close", due)) // written at once
	resp, err := cli.Get(context.Background(), "/jobx/cleanup/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != n+1 {
		t.Fatalf("%d cleanups written, want %d", resp.Count, n+1)
	}
}
