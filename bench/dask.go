package main

import (
	"context"
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// The Dask peer's Python: the tasks module (the word count's functions over
// the benchmark's own handlers) and the driver, which starts the cluster
// and times the work on it.
var (
	//go:embed dask_tasks.py
	daskTasks []byte
	//go:embed dask_client.py
	daskClient []byte
)

// daskWorkers is the LocalCluster's worker processes, of one thread each:
// the machine's 2 cores.
const daskWorkers = 2

// daskAvailable says why the Dask peer cannot run here, or "".
func daskAvailable(ctx context.Context, python string) string {
	return cannotImport(ctx, python, "distributed", "distributed")
}

// benchDask runs w on Dask distributed: the driver starts a LocalCluster
// (the scheduler and the nannies in its own process, daskWorkers worker
// processes of one thread) with its scratch space in dir, running the
// baseline's handler code from bl's directory, and closes it before it
// exits. The word counts are not yet compared with anything.
func benchDask(ctx context.Context, python string, bl *baseline, dir string, w peerWork) (*peerResult, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	env, err := writePeerFiles(bl, map[string][]byte{"dask_tasks.py": daskTasks, "dask_client.py": daskClient})
	if err != nil {
		return nil, err
	}
	rss := sampleRSS(100 * time.Millisecond)
	r, end, err := runPeerDriver(ctx, python, filepath.Join(bl.dir, "dask_client.py"), dir, env, time.Now(), w, map[string]any{"workers": daskWorkers}, rss)
	rss.close()
	if err != nil {
		return nil, err
	}
	r.Name = "Dask"
	r.Setup = fmt.Sprintf("distributed.LocalCluster(n_workers=%d, threads_per_worker=1, processes=True), no dashboard, "+
		"the scheduler and the workers' nannies in the driver's process, default serialisation (pickle); "+
		"an asynchronous Client: client.map(count, documents) and one client.submit(sum_counts, those futures), all pure=False; "+
		"trivial request await client.submit(echo, 'x', 1), the clients asyncio tasks sharing the Client", daskWorkers)
	r.finish(ctx, python, rss, end)
	return r, nil
}
