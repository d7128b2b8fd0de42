package integration

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/jobx/jobx/runner"
	"github.com/jobx/jobx/sharedfs"
	"github.com/jobx/jobx/sharedfs/tahoetest"
)

// fsJob: a mapper writes files through FS (every backend) and, where the
// backend is local, straight into its mounted root; the reducer of the
// same step reads them back, and cannot leave the workflow's root.
func fsJob(t *testing.T, c *cluster, wf string) {
	c.workflow(wf)
	c.handler(wf, "map_write", "map/write.py", `"""
Write a file through FS, and one into the mounted root when there is one.

**
handler_type: mapper
"""
import os
FS.mkdir('out/deep')
with FS.open('out/deep/a.txt', 'w') as f:
    f.write('written through FS: %s' % arguments[0][1])
if os.environ.get('JOBX_FS_ROOT'):
    with open(os.path.join(os.environ['JOBX_FS_ROOT'], 'out', 'direct.txt'), 'w') as f:
        f.write('written to the mount')
yield MrConfigureToReturn()
yield ('wrote', 1)
`)
	c.handler(wf, "reduce_read", "reduce/read.py", `"""
Read what the mapper wrote; try to escape the root.

**
handler_type: reducer
"""
yield ('a', FS.open('out/deep/a.txt').read())
yield ('names', sorted(name for name, _ in FS.ls('out')))
yield ('isdir', FS.isdir('out/deep'))
try:
    FS.open('../other/secret.txt').read()
    yield ('escape', 'possible')
except Exception as e:
    yield ('escape', type(e).__name__)
`)
	c.step(wf, "s", "map_write", "", "reduce_read")
	c.job(wf, "j", "s")
}

func TestSharedFilesystemLocalBackendMountedAndThroughHelpers(t *testing.T) {
	dir := t.TempDir()
	c := startCluster(t)
	c.addRunner(func(o *runner.Options) { o.FS = sharedfs.Config{Backend: "local", Dir: dir} })
	fsJob(t, c, "wf")
	// A file of another workflow, which the handler must not reach.
	os.MkdirAll(filepath.Join(dir, "working", "other"), 0o755)
	os.WriteFile(filepath.Join(dir, "working", "other", "secret.txt"), []byte("no"), 0o644)
	got := c.post("wf", "j", `{"arguments":{"x":7}}`, "").pairs(t)
	assertPairs(t, got, map[string]string{
		`"a"`: `"written through FS: 7"`, `"names"`: `["deep","direct.txt"]`, `"isdir"`: "true", `"escape"`: `"RuntimeError"`,
	})
	if b, err := os.ReadFile(filepath.Join(dir, "working", "wf", "out", "deep", "a.txt")); err != nil || string(b) != "written through FS: 7" {
		t.Fatalf("the file is not in the workflow's root on the host: %q %v", b, err)
	}
}

func TestSharedFilesystemTahoeBackend(t *testing.T) {
	tahoe := tahoetest.NewServer()
	defer tahoe.Close()
	cfgDir := t.TempDir()
	os.WriteFile(filepath.Join(cfgDir, "wf.yaml"), []byte("backend: tahoe\ngateway: "+tahoe.URL+"\ndircap: "+tahoe.MakeDir()+"\n"), 0o600)
	c := startCluster(t)
	c.addRunner(func(o *runner.Options) { o.FSConfigDir = cfgDir })
	fsJob(t, c, "wf")
	got := c.post("wf", "j", `{"arguments":{"x":9}}`, "").pairs(t)
	assertPairs(t, got, map[string]string{
		`"a"`: `"written through FS: 9"`, `"names"`: `["deep"]`, `"isdir"`: "true", `"escape"`: `"RuntimeError"`,
	})
}
