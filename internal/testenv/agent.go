package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var agentOnce struct {
	sync.Once
	path string
	err  error
}

// Agent builds the static jobx-agent binary once per test process and
// returns its path; JOBX_AGENT names a binary built beforehand instead (a
// test binary run as another user, which cannot use the go command's
// caches).
func Agent(t testing.TB) string {
	t.Helper()
	agentOnce.Do(func() {
		if p := os.Getenv("JOBX_AGENT"); p != "" {
			agentOnce.path = p
			return
		}
		dir, err := os.MkdirTemp("", "jobx-agent-")
		if err != nil {
			agentOnce.err = err
			return
		}
		agentOnce.path, agentOnce.err = BuildAgent(filepath.Join(dir, "jobx-agent"))
	})
	if agentOnce.err != nil {
		t.Fatalf("build jobx-agent: %v", agentOnce.err)
	}
	return agentOnce.path
}

// BuildAgent builds cmd/jobx-agent (static) to out with the go command;
// it must run inside the jobx module.
func BuildAgent(out string) (string, error) {
	cmd := exec.Command("go", "build", "-o", out, "github.com/jobx/jobx/cmd/jobx-agent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%w: %s", err, b)
	}
	return out, nil
}
