package containerd

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	client "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/jobx/jobx/sandbox/internal/leftover"
)

// Namespace labels naming the process that owns a runner namespace, so a
// later runner can tell a crashed owner from a live one.
const (
	labelHost  = "jobx.host"
	labelPid   = "jobx.pid"
	labelStart = "jobx.pid-start"
)

// claimNamespace creates the runner's namespace (if needed) and labels it
// with this process.
func (s *Sandbox) claimNamespace(ctx context.Context) error {
	host, _ := os.Hostname()
	labels := map[string]string{labelHost: host, labelPid: strconv.Itoa(os.Getpid()), labelStart: leftover.Start(os.Getpid())}
	ns := s.cli.NamespaceService()
	if err := ns.Create(ctx, s.opts.Namespace, labels); err != nil {
		if !errdefs.IsAlreadyExists(err) {
			return fmt.Errorf("containerd namespace %s: %w", s.opts.Namespace, err)
		}
		for k, v := range labels {
			if err := ns.SetLabel(ctx, s.opts.Namespace, k, v); err != nil {
				return fmt.Errorf("containerd namespace %s: %w", s.opts.Namespace, err)
			}
		}
	}
	return nil
}

// removeStale deletes the containers in this runner's namespace (left by a
// previous run under the same id) and in the jobx namespaces of this host
// whose owning process is gone (a crashed runner), and kills the shims
// left in them without a task.
func (s *Sandbox) removeStale(ctx context.Context) error {
	host, _ := os.Hostname()
	names, err := s.cli.NamespaceService().List(ctx)
	if err != nil {
		return fmt.Errorf("containerd namespaces: %w", err)
	}
	for _, name := range names {
		if !strings.HasPrefix(name, "jobx-") {
			continue
		}
		if name != s.opts.Namespace {
			labels, err := s.cli.NamespaceService().Labels(ctx, name)
			if err != nil || labels[labelHost] != host || ownerAlive(labels) {
				continue
			}
		}
		n, err := RemoveContainers(namespaces.WithNamespace(ctx, name), s.cli)
		if err != nil {
			return err
		}
		if n > 0 {
			s.log.Info("removed stale sandboxes", "stale_namespace", name, "containers", n)
		}
		if n, err := reapOrphans(ctx, s.cli, s.opts.Address, name); err != nil {
			s.log.Warn("look for orphaned shims", "stale_namespace", name, "err", err)
		} else if n > 0 {
			s.log.Info("killed orphaned shims (tasks whose creation a killed runner abandoned)", "stale_namespace", name, "shims", n)
		}
	}
	return nil
}

// RemoveContainers kills and deletes every jobx container (label
// jobx.runner) in the namespace of ctx, with their tasks and snapshots,
// and returns how many it removed.
func RemoveContainers(ctx context.Context, cli *client.Client) (int, error) {
	ctrs, err := cli.Containers(ctx, fmt.Sprintf("labels.%q", LabelRunner))
	if err != nil {
		return 0, fmt.Errorf("list containers: %w", err)
	}
	for _, c := range ctrs {
		if t, err := c.Task(ctx, nil); err == nil {
			t.Kill(ctx, syscall.SIGKILL, client.WithKillAll)
			if _, err := t.Delete(ctx, client.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
				return 0, fmt.Errorf("delete stale task %s: %w", c.ID(), err)
			}
		}
		if err := c.Delete(ctx, client.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
			return 0, fmt.Errorf("delete stale container %s: %w", c.ID(), err)
		}
	}
	return len(ctrs), nil
}

// ownerAlive reports whether the process a namespace's labels name still
// runs (same pid and start time).
func ownerAlive(labels map[string]string) bool {
	pid, err := strconv.Atoi(labels[labelPid])
	if err != nil || pid <= 0 {
		return false
	}
	start := leftover.Start(pid)
	return start != "" && start == labels[labelStart]
}
