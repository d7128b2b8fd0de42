package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/jobx/jobx/internal/testenv"
)

// jobxBinary builds cmd/jobx, with cmd/jobx-agent beside it (where the
// containerd sandbox looks for it), once per test binary.
var jobxBinary = func() func(t *testing.T) string {
	var once sync.Once
	var path string
	var err error
	return func(t *testing.T) string {
		t.Helper()
		once.Do(func() {
			dir, _ := os.MkdirTemp("", "jobx-bin-")
			path = filepath.Join(dir, "jobx")
			out, e := exec.Command("go", "build", "-o", path, "../cmd/jobx").CombinedOutput()
			if e != nil {
				err = fmt.Errorf("go build: %v: %s", e, out)
				return
			}
			_, err = testenv.BuildAgent(filepath.Join(dir, "jobx-agent"))
		})
		if err != nil {
			t.Fatal(err)
		}
		return path
	}
}()

func runnerAnnounced(t *testing.T, c *cluster, id string) bool {
	for _, kv := range mustList(t, c, "/jobx/runners/") {
		if strings.HasSuffix(kv[0], "/"+id) {
			return true
		}
	}
	return false
}
