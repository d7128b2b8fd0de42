package main

import (
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/jobx/jobx/processors"
	"github.com/spf13/cobra"
)

// version is set at link time: go build -ldflags "-X main.version=v1.2.3".
var version = ""

// buildVersion returns version, or the module version and VCS revision
// recorded by the Go toolchain.
func buildVersion() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := info.Main.Version
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			v += " " + s.Value[:min(len(s.Value), 12)]
		case "vcs.modified":
			if s.Value == "true" {
				v += "+dirty"
			}
		}
	}
	return v
}

func (a *app) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print jobx's version and the handler languages it knows",
		Example: `  jobx version`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if a.output == "json" {
				return writeJSON(a.stdout, map[string]any{"version": buildVersion(), "processors": processors.Names()})
			}
			fmt.Fprintf(a.stdout, "jobx %s\nprocessors: %s\n", buildVersion(), strings.Join(processors.Names(), ", "))
			return nil
		},
	}
}
