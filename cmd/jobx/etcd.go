package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jobx/jobx/internal/etcdmaint"
	"github.com/jobx/jobx/kvmodel"
	"github.com/spf13/cobra"
)

func (a *app) etcdCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "etcd",
		Short: "Inspect etcd's space and reclaim it: status, compact, defrag, disarm",
		Long: `Look after the etcd that holds jobx's state.

etcd keeps every revision of every key until its history is compacted, and its
database file keeps the space compaction frees until the member is
defragmented. When the file reaches etcd's quota (--quota-backend-bytes; jobx up
--etcd-quota) etcd raises NOSPACE and refuses every write: the gateway answers
503 storage_full, runners requeue their work. To recover: remove what is not
needed (jobx request cleanup), then compact, defrag and disarm.

Runners compact the history themselves (one of them, elected); with
--etcd-defrag-threshold they also defragment and, after NOSPACE, disarm.`,
		Example: `  jobx etcd status
  jobx etcd compact && jobx etcd defrag && jobx etcd disarm`,
	}
	cmd.AddCommand(a.etcdStatusCmd(), a.etcdCompactCmd(), a.etcdDefragCmd(), a.etcdDisarmCmd())
	return cmd
}

// listedMember is a member as jobx etcd status -o json prints it.
type listedMember struct {
	etcdmaint.MemberStatus
	Fragmentation float64 `json:"fragmentation"`
}

func (a *app) etcdStatusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show each etcd member's database size, space in use, revision and alarms",
		Long: `Show each member of the etcd cluster (from its member list): name, id, the
client URL that answered, leader or not, the database file's size (what the
quota counts), the space in use inside it, the share that defragmentation would
give back (FREE), the quota, the revision, the raft index and the alarms raised
on it (NOSPACE: out of space, writes refused; CORRUPT). A member that does not
answer is named on stderr.`,
		Example: `  jobx etcd status
  jobx etcd status -o json`,
		Args: cobra.NoArgs,
		RunE: a.storeCmd(func(cmd *cobra.Command, ctx context.Context, st *kvmodel.Store, args []string) error {
			members, serr := etcdmaint.Status(ctx, st.Client())
			if members == nil {
				return serr
			}
			items := make([]listedMember, 0, len(members))
			var rows [][]string
			for _, m := range members {
				items = append(items, listedMember{m, m.Fragmentation()})
				alarms := strings.Join(m.Alarms, ",")
				if !m.Answered() {
					rows = append(rows, []string{m.Name, m.ID.String(), m.Endpoint, "-", "-", "-", "-", "-", "-", "-", orDefault(alarms, "NO ANSWER")})
					continue
				}
				rows = append(rows, []string{m.Name, m.ID.String(), m.Endpoint, yesNo(m.Leader), formatBytes(m.DBSize), formatBytes(m.DBSizeInUse),
					fmt.Sprintf("%.0f%%", 100*m.Fragmentation()), formatBytes(m.Quota), strconv.FormatInt(m.Revision, 10),
					strconv.FormatUint(m.RaftIndex, 10), orDefault(alarms, "-")})
			}
			if err := a.printTable(items, []string{"NAME", "ID", "ENDPOINT", "LEADER", "DB SIZE", "IN USE", "FREE", "QUOTA", "REVISION", "RAFT INDEX", "ALARMS"}, rows); err != nil {
				return err
			}
			for _, m := range members {
				if !m.Answered() {
					fmt.Fprintf(a.stderr, "member %s (%s) does not answer: %s\n", m.Name, m.ID, m.Err)
				}
			}
			if slices.ContainsFunc(members, etcdmaint.MemberStatus.NoSpace) {
				fmt.Fprintln(a.stderr, "etcd is out of space (NOSPACE): writes are refused. Reclaim space: jobx request cleanup for what is not needed, then jobx etcd compact, jobx etcd defrag, jobx etcd disarm")
			}
			return serr
		}),
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func (a *app) etcdCompactCmd() *cobra.Command {
	var rev, keep int64
	cmd := &cobra.Command{
		Use:   "compact",
		Short: "Compact etcd's history (to the current revision by default)",
		Long: `Compact etcd's history: drop every revision of every key older than the
target revision, freeing their space inside the database file (jobx etcd defrag
then gives it back to the file system). The target is the current revision
(keep no history), --revision N, or --keep-revisions N behind the current one.
The command returns once the member that served it has freed the space.

Runners compact the history themselves, to a few minutes behind
(--etcd-compact-retention); compacting further cancels watches that lag behind
the target, and jobx's watches then read again. While etcd is out of space
nothing is written and compacting to the current revision costs nothing.`,
		Example: `  jobx etcd compact
  jobx etcd compact --keep-revisions 10000
  jobx etcd compact --revision 123456`,
		Args: cobra.NoArgs,
		RunE: a.storeCmd(func(cmd *cobra.Command, ctx context.Context, st *kvmodel.Store, args []string) error {
			if rev < 0 || keep < 0 {
				return errors.New("--revision and --keep-revisions must not be negative")
			}
			if rev > 0 && keep > 0 {
				return errors.New("--revision and --keep-revisions go alone")
			}
			cur, err := etcdmaint.Revision(ctx, st.Client())
			if err != nil {
				return err
			}
			target := cur
			switch {
			case rev > 0:
				if rev > cur {
					return fmt.Errorf("--revision %d is ahead of etcd's current revision %d", rev, cur)
				}
				target = rev
			case keep > 0:
				target = cur - keep
			}
			if target <= 0 {
				if a.output == "json" {
					return writeJSON(a.stdout, map[string]int64{"revision": 0, "current_revision": cur})
				}
				fmt.Fprintf(a.stdout, "nothing to compact: etcd's current revision is %d\n", cur)
				return nil
			}
			if _, err := etcdmaint.Compact(ctx, st.Client(), target); err != nil {
				return err
			}
			if a.output == "json" {
				return writeJSON(a.stdout, map[string]int64{"revision": target, "current_revision": cur})
			}
			fmt.Fprintf(a.stdout, "compacted etcd's history to revision %d (current %d); jobx etcd defrag gives the space back\n", target, cur)
			return nil
		}),
	}
	cmd.Flags().Int64Var(&rev, "revision", 0, "compact to this revision")
	cmd.Flags().Int64Var(&keep, "keep-revisions", 0, "keep this many revisions of history behind the current one")
	return cmd
}

func (a *app) etcdDefragCmd() *cobra.Command {
	var only []string
	cmd := &cobra.Command{
		Use:   "defrag",
		Short: "Defragment etcd's members, one at a time, the leader last",
		Long: `Defragment etcd's members: each rewrites its database file without the space
that compaction freed, so the file shrinks (what the quota counts). A member
serves nothing while it defragments (longer the more data it holds), so the
members go one at a time, followers first and the leader last. Without
--member every member is defragmented, and the command refuses while a member
does not answer (defragmenting another one then could cost quorum); --member
names the ones to do anyway. Compact first (jobx etcd compact): defragmenting
gives back only what compaction freed.`,
		Example: `  jobx etcd defrag
  jobx etcd defrag --member etcd-2`,
		Args: cobra.NoArgs,
		RunE: a.storeCmd(func(cmd *cobra.Command, ctx context.Context, st *kvmodel.Store, args []string) error {
			members, err := etcdmaint.Status(ctx, st.Client())
			if members == nil {
				return err
			}
			var todo []etcdmaint.MemberStatus
			for _, m := range members {
				if len(only) == 0 || slices.Contains(only, m.Name) || slices.Contains(only, m.ID.String()) || slices.Contains(only, m.Endpoint) {
					if !m.Answered() {
						return fmt.Errorf("member %s (%s) does not answer, not defragmenting: %s", m.Name, m.ID, m.Err)
					}
					todo = append(todo, m)
				}
			}
			if len(todo) == 0 {
				return fmt.Errorf("--member %s: no such member (jobx etcd status lists them)", strings.Join(only, ","))
			}
			done, err := etcdmaint.DefragmentMembers(ctx, st.Client(), todo)
			if err != nil && len(done) == 0 {
				return err
			}
			if a.output == "json" {
				if jerr := writeJSON(a.stdout, done); jerr != nil {
					return jerr
				}
				return err
			}
			for _, d := range done {
				fmt.Fprintf(a.stdout, "defragmented %s (%s) at %s: %s -> %s in %s\n", d.Name, d.ID, d.Endpoint,
					formatBytes(d.Before), formatBytes(d.After), d.Took.Round(1e6))
			}
			return err
		}),
	}
	cmd.Flags().StringSliceVar(&only, "member", nil, "defragment only these members: names, ids (hex) or client URLs, comma-separated")
	return cmd
}

func (a *app) etcdDisarmCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "disarm",
		Short: "Disarm etcd's NOSPACE alarm so that writes resume",
		Long: `Disarm etcd's NOSPACE alarms: etcd accepts writes again, and runners and the
gateway resume. Reclaim space first (jobx etcd compact, then jobx etcd defrag):
a member whose database is still at its quota raises NOSPACE again at the next
write, and the command warns about it. A CORRUPT alarm is left alone.

Runners started with --etcd-defrag-threshold (and --etcd-auto-disarm, the
default) disarm by themselves once every member's database is below 80% of its
quota.`,
		Example: `  jobx etcd disarm`,
		Args:    cobra.NoArgs,
		RunE: a.storeCmd(func(cmd *cobra.Command, ctx context.Context, st *kvmodel.Store, args []string) error {
			members, _ := etcdmaint.Status(ctx, st.Client())
			for _, m := range members {
				if m.Answered() && float64(m.DBSize) >= 0.95*float64(m.Quota) {
					fmt.Fprintf(a.stderr, "warning: member %s (%s) still has a %s database for a %s quota: etcd raises NOSPACE again at the next write; compact and defragment first (jobx etcd compact, jobx etcd defrag)\n",
						m.Name, m.ID, formatBytes(m.DBSize), formatBytes(m.Quota))
				}
			}
			done, err := etcdmaint.Disarm(ctx, st.Client())
			if err != nil && len(done) == 0 {
				return err
			}
			if a.output == "json" {
				if done == nil {
					done = []etcdmaint.Alarm{}
				}
				if jerr := writeJSON(a.stdout, map[string]any{"disarmed": done}); jerr != nil {
					return jerr
				}
				return err
			}
			if err == nil && len(done) == 0 {
				fmt.Fprintln(a.stdout, "no NOSPACE alarm is raised")
			}
			for _, al := range done {
				fmt.Fprintf(a.stdout, "disarmed %s on member %s\n", al.Type, al.Member)
			}
			return err
		}),
	}
}

// formatBytes writes n in binary units: 512 B, 1.5 KiB, 16 MiB, 2 GiB.
func formatBytes(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	f := float64(n)
	unit := ""
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB"} {
		f /= 1024
		unit = u
		if f < 1024 {
			break
		}
	}
	s := strconv.FormatFloat(f, 'f', 1, 64)
	return strings.TrimSuffix(s, ".0") + " " + unit
}
