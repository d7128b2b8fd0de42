package main

import (
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// JobX's scripts spelled some flags and forms differently. jobx accepts
// them as aliases, hidden from --help (docs/cli.md lists them).

// jobxFlagSpellings maps JobX's long flag names to jobx's.
var jobxFlagSpellings = map[string]string{
	"simulate_only": "dry-run", // mr_kv_handler_store
	"simulate":      "dry-run", // mr_kv_request_cleanup
	"force_update":  "force",   // mr_kv_handler_store
}

// jobxSpellings is the flag normalization of every jobx command: a JobX
// long flag name is read as jobx's.
func jobxSpellings(_ *pflag.FlagSet, name string) pflag.NormalizedName {
	if to, ok := jobxFlagSpellings[name]; ok {
		return pflag.NormalizedName(to)
	}
	return pflag.NormalizedName(name)
}

// pairCommands are the commands whose -a takes JobX's two-word form,
// `-a NAME TYPE` (mr_kv_handler_create) or `-a KEY VALUE`
// (mr_kv_request_create, now jobx submit), besides jobx's `-a NAME=VALUE`.
var pairCommands = map[string]bool{"jobx submit": true, "jobx handler create": true}

// jobxPairs rewrites JobX's `-a NAME VALUE` as `-a NAME=VALUE` in the
// arguments of the commands in pairCommands. A NAME with "=" in it is
// jobx's form already and is left alone.
func jobxPairs(root *cobra.Command, args []string) []string {
	cmd, _, err := root.Find(args)
	if err != nil || !pairCommands[cmd.CommandPath()] {
		return args
	}
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(out, args[i:]...)
		}
		if (a == "-a" || a == "--argument") && i+2 < len(args) && !strings.Contains(args[i+1], "=") && !strings.HasPrefix(args[i+2], "-") {
			out = append(out, a, args[i+1]+"="+args[i+2])
			i += 2
			continue
		}
		out = append(out, a)
	}
	return out
}
