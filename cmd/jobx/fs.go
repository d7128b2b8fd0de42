package main

import (
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/jobx/jobx/sharedfs"
	"github.com/spf13/cobra"
)

// fsFlags select the shared filesystems of a cluster as its runners do:
// a workflow's own config in --fs-config-dir (e.g. Tahoe-LAFS), else the
// local backend in --fs-dir.
type fsFlags struct {
	dir, configDir string
}

// defaultFSDir is where `jobx up` (and so `make run`) keeps the local
// shared files with its default --data-dir.
const defaultFSDir = ".jobx/fs"

func (a *app) addFSFlags(cmd *cobra.Command, fl *fsFlags, dirDefault string) {
	f := cmd.PersistentFlags()
	f.StringVar(&fl.dir, "fs-dir", orDefault(a.env.FSDir, dirDefault), "host directory of the local shared filesystem, as the runners' --fs-dir (workflow roots are <dir>/working/<workflow>; jobx up's is <data-dir>/fs) (env JOBX_FS_DIR)")
	f.StringVar(&fl.configDir, "fs-config-dir", a.env.FSConfigDir, "directory of per-workflow filesystem configs, <workflow>.yaml|.json, as the runners' --fs-config-dir (e.g. a Tahoe-LAFS gateway and dircap; docs/sharedfs.md) (env JOBX_FS_CONFIG_DIR)")
}

// given reports whether a filesystem was named (a flag or its variable).
func (fl *fsFlags) given() bool { return fl.dir != "" || fl.configDir != "" }

// open returns workflow wf's shared filesystem; the caller closes it.
func (fl *fsFlags) open(wf string) (*sharedfs.FS, error) {
	cfg, err := fl.config(wf)
	if err != nil {
		return nil, err
	}
	return sharedfs.Open(cfg, wf)
}

// config returns the backend config of workflow wf's shared filesystem.
func (fl *fsFlags) config(wf string) (sharedfs.Config, error) {
	var def sharedfs.Config
	if fl.dir != "" {
		dir, err := filepath.Abs(fl.dir)
		if err != nil {
			return sharedfs.Config{}, fmt.Errorf("--fs-dir: %w", err)
		}
		def = sharedfs.Config{Backend: sharedfs.BackendLocal, Dir: dir}
	}
	cfg, err := sharedfs.ConfigFor(fl.configDir, def, wf)
	if err != nil {
		return sharedfs.Config{}, err
	}
	if cfg.Backend == "" {
		return sharedfs.Config{}, fmt.Errorf("no shared filesystem for workflow %s: give --fs-dir or --fs-config-dir (env JOBX_FS_DIR, JOBX_FS_CONFIG_DIR)", wf)
	}
	if cfg.Backend == sharedfs.BackendLocal {
		if st, err := os.Stat(cfg.Dir); err != nil || !st.IsDir() {
			return sharedfs.Config{}, fmt.Errorf("--fs-dir %s is not a directory (is the cluster's data directory elsewhere? jobx up keeps it in <data-dir>/fs)", cfg.Dir)
		}
	}
	return cfg, nil
}

func (a *app) fsCmd() *cobra.Command {
	fl := &fsFlags{}
	cmd := &cobra.Command{
		Use:   "fs",
		Short: "List, copy in, copy out, print and remove a workflow's shared files",
		Long: `A workflow's shared files are where its handlers find them, at $JOBX_FS_ROOT in
every sandbox (JobX's FS). These commands reach them as the runners do: the local
backend in --fs-dir (jobx up's is <data-dir>/fs, so .jobx/fs for make run), or a
workflow's own config in --fs-config-dir (Tahoe-LAFS). Paths are relative to the
workflow's root; "/" is the root.`,
		Example: `  jobx fs put wordcount ./texts /texts   # a directory, recursively
  jobx fs ls wordcount /texts
  jobx fs cat wordcount /texts/a.txt
  jobx fs get wordcount /result.json ./result.json
  jobx fs rm wordcount /texts -r`,
	}
	a.addFSFlags(cmd, fl, defaultFSDir)
	withFS := func(fn func(fsys *sharedfs.FS, args []string) error) func(*cobra.Command, []string) error {
		return func(_ *cobra.Command, args []string) error {
			fsys, err := fl.open(args[0])
			if err != nil {
				return err
			}
			defer fsys.Close()
			return fn(fsys, args[1:])
		}
	}

	cmd.AddCommand(&cobra.Command{
		Use:   "ls <workflow> [path]",
		Short: "List a directory of the workflow's shared files (default: its root)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: withFS(func(fsys *sharedfs.FS, args []string) error {
			p := "/"
			if len(args) == 1 {
				p = args[0]
			}
			st, err := fsys.Stat(p)
			if err != nil {
				return err
			}
			entries := []sharedfs.EntryStat{st}
			if st.IsDir {
				if entries, err = fsys.Ls(p); err != nil {
					return err
				}
			}
			if a.output == "json" {
				out := make([]map[string]any, len(entries))
				for i, e := range entries {
					out[i] = map[string]any{"name": e.Name, "size": e.Size, "is_dir": e.IsDir, "mod_time": e.ModTime}
				}
				return writeJSON(a.stdout, out)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			for _, e := range entries {
				name, mod := e.Name, "-"
				if e.IsDir {
					name += "/"
				}
				if !e.ModTime.IsZero() {
					mod = e.ModTime.UTC().Format(time.DateTime)
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\n", e.Size, mod, name)
			}
			return tw.Flush()
		}),
	})

	cmd.AddCommand(&cobra.Command{
		Use:   "put <workflow> <local file or directory> <path>",
		Short: "Copy a host file, or a directory recursively, into the workflow's shared files",
		Args:  cobra.ExactArgs(3),
		RunE: withFS(func(fsys *sharedfs.FS, args []string) error {
			src, dst := args[0], args[1]
			st, err := os.Stat(src)
			if err != nil {
				return err
			}
			n := 1
			if st.IsDir() {
				if n, err = fsys.Upload(src, dst); err != nil {
					return err
				}
			} else {
				data, err := os.ReadFile(src)
				if err != nil {
					return err
				}
				if err := fsys.WriteFile(dst, data, 0o644); err != nil {
					return err
				}
			}
			fmt.Fprintf(a.stderr, "copied %d file(s) to %s of workflow %s\n", n, dst, fsys.Workflow())
			return nil
		}),
	})

	cmd.AddCommand(&cobra.Command{
		Use:   "get <workflow> <path> <local file>",
		Short: "Copy a file of the workflow's shared files to the host (- for standard output)",
		Args:  cobra.ExactArgs(3),
		RunE: withFS(func(fsys *sharedfs.FS, args []string) error {
			data, err := fsys.ReadFile(args[0])
			if err != nil {
				return err
			}
			if args[1] == "-" {
				_, err = a.stdout.Write(data)
				return err
			}
			return os.WriteFile(args[1], data, 0o644)
		}),
	})

	cmd.AddCommand(&cobra.Command{
		Use:   "cat <workflow> <path>",
		Short: "Print a file of the workflow's shared files",
		Args:  cobra.ExactArgs(2),
		RunE: withFS(func(fsys *sharedfs.FS, args []string) error {
			data, err := fsys.ReadFile(args[0])
			if err != nil {
				return err
			}
			_, err = a.stdout.Write(data)
			return err
		}),
	})

	var recursive bool
	rm := &cobra.Command{
		Use:   "rm <workflow> <path>",
		Short: "Remove a file of the workflow's shared files (-r: a directory and all in it)",
		Args:  cobra.ExactArgs(2),
		RunE: withFS(func(fsys *sharedfs.FS, args []string) error {
			st, err := fsys.Stat(args[0])
			if err != nil {
				return err
			}
			if !st.IsDir {
				return fsys.Rm(args[0])
			}
			if !recursive {
				return fmt.Errorf("%s is a directory: give -r to remove it and all in it", args[0])
			}
			return fsys.Rmdir(args[0])
		}),
	}
	rm.Flags().BoolVarP(&recursive, "recursive", "r", false, "remove a directory and everything in it")
	cmd.AddCommand(rm)
	return cmd
}
