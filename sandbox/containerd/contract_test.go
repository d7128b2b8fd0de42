package containerd_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	client "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/jobx/jobx/internal/testenv"
	"github.com/jobx/jobx/internal/testenv/testbox"
	"github.com/jobx/jobx/sandbox"
	ctrd "github.com/jobx/jobx/sandbox/containerd"
	"github.com/jobx/jobx/sandbox/sandboxtest"
)

// TestContract runs the sandbox contract, escape probes included, on a
// private containerd.
func TestContract(t *testing.T) {
	addr := testbox.Containerd(t)
	var dirs []string
	var nss []string
	sandboxtest.Run(t, sandboxtest.Env{
		Isolating: true,
		New: func(t testing.TB, handlers string) sandbox.Sandbox {
			dir, err := os.MkdirTemp("", "jxc-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			dirs = append(dirs, dir)
			o := ctrd.NewOptions()
			o.Address, o.RunnerID, o.Dir, o.HandlersDir = addr, filepath.Base(dir), filepath.Join(dir, "sb"), handlers
			o.AgentPath, o.Images, o.Log = testenv.Agent(t), testbox.Images(t), testenv.Logger(t)
			sb, err := ctrd.New(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			nss = append(nss, sb.Namespace())
			return sb
		},
		Leftovers: func() []string {
			var left []string
			mounts, _ := os.ReadFile("/proc/self/mountinfo")
			for _, d := range dirs {
				if strings.Contains(string(mounts), d) {
					left = append(left, "a mount under "+d)
				}
			}
			for _, ns := range nss {
				if n := containersIn(t, addr, ns); n > 0 {
					left = append(left, "containers in namespace "+ns)
				}
			}
			return left
		},
	})
}

// containersIn counts the containers of a containerd namespace.
func containersIn(t *testing.T, addr, ns string) int {
	cli, err := client.New(addr, client.WithDefaultNamespace(ns))
	if err != nil {
		t.Errorf("containerd client: %v", err)
		return 0
	}
	defer cli.Close()
	ctrs, err := cli.Containers(namespaces.WithNamespace(context.Background(), ns))
	if err != nil {
		t.Errorf("list containers of %s: %v", ns, err)
	}
	return len(ctrs)
}
