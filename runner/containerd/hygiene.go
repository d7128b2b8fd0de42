package containerd

import (
	"context"
	"fmt"
	"syscall"

	client "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
)

// claimNamespace creates the runner's namespace (labelled with the runner
// id) if it does not exist.
func (s *Sandbox) claimNamespace(ctx context.Context) error {
	err := s.cli.NamespaceService().Create(ctx, s.opts.Namespace, map[string]string{LabelRunner: s.opts.RunnerID})
	if err != nil && !errdefs.IsAlreadyExists(err) {
		return fmt.Errorf("containerd namespace %s: %w", s.opts.Namespace, err)
	}
	return nil
}

// removeStale deletes every container left in the runner's namespace: the
// namespace is this runner's alone, so anything in it at start-up was left
// by a previous run that crashed.
func (s *Sandbox) removeStale(ctx context.Context) error {
	ctrs, err := s.cli.Containers(ctx)
	if err != nil {
		return fmt.Errorf("list stale containers: %w", err)
	}
	for _, c := range ctrs {
		if task, err := c.Task(ctx, nil); err == nil {
			task.Kill(ctx, syscall.SIGKILL, client.WithKillAll)
			if _, err := task.Delete(ctx, client.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
				s.log.Warn("delete stale task", "container", c.ID(), "err", err)
			}
		}
		if err := c.Delete(ctx, client.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("delete stale container %s: %w", c.ID(), err)
		}
		s.log.Info("removed a stale sandbox of a previous run", "container", c.ID())
	}
	return nil
}
