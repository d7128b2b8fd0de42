package containerd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd/api/services/tasks/v1"
	client "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
)

// A containerd shim outlives its containerd: killed with SIGKILL, or
// stopped while containers run, containerd leaves the shims (and their
// containers) running, re-parented to init. A containerd started again on
// the same root and state finds them again; one started elsewhere never
// does. These helpers find such processes by their command lines.

// shim is a running containerd shim process.
type shim struct {
	pid           int
	namespace, id string // of its container
}

// shimsOf returns the shims that serve the containerd at address (their
// -address argument).
func shimsOf(address string) []shim {
	var out []shim
	for _, p := range processes() {
		args := p.args
		if len(args) == 0 || !strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") {
			continue
		}
		s := shim{pid: p.pid}
		ours := false
		for i := 1; i+1 < len(args); i++ {
			switch args[i] {
			case "-address", "--address":
				ours = args[i+1] == address
			case "-namespace", "--namespace":
				s.namespace = args[i+1]
			case "-id", "--id":
				s.id = args[i+1]
			}
		}
		if ours {
			out = append(out, s)
		}
	}
	return out
}

// reapOrphans kills the shims serving the containerd of cli at address (in
// namespace ns, or in any when ns is "") whose tasks it does not know, with
// their containers, and returns how many. Such a shim is an orphan: its
// containerd was stopped or killed while its task ran, or a task's
// creation was abandoned half-way (its runner killed meanwhile), and
// nothing would ever stop it.
func reapOrphans(ctx context.Context, cli *client.Client, address, ns string) (int, error) {
	shims := shimsOf(address)
	if len(shims) == 0 {
		return 0, nil
	}
	known := map[string]bool{}
	nss := []string{ns}
	if ns == "" {
		var err error
		if nss, err = cli.NamespaceService().List(ctx); err != nil {
			return 0, fmt.Errorf("containerd namespaces: %w", err)
		}
	}
	for _, n := range nss {
		resp, err := cli.TaskService().List(namespaces.WithNamespace(ctx, n), &tasks.ListTasksRequest{})
		if err != nil {
			return 0, fmt.Errorf("tasks of containerd namespace %s: %w", n, err)
		}
		for _, t := range resp.Tasks {
			known[n+"/"+t.ID] = true
		}
	}
	reaped := 0
	for _, sh := range shims {
		if (ns == "" || sh.namespace == ns) && !known[sh.namespace+"/"+sh.id] {
			sh.kill()
			reaped++
		}
	}
	return reaped, nil
}

// kill kills the shim with its container's processes and removes the
// container's cgroups.
func (sh shim) kill() {
	killTree(sh.pid)
	removeContainerCgroups(sh.namespace, sh.id)
}

// killShims kills every shim serving the containerd at address (see
// shim.kill): what still runs on a daemon that is gone or going.
func killShims(address string) {
	for _, sh := range shimsOf(address) {
		sh.kill()
	}
}

// daemonsWith returns the containerd processes started with config file
// cfg (--config cfg).
func daemonsWith(cfg string) (pids []int) {
	for _, p := range processes() {
		if len(p.args) < 3 || filepath.Base(p.args[0]) != "containerd" {
			continue
		}
		for i := 1; i+1 < len(p.args); i++ {
			if (p.args[i] == "--config" || p.args[i] == "-c") && p.args[i+1] == cfg {
				pids = append(pids, p.pid)
				break
			}
		}
	}
	return pids
}

type process struct {
	pid, ppid int
	args      []string
}

// processes lists this host's processes (those /proc shows) with their
// parents and command lines.
func processes() []process {
	entries, _ := os.ReadDir("/proc")
	var out []process
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		p := process{pid: pid, ppid: parentOf(pid)}
		for _, a := range bytes.Split(bytes.TrimRight(cmdline, "\x00"), []byte{0}) {
			p.args = append(p.args, string(a))
		}
		out = append(out, p)
	}
	return out
}

// parentOf returns the parent pid of pid (0 when it is gone).
func parentOf(pid int) int {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// killTree kills pid and every process under it with SIGKILL, children
// first (a container's init, whose death ends its PID namespace), and waits
// up to 5 s for them to go.
func killTree(pid int) {
	children := map[int][]int{}
	for _, p := range processes() {
		children[p.ppid] = append(children[p.ppid], p.pid)
	}
	var tree []int
	var walk func(int)
	walk = func(p int) {
		for _, c := range children[p] {
			walk(c)
		}
		tree = append(tree, p)
	}
	walk(pid)
	for _, p := range tree {
		syscall.Kill(p, syscall.SIGKILL)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, p := range tree {
		for alive(p) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// alive reports whether pid runs (a zombie does not).
func alive(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && !strings.HasPrefix(strings.TrimSpace(s[i+1:]), "Z")
}

// stop ends process pid: SIGTERM, then SIGKILL after grace.
func stop(pid int, grace time.Duration) {
	syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for alive(pid) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if alive(pid) {
		killTree(pid)
	}
}

// removeContainerCgroups removes the cgroups runc made for container id of
// namespace (/<namespace>/<id> in every hierarchy, containerd's default
// cgroup path), once their processes are gone.
func removeContainerCgroups(namespace, id string) error {
	if namespace == "" || id == "" {
		return nil
	}
	dirs := []string{filepath.Join("/sys/fs/cgroup", namespace, id)}
	if hs, err := os.ReadDir("/sys/fs/cgroup"); err == nil {
		for _, h := range hs {
			dirs = append(dirs, filepath.Join("/sys/fs/cgroup", h.Name(), namespace, id))
		}
	}
	var errs []error
	for _, d := range dirs {
		deadline := time.Now().Add(time.Second)
		for {
			err := syscall.Rmdir(d)
			if err == nil || errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ENOTDIR) {
				break
			}
			if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
				errs = append(errs, &os.PathError{Op: "rmdir", Path: d, Err: err})
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return errors.Join(errs...)
}
