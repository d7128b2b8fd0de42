// Package boxlib installs what a warm sandbox runs from a read-only
// library directory (mounted at /jobx/lib): the static jobx-agent and the
// Python runtime.
package boxlib

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/jobx/jobx/processors/python"
	"github.com/jobx/jobx/sandbox/agent"
)

// Install copies the agent binary at agentPath and the Python runtime into
// dir, each replaced atomically, so that sandboxes starting meanwhile see
// whole files.
func Install(dir, agentPath string) error {
	data, err := os.ReadFile(agentPath)
	if err != nil {
		return fmt.Errorf("install the sandbox library: agent: %w", err)
	}
	for name, f := range map[string]struct {
		data []byte
		mode os.FileMode
	}{agent.Name: {data, 0o755}, python.RuntimeFile: {python.Runtime, 0o644}} {
		tmp := filepath.Join(dir, "."+name+".tmp")
		if err := os.WriteFile(tmp, f.data, f.mode); err != nil {
			return fmt.Errorf("install the sandbox library: %w", err)
		}
		os.Chmod(tmp, f.mode)
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("install the sandbox library: %w", err)
		}
	}
	return nil
}
