package main

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

func TestTheCompactRetentionComesFromTheFlagOrTheEnvironment(t *testing.T) {
	for _, tc := range []struct {
		name, env string
		args      []string
		want      time.Duration
		err       string
	}{
		{"unset keeps five minutes", "", nil, 5 * time.Minute, ""},
		{"the variable sets it", "90s", nil, 90 * time.Second, ""},
		{"the flag wins over the variable", "90s", []string{"--etcd-compact-retention", "1h"}, time.Hour, ""},
		{"0 disables compaction", "", []string{"--etcd-compact-retention", "0"}, 0, ""},
		{"a bad variable names it", "soon", nil, 0, "JOBX_ETCD_COMPACT_RETENTION"},
		{"a negative retention is refused", "", []string{"--etcd-compact-retention=-1m"}, 0, "--etcd-compact-retention"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &app{env: loadEnv(func(k string) string {
				return map[string]string{"JOBX_ETCD_COMPACT_RETENTION": tc.env}[k]
			})}
			cmd := &cobra.Command{Use: "runner"}
			rf := a.addRunnerFlags(cmd, true)
			if err := cmd.ParseFlags(tc.args); err != nil {
				t.Fatal(err)
			}
			err := rf.validate()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, want an error naming %s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if rf.opts.CompactRetention != tc.want {
				t.Fatalf("retention %s, want %s", rf.opts.CompactRetention, tc.want)
			}
		})
	}
}
