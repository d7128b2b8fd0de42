package none_test

import (
	"os"
	"strings"
	"testing"

	"github.com/jobx/jobx/internal/testenv"
	"github.com/jobx/jobx/sandbox"
	"github.com/jobx/jobx/sandbox/none"
	"github.com/jobx/jobx/sandbox/sandboxtest"
)

// TestContract runs the sandbox contract on the none sandbox: no escape
// probes (it isolates nothing, by design), no pids limit and, not as root,
// no bound on the total of a run's scratch files, which it documents it
// does not enforce.
func TestContract(t *testing.T) {
	var dirs []string
	unenforced := map[string]string{"pids": "the none sandbox sets no process limit"}
	if os.Geteuid() != 0 {
		unenforced["scratch"] = "not root: no tmpfs per run; each file is bounded (RLIMIT_FSIZE), not the total"
	}
	sandboxtest.Run(t, sandboxtest.Env{
		New: func(t testing.TB, handlers string) sandbox.Sandbox {
			dir := t.TempDir()
			dirs = append(dirs, dir)
			sb, err := none.New(none.Options{Dir: dir, Zygotes: 2, Log: testenv.Logger(t)})
			if err != nil {
				t.Fatal(err)
			}
			return sb
		},
		Unenforced: unenforced,
		Leftovers: func() []string {
			var left []string
			mounts, _ := os.ReadFile("/proc/self/mountinfo")
			for _, d := range dirs {
				if strings.Contains(string(mounts), d) {
					left = append(left, "a mount under "+d)
				}
			}
			return left
		},
	})
}
