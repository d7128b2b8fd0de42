package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jobx/jobx/images"
	"github.com/spf13/cobra"
)

func (a *app) imagesCmd() *cobra.Command {
	dir := ".jobx/images"
	cmd := &cobra.Command{
		Use:   "images",
		Short: "Build, import and list the sandbox images runners use",
		Long: `jobx builds its sandbox images itself (there may be no registry): one per
processor (python, node, sh, and a generic one with python and perl for #!
handlers), assembled from the host's files into reproducible OCI archives
(the same inputs give the same digest; builds are cached). Runners load them
into containerd on first use. A processor may also name any image reference
a runner can pull.`,
	}
	cmd.PersistentFlags().StringVar(&dir, "images-dir", dir, "the image store (jobx up uses <data-dir>/images)")
	cmd.AddCommand(&cobra.Command{
		Use:     "build [processor...]",
		Short:   "Build the images of the given processors (default: all)",
		Example: "  jobx images build\n  jobx images build python sh",
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := images.Open(dir)
			if err != nil {
				return err
			}
			if len(args) == 0 {
				args = images.Buildable()
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Minute)
			defer cancel()
			recs, err := st.Build(ctx, args...)
			if err != nil {
				return err
			}
			for _, r := range recs {
				fmt.Fprintf(a.stdout, "%s\t%s\t%d bytes\n", r.Ref, r.Digest, r.Size)
			}
			return nil
		},
	})
	var name string
	imp := &cobra.Command{
		Use:     "import <oci-archive>",
		Short:   "Import an image built elsewhere (an OCI image layout tar or docker save output)",
		Example: "  docker save myimage:1 > myimage.tar && jobx images import myimage.tar",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := images.Open(dir)
			if err != nil {
				return err
			}
			recs, err := st.Import(cmd.Context(), args[0], name)
			if err != nil {
				return err
			}
			for _, r := range recs {
				fmt.Fprintf(a.stdout, "%s\t%s\n", r.Ref, r.Archive)
			}
			return nil
		},
	}
	imp.Flags().StringVar(&name, "name", "", "reference to record when the archive names none")
	cmd.AddCommand(imp)
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List the images of the store",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := images.Open(dir)
			if err != nil {
				return err
			}
			recs, err := st.List()
			if err != nil {
				return err
			}
			var rows [][]string
			for _, r := range recs {
				rows = append(rows, []string{r.Ref, r.Digest, r.Source, fmt.Sprint(r.Size), r.Created.Format(time.RFC3339)})
			}
			return a.printTable(recs, []string{"REF", "DIGEST", "SOURCE", "SIZE", "CREATED"}, rows)
		},
	})
	return cmd
}
